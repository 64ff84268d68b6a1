//! The per-shadow limits AWS IoT enforces, configurable so a deployment can raise them.

use serde::{Deserialize, Serialize};

/// Limits checked on every shadow request. `Default` gives the AWS IoT Core values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowLimits {
    /// Largest allowed `desired` + `reported` after an update, counted as their compact JSON
    /// (no whitespace, no metadata). AWS: 8 KB = 8192. Over it: 413.
    pub max_state_bytes: usize,
    /// Deepest allowed nesting inside `desired` or `reported`; the section object itself is
    /// level 1 and every object or array below it adds one. AWS: 6. Over it: 400.
    pub max_depth: usize,
    /// Longest allowed `clientToken`, in bytes. AWS: 64. Over it: 400 "Invalid clientToken".
    pub max_client_token_bytes: usize,
}

impl Default for ShadowLimits {
    fn default() -> Self {
        Self {
            max_state_bytes: 8192,
            max_depth: 6,
            max_client_token_bytes: 64,
        }
    }
}

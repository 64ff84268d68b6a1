//! The stored shadow: its two state sections, their metadata, its version, and the slot that
//! keeps the version across a delete.

use std::io;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object, in insertion order (serde_json's `preserve_order`), so documents come back
/// with their keys in the order clients wrote them.
pub type JsonMap = Map<String, Value>;

/// What the caller stores per shadow key. Persist it with `serde_json` (the state sections
/// are `serde_json::Value`s, which need a self-describing format).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowSlot {
    /// The shadow, or `None` when it was never created or has been deleted.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    /// The last version used. Kept after a delete so that a re-created shadow continues the
    /// numbering ("Deleting a shadow does not reset its version number to 0"); 0 before the
    /// first update.
    #[serde(rename = "v", default)]
    pub version: u64,
}

/// A live shadow. Invariants (kept by every operation here): a section is `None` rather
/// than empty; no object inside a section is empty; no value is `null` (`null` in an update
/// means "delete"); each metadata section mirrors its state section exactly (see
/// [`Metadata`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shadow {
    /// `state.desired`: what apps want the device to be.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<JsonMap>,
    /// `state.reported`: what the device says it is.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<JsonMap>,
    /// When each leaf of `desired` and `reported` was last written.
    #[serde(rename = "m", default)]
    pub metadata: Metadata,
    /// This shadow's version: 1 after the first update ever, +1 per accepted update.
    #[serde(rename = "v")]
    pub version: u64,
}

/// Per-leaf write times, stored compactly: the same tree as the state section, with each
/// scalar (or array element) replaced by its epoch-seconds number. Responses expand every
/// number into AWS's `{"timestamp": n}`. Arrays mirror element by element, as AWS's
/// metadata does (`"colors": [{"timestamp": n}, ...]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Mirrors `Shadow::desired`.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<JsonMap>,
    /// Mirrors `Shadow::reported`.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<JsonMap>,
}

impl Shadow {
    /// The size AWS's 8 KB limit counts: the compact JSON of `desired` plus that of
    /// `reported`; metadata does not count ("Metadata do not contribute to the document size
    /// for service limits"). Counted without building the text.
    pub fn state_bytes(&self) -> usize {
        section_bytes(self.desired.as_ref()) + section_bytes(self.reported.as_ref())
    }
}

fn section_bytes(section: Option<&JsonMap>) -> usize {
    let Some(section) = section else { return 0 };
    let mut counter = ByteCounter(0);
    // Writing a `Map<String, Value>` into a counter cannot fail; were it to, the count
    // would only be low, and the stored state stays well-formed either way.
    let _ = serde_json::to_writer(&mut counter, section);
    counter.0
}

/// An `io::Write` that only counts, so sizing a section allocates nothing.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shadow::test_map as map;
    use serde_json::json;

    #[test]
    fn state_bytes_counts_compact_desired_plus_reported_only() {
        let shadow = Shadow {
            desired: Some(map(json!({"color": "RED"}))),
            reported: Some(map(json!({"a": [1, 2]}))),
            metadata: Metadata {
                desired: Some(map(json!({"color": 5}))),
                reported: None,
            },
            version: 3,
        };
        assert_eq!(
            shadow.state_bytes(),
            r#"{"color":"RED"}"#.len() + r#"{"a":[1,2]}"#.len()
        );
        assert_eq!(Shadow::default().state_bytes(), 0);
    }

    #[test]
    fn slot_persists_compactly_and_round_trips() {
        let slot = ShadowSlot {
            shadow: None,
            version: 4,
        };
        let text = serde_json::to_string(&slot).unwrap_or_default();
        assert_eq!(text, r#"{"v":4}"#);
        let back: ShadowSlot = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, slot);
        let live = ShadowSlot {
            shadow: Some(Shadow {
                desired: Some(map(json!({"x": 1}))),
                reported: None,
                metadata: Metadata {
                    desired: Some(map(json!({"x": 9}))),
                    reported: None,
                },
                version: 5,
            }),
            version: 5,
        };
        let text = serde_json::to_string(&live).unwrap_or_default();
        assert_eq!(text, r#"{"s":{"d":{"x":1},"m":{"d":{"x":9}},"v":5},"v":5}"#);
        let back: ShadowSlot = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, live);
    }
}

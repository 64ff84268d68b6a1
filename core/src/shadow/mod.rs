//! The AWS IoT Device Shadow document algebra, as pure functions: no I/O, no clock (callers
//! pass `now` in epoch seconds), no async. The owner of a shadow feeds each request's bytes
//! and the stored [`ShadowSlot`] in, stores the slot that comes out, and publishes the
//! documents that come out.
//!
//! ```text
//! /update bytes ─▶ request (parse once, validate) ─▶ merge into a copy of the shadow
//!                  ─▶ 409 / 413 checks ─▶ response: accepted, delta, documents + new slot
//! /get bytes    ─▶ response: state + delta + metadata           (404 when none)
//! /delete bytes ─▶ slot without shadow, version kept + accepted (404 when none)
//! ```
//!
//! ## Layout
//! - [`names`]: `ThingName`, `ShadowName`, `ShadowKey`.
//! - [`limits`]: `ShadowLimits` (8 KB state, depth 6, 64-byte client token).
//! - [`document`]: `ShadowSlot`, `Shadow`, `Metadata`: what is stored.
//! - [`error`]: `Rejection`, with AWS's codes and message texts.
//! - `request`: parsing and validating request payloads.
//! - `merge`: applying an update's state (null deletes, objects merge, arrays replace).
//! - [`mod@delta`]: the desired-vs-reported difference.
//! - `metadata`: per-leaf timestamps rendered as AWS's `{"timestamp": n}`.
//! - `response`: the accepted, delta, documents, get and delete documents.
//! - `operation`: [`update`], [`get`], [`delete`].

pub mod delta;
pub mod document;
pub mod error;
pub mod limits;
mod merge;
mod metadata;
pub mod names;
mod operation;
mod request;
mod response;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use delta::delta;
pub use document::{JsonMap, Metadata, Shadow, ShadowSlot};
pub use error::Rejection;
pub use limits::ShadowLimits;
pub use names::{NameError, NameKind, ShadowKey, ShadowName, ThingName};
pub use operation::{delete, get, update, UpdateOutcome};

/// The object of a `json!` value in tests (empty for anything else).
#[cfg(test)]
fn test_map(v: serde_json::Value) -> JsonMap {
    match v {
        serde_json::Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

//! Parsing and validating request payloads, one parse per request. Checks run in this
//! order, so the first problem found is the one reported: encoding (415), JSON (400),
//! `clientToken`, `state` and its sections, arrays and depth, `version`. Every rejection
//! after the token check echoes the token.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::Rejection;
use super::limits::ShadowLimits;

/// A validated `/update` request.
#[derive(Debug)]
pub(crate) struct UpdateRequest {
    /// `null` or an object holding only `desired` and/or `reported`, each `null` or an
    /// object within the depth limit, with no `null` inside any array.
    pub state: Value,
    /// The token to echo, already checked against the length limit.
    pub client_token: Option<String>,
    /// The version the client expects the shadow to be at; `None` skips the check.
    pub version: Option<u64>,
}

pub(crate) fn parse_update(
    payload: &[u8],
    limits: &ShadowLimits,
) -> Result<UpdateRequest, Rejection> {
    let text = std::str::from_utf8(payload).map_err(|_| Rejection::unsupported_encoding())?;
    let Ok(Value::Object(mut doc)) = serde_json::from_str::<Value>(text) else {
        return Err(Rejection::invalid_json());
    };
    let client_token = take_client_token(&mut doc, limits)?;
    let reject = |r: Rejection| r.with_client_token(client_token.clone());

    // Keys outside `state`, `clientToken` and `version` are ignored: "JSON content outside of
    // those sections is ignored".
    let state = doc
        .shift_remove("state")
        .ok_or_else(|| reject(Rejection::missing_state()))?;
    match &state {
        Value::Null => {}
        Value::Object(sections) => check_sections(sections, limits).map_err(reject)?,
        _ => return Err(reject(Rejection::state_not_object())),
    }

    let version = match doc.get("version") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .ok_or_else(|| reject(Rejection::invalid_version()))?,
        ),
        Some(_) => return Err(reject(Rejection::invalid_version())),
    };
    Ok(UpdateRequest {
        state,
        client_token,
        version,
    })
}

fn take_client_token(
    doc: &mut Map<String, Value>,
    limits: &ShadowLimits,
) -> Result<Option<String>, Rejection> {
    match doc.shift_remove("clientToken") {
        None => Ok(None),
        Some(Value::String(token)) if token.len() <= limits.max_client_token_bytes => {
            Ok(Some(token))
        }
        Some(_) => Err(Rejection::invalid_client_token()),
    }
}

fn check_sections(sections: &Map<String, Value>, limits: &ShadowLimits) -> Result<(), Rejection> {
    for (name, section) in sections {
        let not_object = match name.as_str() {
            "desired" => Rejection::desired_not_object,
            "reported" => Rejection::reported_not_object,
            // AWS stores only `desired` and `reported`; a client sending `delta` or
            // `metadata` back is told so rather than silently dropped.
            _ => return Err(Rejection::invalid_state_node()),
        };
        match section {
            Value::Null => {}
            Value::Object(_) => check_tree(section, 1, limits.max_depth, false)?,
            _ => return Err(not_object()),
        }
    }
    Ok(())
}

/// Walks a section once for both of its structural rules: at most `max_depth` levels of
/// objects and arrays (the section object is level 1), and no `null` inside an array
/// ("Arrays can't have null values"). serde_json caps nesting at 128 while parsing, so the
/// recursion is bounded.
fn check_tree(
    value: &Value,
    level: usize,
    max_depth: usize,
    in_array: bool,
) -> Result<(), Rejection> {
    match value {
        Value::Null if in_array => Err(Rejection::invalid_state_node()),
        Value::Object(_) | Value::Array(_) if level > max_depth => {
            Err(Rejection::too_deep(max_depth))
        }
        Value::Object(map) => map
            .values()
            .try_for_each(|v| check_tree(v, level + 1, max_depth, in_array)),
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| check_tree(v, level + 1, max_depth, true)),
        _ => Ok(()),
    }
}

/// The `clientToken` of a `/get` or `/delete` request, if it has a usable one. AWS
/// documents these payloads as empty ("The content of the message is ignored"), so
/// anything unusable is ignored rather than rejected.
pub(crate) fn optional_client_token(payload: &[u8], limits: &ShadowLimits) -> Option<String> {
    #[derive(Deserialize)]
    struct TokenOnly {
        #[serde(rename = "clientToken")]
        client_token: Option<String>,
    }
    if payload.is_empty() {
        return None;
    }
    serde_json::from_slice::<TokenOnly>(payload)
        .ok()
        .and_then(|t| t.client_token)
        .filter(|t| t.len() <= limits.max_client_token_bytes)
}

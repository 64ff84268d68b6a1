//! Rejections: the `/…/rejected` documents (and REST error bodies) of the Device Shadow
//! service, with the codes and message texts AWS documents in "Device Shadow error messages".

use serde::Serialize;

use super::names::ShadowKey;

/// A refused shadow request. `code` is the HTTP status AWS uses; `message` is AWS's text,
/// word for word, because clients match on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {message}")]
pub struct Rejection {
    /// HTTP status: 400, 401, 403, 404, 409, 413, 415, 429 or 500.
    pub code: u16,
    /// AWS's message text.
    pub message: String,
    /// The request's `clientToken`, echoed so the client can match the rejection to its
    /// request; `None` when the request had none or it was itself invalid.
    pub client_token: Option<String>,
}

/// The error response document, field order as AWS sends it.
#[derive(Serialize)]
struct ErrorDoc<'a> {
    code: u16,
    message: &'a str,
    timestamp: u64,
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    client_token: Option<&'a str>,
}

impl Rejection {
    fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            client_token: None,
        }
    }

    /// Attaches the request's client token (builder style, since most rejections are made
    /// before the token is known to be valid).
    #[must_use]
    pub fn with_client_token(mut self, client_token: Option<String>) -> Self {
        self.client_token = client_token;
        self
    }

    /// 400: the payload is not JSON, or not a JSON object.
    pub fn invalid_json() -> Self {
        Self::new(400, "Invalid JSON")
    }

    /// 400: an update without a `state` node.
    pub fn missing_state() -> Self {
        Self::new(400, "Missing required node: state")
    }

    /// 400: `state` is neither an object nor `null`.
    pub fn state_not_object() -> Self {
        Self::new(400, "State node must be an object")
    }

    /// 400: `state.desired` is neither an object nor `null`.
    pub fn desired_not_object() -> Self {
        Self::new(400, "Desired node must be an object")
    }

    /// 400: `state.reported` is neither an object nor `null`.
    pub fn reported_not_object() -> Self {
        Self::new(400, "Reported node must be an object")
    }

    /// 400: `version` is not a non-negative integer.
    pub fn invalid_version() -> Self {
        Self::new(400, "Invalid version")
    }

    /// 400: `clientToken` is not a string or is over the length limit (AWS: 64 bytes).
    pub fn invalid_client_token() -> Self {
        Self::new(400, "Invalid clientToken")
    }

    /// 400: `desired` or `reported` nests deeper than `max_depth` (AWS: 6).
    pub fn too_deep(max_depth: usize) -> Self {
        Self::new(
            400,
            format!("JSON contains too many levels of nesting; maximum is {max_depth}"),
        )
    }

    /// 400: `state` holds a node other than `desired` and `reported`, or an array holds a
    /// `null` (AWS: "Arrays can't have null values").
    pub fn invalid_state_node() -> Self {
        Self::new(400, "State contains an invalid node")
    }

    /// 401: the caller is not authenticated.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized")
    }

    /// 403: the caller's policy does not allow the action.
    pub fn forbidden() -> Self {
        Self::new(403, "Forbidden")
    }

    /// 404: the thing does not exist in the registry.
    pub fn thing_not_found() -> Self {
        Self::new(404, "Thing not found")
    }

    /// 404: the shadow does not exist (never created, or deleted). AWS quotes the thing name
    /// for a classic shadow and the shadow name for a named one.
    pub fn no_shadow(key: &ShadowKey) -> Self {
        Self::new(
            404,
            format!("No shadow exists with name: '{}'", key.display_name()),
        )
    }

    /// 409: the request's `version` is not the shadow's current version.
    pub fn version_conflict() -> Self {
        Self::new(409, "Version conflict")
    }

    /// 413: the updated `desired` + `reported` would exceed `max_state_bytes` (AWS: 8 KB).
    pub fn payload_too_large() -> Self {
        Self::new(413, "The payload exceeds the maximum size allowed")
    }

    /// 415: the payload is not UTF-8.
    pub fn unsupported_encoding() -> Self {
        Self::new(
            415,
            "Unsupported documented encoding; supported encoding is UTF-8",
        )
    }

    /// 429: too many requests in flight for one thing (AWS: more than 10).
    pub fn too_many_requests() -> Self {
        Self::new(429, "Too many requests")
    }

    /// 500: something failed on our side.
    pub fn internal() -> Self {
        Self::new(500, "Internal service failure")
    }

    /// The error response document:
    /// `{"code":..,"message":..,"timestamp":..,"clientToken":..}` (`clientToken` only when
    /// known).
    pub fn to_json(&self, now: u64) -> Vec<u8> {
        let doc = ErrorDoc {
            code: self.code,
            message: &self.message,
            timestamp: now,
            client_token: self.client_token.as_deref(),
        };
        // Serializing this plain struct cannot fail; the fallback only keeps this panic-free.
        serde_json::to_vec(&doc)
            .unwrap_or_else(|_| br#"{"code":500,"message":"Internal service failure"}"#.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shadow::names::{ShadowName, ThingName};

    #[test]
    fn every_aws_error_has_its_code_and_text() {
        let cases = [
            (Rejection::invalid_json(), 400, "Invalid JSON"),
            (
                Rejection::missing_state(),
                400,
                "Missing required node: state",
            ),
            (
                Rejection::state_not_object(),
                400,
                "State node must be an object",
            ),
            (
                Rejection::desired_not_object(),
                400,
                "Desired node must be an object",
            ),
            (
                Rejection::reported_not_object(),
                400,
                "Reported node must be an object",
            ),
            (Rejection::invalid_version(), 400, "Invalid version"),
            (
                Rejection::invalid_client_token(),
                400,
                "Invalid clientToken",
            ),
            (
                Rejection::too_deep(6),
                400,
                "JSON contains too many levels of nesting; maximum is 6",
            ),
            (
                Rejection::invalid_state_node(),
                400,
                "State contains an invalid node",
            ),
            (Rejection::unauthorized(), 401, "Unauthorized"),
            (Rejection::forbidden(), 403, "Forbidden"),
            (Rejection::thing_not_found(), 404, "Thing not found"),
            (Rejection::version_conflict(), 409, "Version conflict"),
            (
                Rejection::payload_too_large(),
                413,
                "The payload exceeds the maximum size allowed",
            ),
            (
                Rejection::unsupported_encoding(),
                415,
                "Unsupported documented encoding; supported encoding is UTF-8",
            ),
            (Rejection::too_many_requests(), 429, "Too many requests"),
            (Rejection::internal(), 500, "Internal service failure"),
        ];
        for (rejection, code, message) in cases {
            assert_eq!(rejection.code, code, "{message}");
            assert_eq!(rejection.message, message);
            assert_eq!(rejection.client_token, None);
        }
    }

    #[test]
    fn no_shadow_quotes_thing_for_classic_and_shadow_for_named() {
        let thing = ThingName::new("myThing").unwrap_or_else(|e| panic!("{e}"));
        let classic = Rejection::no_shadow(&ShadowKey::classic(thing.clone()));
        assert_eq!(
            (classic.code, classic.message.as_str()),
            (404, "No shadow exists with name: 'myThing'")
        );
        let name = ShadowName::new("simShadow1").unwrap_or_else(|e| panic!("{e}"));
        let named = Rejection::no_shadow(&ShadowKey::named(thing, name));
        assert_eq!(named.message, "No shadow exists with name: 'simShadow1'");
    }

    #[test]
    fn to_json_has_code_message_timestamp_and_token_when_known() {
        let r = Rejection::version_conflict()
            .with_client_token(Some("426bfd96-e720-46d3-95cd-014e3ef12bb6".into()));
        assert_eq!(
            String::from_utf8_lossy(&r.to_json(1591057529)),
            r#"{"code":409,"message":"Version conflict","timestamp":1591057529,"clientToken":"426bfd96-e720-46d3-95cd-014e3ef12bb6"}"#
        );
        assert_eq!(
            String::from_utf8_lossy(&Rejection::invalid_json().to_json(7)),
            r#"{"code":400,"message":"Invalid JSON","timestamp":7}"#
        );
    }
}

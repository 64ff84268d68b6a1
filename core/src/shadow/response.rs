//! The accepted-side documents, as borrowed `Serialize` structs so each response is written
//! in one pass from the stored shadow and the request, without copying either.

use serde::Serialize;
use serde_json::Value;

use super::document::{JsonMap, Shadow};
use super::error::Rejection;
use super::metadata::{OfDelta, StoredMap, Written};

/// Serializes a response; failure (impossible for these types) becomes a 500.
pub(crate) fn encode<T: Serialize>(doc: &T) -> Result<Vec<u8>, Rejection> {
    serde_json::to_vec(doc).map_err(|_| Rejection::internal())
}

/// `/update/accepted`: the request's `state` echoed as sent (so `null`s show what was
/// deleted), the metadata of what it wrote, the new version.
#[derive(Serialize)]
pub(crate) struct UpdateAccepted<'a> {
    pub state: &'a Value,
    pub metadata: Written<'a>,
    pub version: u64,
    pub timestamp: u64,
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    pub client_token: Option<&'a str>,
}

/// `/update/delta`: the whole current delta (not only what this update changed) and the
/// `desired` metadata of its leaves.
#[derive(Serialize)]
pub(crate) struct DeltaDoc<'a> {
    pub state: &'a JsonMap,
    pub metadata: OfDelta<'a>,
    pub version: u64,
    pub timestamp: u64,
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    pub client_token: Option<&'a str>,
}

/// `/update/documents`: the shadow before and after. `previous` is `null` when the update
/// created the shadow.
#[derive(Serialize)]
pub(crate) struct Documents<'a> {
    pub previous: Option<Side<'a>>,
    pub current: Side<'a>,
    pub timestamp: u64,
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    pub client_token: Option<&'a str>,
}

/// One side of `/update/documents`: `{state, metadata, version}`.
#[derive(Serialize)]
pub(crate) struct Side<'a> {
    state: Sections<'a>,
    metadata: MetaSections<'a>,
    version: u64,
}

impl<'a> Side<'a> {
    pub fn of(shadow: &'a Shadow) -> Self {
        Self {
            state: Sections::of(shadow, None),
            metadata: MetaSections::of(shadow, None),
            version: shadow.version,
        }
    }
}

/// `state` with whichever of `desired`, `reported` (and for `/get`, `delta`) exist.
#[derive(Serialize)]
pub(crate) struct Sections<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    desired: Option<&'a JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reported: Option<&'a JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a JsonMap>,
}

impl<'a> Sections<'a> {
    fn of(shadow: &'a Shadow, delta: Option<&'a JsonMap>) -> Self {
        Self {
            desired: shadow.desired.as_ref(),
            reported: shadow.reported.as_ref(),
            delta,
        }
    }
}

/// `metadata` matching [`Sections`].
#[derive(Serialize)]
pub(crate) struct MetaSections<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    desired: Option<StoredMap<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reported: Option<StoredMap<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<OfDelta<'a>>,
}

impl<'a> MetaSections<'a> {
    fn of(shadow: &'a Shadow, delta: Option<&'a JsonMap>) -> Self {
        let desired_meta = shadow.metadata.desired.as_ref();
        Self {
            desired: desired_meta.map(StoredMap),
            reported: shadow.metadata.reported.as_ref().map(StoredMap),
            delta: delta
                .zip(desired_meta)
                .map(|(delta, desired_meta)| OfDelta {
                    delta,
                    desired_meta,
                }),
        }
    }
}

/// `/get/accepted`: the full document, with `state.delta` and `metadata.delta` when
/// `desired` and `reported` differ (as in AWS's "Delta state" example).
#[derive(Serialize)]
pub(crate) struct GetAccepted<'a> {
    state: Sections<'a>,
    metadata: MetaSections<'a>,
    version: u64,
    timestamp: u64,
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    client_token: Option<&'a str>,
}

impl<'a> GetAccepted<'a> {
    pub fn new(
        shadow: &'a Shadow,
        delta: Option<&'a JsonMap>,
        timestamp: u64,
        client_token: Option<&'a str>,
    ) -> Self {
        Self {
            state: Sections::of(shadow, delta),
            metadata: MetaSections::of(shadow, delta),
            version: shadow.version,
            timestamp,
            client_token,
        }
    }
}

/// `/delete/accepted`: the deleted shadow's version and the time.
#[derive(Serialize)]
pub(crate) struct DeleteAccepted<'a> {
    pub version: u64,
    pub timestamp: u64,
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    pub client_token: Option<&'a str>,
}

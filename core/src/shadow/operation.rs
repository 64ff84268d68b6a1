//! The three shadow operations, `/update`, `/get` and `/delete`, as pure functions from the
//! stored slot and the request bytes to the new slot and the response bytes.

use super::delta::delta;
use super::document::{JsonMap, Shadow, ShadowSlot};
use super::error::Rejection;
use super::limits::ShadowLimits;
use super::merge::apply_state;
use super::metadata::{OfDelta, Written};
use super::names::ShadowKey;
use super::request::{optional_client_token, parse_update};
use super::response::{
    encode, DeleteAccepted, DeltaDoc, Documents, GetAccepted, Side, UpdateAccepted,
};

/// What an accepted update produces: the slot to store and the three documents to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateOutcome {
    /// The new slot; store it before publishing anything.
    pub slot: ShadowSlot,
    /// The `/update/accepted` document (also the REST response body).
    pub accepted: Vec<u8>,
    /// The `/update/delta` document, `None` when `desired` and `reported` agree.
    pub delta: Option<Vec<u8>>,
    /// The `/update/documents` document.
    pub documents: Vec<u8>,
}

/// Applies an `/update` request to `slot` at time `now` (epoch seconds).
///
/// Creates the shadow if it does not exist; the new version is `slot.version + 1`, so a
/// shadow re-created after a delete continues its numbering. A request `version` must equal
/// `slot.version` (409 otherwise); that holds for a deleted shadow too, whose current
/// version is the deleted one's.
///
/// The 8 KB limit is checked on the result, not the request: AWS's limit is on what "the
/// device's shadow supports" ("Only the data for desired and reported state ... counts"),
/// so a small update that would grow the shadow past it is refused, and a large update that
/// deletes keys is not.
pub fn update(
    slot: &ShadowSlot,
    payload: &[u8],
    now: u64,
    limits: &ShadowLimits,
) -> Result<UpdateOutcome, Rejection> {
    let request = parse_update(payload, limits)?;
    let client_token = request.client_token.as_deref();
    let reject = |r: Rejection| r.with_client_token(request.client_token.clone());

    if request.version.is_some_and(|v| v != slot.version) {
        return Err(reject(Rejection::version_conflict()));
    }
    let version = slot
        .version
        .checked_add(1)
        .ok_or_else(|| reject(Rejection::internal()))?;

    let previous = slot.shadow.as_ref();
    // The one copy of the document an update makes: the slot is borrowed, the result owned.
    let mut current = previous.cloned().unwrap_or_default();
    current.version = version;
    apply_state(&mut current, &request.state, now);
    if current.state_bytes() > limits.max_state_bytes {
        return Err(reject(Rejection::payload_too_large()));
    }

    let accepted = encode(&UpdateAccepted {
        state: &request.state,
        metadata: Written {
            value: &request.state,
            now,
        },
        version,
        timestamp: now,
        client_token,
    })?;
    let delta_state = current_delta(&current);
    let delta = match (&delta_state, &current.metadata.desired) {
        (Some(state), Some(desired_meta)) => Some(encode(&DeltaDoc {
            state,
            metadata: OfDelta {
                delta: state,
                desired_meta,
            },
            version,
            timestamp: now,
            client_token,
        })?),
        _ => None,
    };
    let documents = encode(&Documents {
        previous: previous.map(Side::of),
        current: Side::of(&current),
        timestamp: now,
        client_token,
    })?;
    Ok(UpdateOutcome {
        slot: ShadowSlot {
            shadow: Some(current),
            version,
        },
        accepted,
        delta,
        documents,
    })
}

/// Answers a `/get` request: the whole document with its delta, or 404 when `key`'s shadow
/// does not exist. The payload may be empty or carry a `clientToken` to echo.
pub fn get(
    key: &ShadowKey,
    slot: &ShadowSlot,
    payload: &[u8],
    now: u64,
    limits: &ShadowLimits,
) -> Result<Vec<u8>, Rejection> {
    let client_token = optional_client_token(payload, limits);
    let Some(shadow) = &slot.shadow else {
        return Err(Rejection::no_shadow(key).with_client_token(client_token));
    };
    let delta_state = current_delta(shadow);
    encode(&GetAccepted::new(
        shadow,
        delta_state.as_ref(),
        now,
        client_token.as_deref(),
    ))
}

/// Applies a `/delete` request: the shadow goes, its version stays in the slot (so the next
/// update continues it), and the accepted document carries the deleted shadow's version.
/// 404 when there is nothing to delete.
///
/// AWS ignores the content of a delete request, so a `version` in it is not checked; only a
/// `clientToken` is picked up, to be echoed.
pub fn delete(
    key: &ShadowKey,
    slot: &ShadowSlot,
    payload: &[u8],
    now: u64,
    limits: &ShadowLimits,
) -> Result<(ShadowSlot, Vec<u8>), Rejection> {
    let client_token = optional_client_token(payload, limits);
    let Some(shadow) = &slot.shadow else {
        return Err(Rejection::no_shadow(key).with_client_token(client_token));
    };
    let accepted = encode(&DeleteAccepted {
        version: shadow.version,
        timestamp: now,
        client_token: client_token.as_deref(),
    })?;
    Ok((
        ShadowSlot {
            shadow: None,
            version: slot.version,
        },
        accepted,
    ))
}

fn current_delta(shadow: &Shadow) -> Option<JsonMap> {
    let desired = shadow.desired.as_ref()?;
    match &shadow.reported {
        Some(reported) => delta(desired, reported),
        None => delta(desired, &JsonMap::new()),
    }
}

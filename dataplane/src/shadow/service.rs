//! The owner side of the shadow service: one per shard, for the things whose name hashes to
//! it, so one writer orders every change to a shadow.
//!
//! A request is applied to memory at once (the next request sees it) and its record
//! appended to the log; its answers wait in `pending` until the log is durable up to that
//! record, then go out in order. Gets and rejections wait behind earlier changes too, so a
//! client never sees an answer that a crash could take back, nor answers out of order.

use std::collections::HashMap;

use bytes::Bytes;
use iotcore_core::log::Log;
use iotcore_core::shadow::{self, Rejection, ShadowKey, ShadowLimits, ShadowSlot, ThingName};
use serde::Deserialize;

use super::store::{ShadowStore, StoreError};
use super::topics::{self, ShadowOp};
use crate::durable::{CommitQueue, Logged};
use crate::shard::replies::ReplyTo;

/// Who asked, so the answer goes back the same way.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// A PUBLISH on a request topic: answered by publishing on the response topics, and
    /// (QoS 1) acknowledged with the answer, so the PUBACK and the answer leave in one write.
    Mqtt(Option<PubAckTo>),
    /// A REST call on some shard's HTTP listener: answered with a status and a body.
    Rest(ReplyTo),
}

/// The connection whose QoS 1 request PUBLISH is acknowledged once its answer is out.
///
/// Why the PUBACK waits for the answer: a device's request otherwise costs two writes to it
/// (the PUBACK at once, the answer after the fsync), and at 50,000 updates/s loopback sends
/// were a third of the broker's CPU. It also means a PUBACK on a shadow request promises the
/// change is on disk.
pub use crate::flow::PubAckTo;

pub struct ShadowRequest {
    pub key: ShadowKey,
    pub op: ShadowOp,
    pub payload: Bytes,
    pub origin: Origin,
}

/// Something the service says, once it may.
pub enum Output {
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
    Http {
        to: ReplyTo,
        status: u16,
        body: Vec<u8>,
    },
    /// Acknowledge the request PUBLISH (after the answers before it).
    PubAck(PubAckTo),
}

/// The answers to one request, waiting for the commit that covers its record.
pub struct Pending {
    thing: ThingName,
    outputs: Vec<Output>,
}

pub struct ShadowService {
    pub store: ShadowStore,
    limits: ShadowLimits,
    max_in_flight: usize,
    /// Requests per thing whose answers wait in `commits`.
    in_flight: HashMap<ThingName, usize, foldhash::fast::RandomState>,
    /// Answers waiting for the log (the same group commit as every durable log's).
    commits: CommitQueue<Pending>,
}

impl ShadowService {
    pub fn new(
        store: ShadowStore,
        limits: ShadowLimits,
        durable: bool,
        max_in_flight: usize,
    ) -> ShadowService {
        let commits = CommitQueue::new(store.last_lsn(), durable);
        ShadowService {
            store,
            limits,
            max_in_flight,
            in_flight: HashMap::default(),
            commits,
        }
    }

    /// Applies one request; returns what may be said at once (the rest waits for the commit
    /// that covers it, then goes through [`ShadowService::answers`]).
    pub fn handle(&mut self, req: ShadowRequest, now: u64) -> Vec<Output> {
        let prefix = topics::prefix(
            req.key.thing.as_str(),
            req.key.name.as_ref().map(|n| n.as_str()),
        );
        let op = req.op.as_str();
        let in_flight = self.in_flight.get(&req.key.thing).copied().unwrap_or(0);
        if in_flight >= self.max_in_flight {
            let rejection =
                Rejection::too_many_requests().with_client_token(client_token(&req.payload));
            let mut outputs = vec![rejected(&prefix, op, req.origin, &rejection, now)];
            outputs.extend(puback(req.origin));
            return outputs;
        }
        let mut outputs = Vec::with_capacity(5);
        match self.apply(&req, &prefix, now, &mut outputs) {
            Ok(()) => {}
            Err(rejection) => outputs.push(rejected(&prefix, op, req.origin, &rejection, now)),
        }
        outputs.extend(puback(req.origin));
        let thing = req.key.thing;
        let pending = Pending {
            thing: thing.clone(),
            outputs,
        };
        match self
            .commits
            .answer_when_durable(self.store.last_lsn(), pending)
        {
            Some(now) => now.outputs,
            None => {
                *self.in_flight.entry(thing).or_insert(0) += 1;
                Vec::new()
            }
        }
    }

    fn apply(
        &mut self,
        req: &ShadowRequest,
        prefix: &str,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        if self.commits.failed() {
            return Err(Rejection::internal().with_client_token(client_token(&req.payload)));
        }
        let empty = ShadowSlot::default();
        let slot = self.store.slot(&req.key).unwrap_or(&empty);
        match req.op {
            ShadowOp::Update => {
                let outcome = shadow::update(slot, &req.payload, now, &self.limits)?;
                self.put(&req.key, outcome.slot, &req.payload)?;
                if let Origin::Rest(to) = req.origin {
                    out.push(Output::Http {
                        to,
                        status: 200,
                        body: outcome.accepted.clone(),
                    });
                }
                out.push(publish(prefix, "update/accepted", outcome.accepted));
                if let Some(delta) = outcome.delta {
                    out.push(publish(prefix, "update/delta", delta));
                }
                out.push(publish(prefix, "update/documents", outcome.documents));
            }
            ShadowOp::Get => {
                let doc = shadow::get(&req.key, slot, &req.payload, now, &self.limits)?;
                out.push(answer(prefix, "get/accepted", req.origin, doc));
            }
            ShadowOp::Delete => {
                let (slot, doc) = shadow::delete(&req.key, slot, &req.payload, now, &self.limits)?;
                self.put(&req.key, slot, &req.payload)?;
                if let Origin::Rest(to) = req.origin {
                    out.push(Output::Http {
                        to,
                        status: 200,
                        body: doc.clone(),
                    });
                }
                out.push(publish(prefix, "delete/accepted", doc));
            }
        }
        Ok(())
    }

    fn put(&mut self, key: &ShadowKey, slot: ShadowSlot, payload: &[u8]) -> Result<(), Rejection> {
        match self.store.put(key.clone(), slot) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "shadow log write failed; shadows now refuse changes");
                self.commits.fail();
                Err(Rejection::internal().with_client_token(client_token(payload)))
            }
        }
    }

    /// ListNamedShadowsForThing: `(status, body)`.
    pub fn list(
        &self,
        thing: &ThingName,
        next_token: Option<&str>,
        page_size: usize,
        now: u64,
    ) -> (u16, Vec<u8>) {
        let (names, more) = self.store.list_named(thing, next_token, page_size);
        let mut doc = serde_json::json!({ "results": names, "timestamp": now });
        if more {
            if let Some(last) = names.last() {
                doc["nextToken"] = serde_json::Value::String(last.clone());
            }
        }
        (200, serde_json::to_vec(&doc).unwrap_or_default())
    }

    /// True when records were appended since the last commit.
    pub fn needs_commit(&self) -> bool {
        self.commits.needs_commit(self.store.last_lsn())
    }

    /// What to say for answers a commit released: their outputs when the log is durable
    /// (`ok`); when the sync failed, a 500 to REST callers and no accepted document for a
    /// change that may be lost (the request PUBLISH is still acknowledged: it was received
    /// and routed; the log's failure is the server's, and a resend would not cure it).
    pub fn answers(&mut self, released: Vec<Pending>, ok: bool, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        for p in released {
            self.release(&p.thing);
            if ok {
                out.extend(p.outputs);
                continue;
            }
            for o in p.outputs {
                match o {
                    Output::Http { to, .. } => out.push(Output::Http {
                        to,
                        status: 500,
                        body: Rejection::internal().to_json(now),
                    }),
                    Output::PubAck(to) => out.push(Output::PubAck(to)),
                    Output::Publish { .. } => {}
                }
            }
        }
        out
    }

    fn release(&mut self, thing: &ThingName) {
        if let Some(n) = self.in_flight.get_mut(thing) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(thing);
            }
        }
    }

    pub fn compact_if_due(&mut self) {
        if self.commits.failed() {
            return;
        }
        match self.store.maybe_compact() {
            Ok(true) => tracing::info!(shadows = self.store.len(), "shadow log compacted"),
            Ok(false) => {}
            Err(StoreError::Log(e)) => {
                tracing::error!(error = %e, "shadow log compaction failed");
            }
            Err(e) => tracing::error!(error = %e, "shadow log compaction failed"),
        }
    }
}

impl Logged for ShadowService {
    type Waiter = Pending;
    fn log_and_queue(&mut self) -> (&mut Log, &mut CommitQueue<Pending>) {
        (self.store.log_mut(), &mut self.commits)
    }
    fn compact_if_due(&mut self) {
        ShadowService::compact_if_due(self);
    }
}

fn publish(prefix: &str, suffix: &str, payload: Vec<u8>) -> Output {
    Output::Publish {
        topic: format!("{prefix}/{suffix}"),
        payload,
    }
}

fn answer(prefix: &str, suffix: &str, origin: Origin, body: Vec<u8>) -> Output {
    match origin {
        Origin::Mqtt(_) => publish(prefix, suffix, body),
        Origin::Rest(to) => Output::Http {
            to,
            status: 200,
            body,
        },
    }
}

/// The deferred PUBACK of an MQTT request, if it has one.
fn puback(origin: Origin) -> Option<Output> {
    match origin {
        Origin::Mqtt(Some(to)) => Some(Output::PubAck(to)),
        _ => None,
    }
}

/// The rejection of a request, on `{op}/rejected` or as an HTTP error.
pub fn rejected(prefix: &str, op: &str, origin: Origin, rejection: &Rejection, now: u64) -> Output {
    let body = rejection.to_json(now);
    match origin {
        Origin::Mqtt(_) => publish(prefix, &format!("{op}/rejected"), body),
        Origin::Rest(to) => Output::Http {
            to,
            status: rejection.code,
            body,
        },
    }
}

/// The request's clientToken, for errors raised outside the document algebra.
pub fn client_token(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Token {
        #[serde(rename = "clientToken")]
        client_token: Option<String>,
    }
    serde_json::from_slice::<Token>(payload)
        .ok()
        .and_then(|t| t.client_token)
        .filter(|t| t.len() <= 64)
}

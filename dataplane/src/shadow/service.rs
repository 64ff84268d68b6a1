//! The owner side of the shadow service: one per shard, for the things whose name hashes to
//! it, so one writer orders every change to a shadow.
//!
//! A request is applied to memory at once (the next request sees it) and its record
//! appended to the log; its answers wait in `pending` until the log is durable up to that
//! record, then go out in order. Gets and rejections wait behind earlier changes too, so a
//! client never sees an answer that a crash could take back, nor answers out of order.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use iotcore_core::log::Lsn;
use iotcore_core::shadow::{self, Rejection, ShadowKey, ShadowLimits, ShadowSlot, ThingName};
use serde::Deserialize;

use super::store::{ShadowStore, StoreError};
use super::topics::{self, ShadowOp};
use crate::shard::replies::ReplyTo;

/// Who asked, so the answer goes back the same way.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// A PUBLISH on a request topic: answered by publishing on the response topics.
    Mqtt,
    /// A REST call on some shard's HTTP listener: answered with a status and a body.
    Rest(ReplyTo),
}

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
}

struct Pending {
    needs: Lsn,
    thing: ThingName,
    outputs: Vec<Output>,
}

pub struct ShadowService {
    pub store: ShadowStore,
    limits: ShadowLimits,
    durable: bool,
    max_in_flight: usize,
    /// Requests per thing whose answers wait in `pending`.
    in_flight: HashMap<ThingName, usize, foldhash::fast::RandomState>,
    pending: VecDeque<Pending>,
    durable_lsn: Lsn,
    /// Set after a failed write or fsync: the log refuses everything from then on.
    failed: bool,
}

impl ShadowService {
    pub fn new(
        store: ShadowStore,
        limits: ShadowLimits,
        durable: bool,
        max_in_flight: usize,
    ) -> ShadowService {
        let durable_lsn = store.last_lsn();
        ShadowService {
            store,
            limits,
            durable,
            max_in_flight,
            in_flight: HashMap::default(),
            pending: VecDeque::new(),
            durable_lsn,
            failed: false,
        }
    }

    /// Applies one request; returns what may be said at once (the rest waits for
    /// [`ShadowService::committed`]).
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
            return vec![rejected(&prefix, op, req.origin, &rejection, now)];
        }
        let mut outputs = Vec::with_capacity(4);
        match self.apply(&req, &prefix, now, &mut outputs) {
            Ok(()) => {}
            Err(rejection) => outputs.push(rejected(&prefix, op, req.origin, &rejection, now)),
        }
        let needs = self.store.last_lsn();
        if !self.durable || (needs <= self.durable_lsn && self.pending.is_empty()) {
            return outputs;
        }
        *self.in_flight.entry(req.key.thing.clone()).or_insert(0) += 1;
        self.pending.push_back(Pending {
            needs,
            thing: req.key.thing,
            outputs,
        });
        Vec::new()
    }

    fn apply(
        &mut self,
        req: &ShadowRequest,
        prefix: &str,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        if self.failed {
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
                self.failed = true;
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

    /// The LSN up to which the last commit made the log durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }

    /// True when records were appended since the last commit.
    pub fn needs_commit(&self) -> bool {
        !self.failed && self.store.last_lsn() > self.durable_lsn
    }

    /// The log is durable up to `lsn`: the answers that waited for it.
    pub fn committed(&mut self, lsn: Lsn) -> Vec<Output> {
        self.durable_lsn = self.durable_lsn.max(lsn);
        let mut out = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|p| p.needs <= self.durable_lsn)
        {
            if let Some(p) = self.pending.pop_front() {
                self.release(&p.thing);
                out.extend(p.outputs);
            }
        }
        out
    }

    /// The log failed: every waiting answer becomes a 500, and so will every later change.
    pub fn commit_failed(&mut self, now: u64) -> Vec<Output> {
        self.failed = true;
        let mut out = Vec::new();
        while let Some(p) = self.pending.pop_front() {
            self.release(&p.thing);
            for o in p.outputs {
                match o {
                    Output::Http { to, .. } => out.push(Output::Http {
                        to,
                        status: 500,
                        body: Rejection::internal().to_json(now),
                    }),
                    // Accepted documents must not go out for changes that may be lost.
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
        if self.failed {
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

fn publish(prefix: &str, suffix: &str, payload: Vec<u8>) -> Output {
    Output::Publish {
        topic: format!("{prefix}/{suffix}"),
        payload,
    }
}

fn answer(prefix: &str, suffix: &str, origin: Origin, body: Vec<u8>) -> Output {
    match origin {
        Origin::Mqtt => publish(prefix, suffix, body),
        Origin::Rest(to) => Output::Http {
            to,
            status: 200,
            body,
        },
    }
}

/// The rejection of a request, on `{op}/rejected` or as an HTTP error.
pub fn rejected(prefix: &str, op: &str, origin: Origin, rejection: &Rejection, now: u64) -> Output {
    let body = rejection.to_json(now);
    match origin {
        Origin::Mqtt => publish(prefix, &format!("{op}/rejected"), body),
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

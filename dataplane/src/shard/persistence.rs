//! The shard's hooks into its session log: what a persistent session (expiry > 0) writes
//! when it is installed, changes its subscriptions, goes offline, is owed a message, gets an
//! acknowledgement, or ends; and its restoration at start-up. Failures to write are logged:
//! the session goes on in memory but would not survive a restart.

use std::rc::Rc;

use iotcore_core::mqtt::QoS;

use super::replies::{Reply, ReplyTo};
use super::Shard;
use crate::ids::ClientId;
use crate::message::Delivery;
use crate::session::Session;
use crate::session_store::{RecoveredSession, SessionStore};

impl Shard {
    fn with_session_store<T>(&self, f: impl FnOnce(&mut SessionStore) -> T) -> Option<T> {
        let out = {
            let mut cell = self.session_store.borrow_mut();
            let store = cell.as_mut()?;
            let out = f(store);
            if store.log.needs_commit() {
                self.session_commit.notify();
            }
            out
        };
        Some(out)
    }

    /// A session was installed here (new, resumed, or moved from another shard).
    pub(super) fn persist_installed(&self, session: &Session) {
        if session.expiry_secs == 0 {
            self.persist_ended(&session.client_id);
            return;
        }
        match self.with_session_store(|s| s.put_session_full(session)) {
            Some(Ok(true)) => self.directory.persistent_added(1),
            Some(Ok(false)) | None => {}
            Some(Err(e)) => {
                tracing::error!(error = %e, client_id = %session.client_id, "cannot write a session")
            }
        }
    }

    /// A persistent session's subscriptions or expiry changed, or it went offline.
    pub fn persist_session(&self, session: &Session, offline_since_ms: Option<u64>) {
        if session.expiry_secs == 0 {
            return;
        }
        match self.with_session_store(|s| s.put_session(session, offline_since_ms)) {
            Some(Ok(true)) => self.directory.persistent_added(1),
            Some(Ok(false)) | None => {}
            Some(Err(e)) => {
                tracing::error!(error = %e, client_id = %session.client_id, "cannot write a session")
            }
        }
    }

    /// The session ended or left this shard.
    pub(super) fn persist_ended(&self, client: &ClientId) {
        match self.with_session_store(|s| s.ended(client)) {
            Some(Ok(true)) => self.directory.persistent_removed(),
            Some(Ok(false)) | None => {}
            Some(Err(e)) => {
                tracing::error!(error = %e, client_id = %client, "cannot write a session end")
            }
        }
    }

    /// A message was queued for a persistent session; the publisher's acknowledgement will
    /// wait for it to be durable.
    pub(super) fn persist_queued(&self, client: &ClientId, delivery: &Delivery, qos: QoS) {
        match self.with_session_store(|s| s.queued(client, delivery, qos)) {
            Some(Ok(())) => self.persisted_in_route.set(true),
            None => {}
            Some(Err(e)) => {
                tracing::error!(error = %e, client_id = %client, "cannot write a queued message")
            }
        }
    }

    /// A logged message was acknowledged by the client (or dropped).
    pub fn persist_done(&self, client: &ClientId, delivery: &Delivery) {
        if delivery.seq == 0 {
            return;
        }
        if let Some(Err(e)) = self.with_session_store(|s| s.done(client, delivery.seq)) {
            tracing::error!(error = %e, client_id = %client, "cannot write a message acknowledgement");
        }
    }

    /// Answers `to` once the session log is durable up to now.
    pub(super) fn ack_when_sessions_durable(&self, to: ReplyTo) {
        let now = self
            .with_session_store(|s| s.log.answer_when_durable(to))
            .unwrap_or(Some(to));
        if let Some(to) = now {
            self.reply(to, Reply::Ack);
        }
    }

    /// Installs the session store and the sessions it recovered (offline, each with its
    /// remaining expiry). The recovered sessions are already on the log, so they are
    /// installed before the store is, and not written again.
    pub async fn restore_sessions(
        self: &Rc<Self>,
        store: SessionStore,
        recovered: Vec<RecoveredSession>,
    ) {
        let limits = &self.config.limits;
        let now_ms = crate::stored_message::unix_ms();
        let mut acks = Vec::new();
        let count = recovered.len();
        for r in recovered {
            let (key, _) = self.directory.claim(&r.client_id, self.id);
            let mut session = Session::new(
                r.client_id.clone(),
                limits.receive_maximum,
                limits.max_queued_messages,
                limits.receive_maximum,
            );
            session.expiry_secs = r.expiry_secs;
            for sub in r.subscriptions {
                session.subscriptions.insert(sub.filter.full(), sub);
            }
            for (qos, delivery) in r.deliveries {
                let _ = session.outbound.enqueue(delivery, qos);
            }
            let offline_ms = r
                .offline_since_ms
                .map_or(0, |since| now_ms.saturating_sub(since));
            let remaining = (u64::from(r.expiry_secs) * 1000).saturating_sub(offline_ms) / 1000;
            acks.extend(self.install_session(key, session));
            crate::connection::spawn_expiry(
                self.clone(),
                key,
                r.client_id,
                u32::try_from(remaining.max(1)).unwrap_or(u32::MAX),
            );
        }
        *self.session_store.borrow_mut() = Some(store);
        self.directory.persistent_added(count);
        self.spawn_commit_task(self.clone().run_commits(
            |s| &s.session_store,
            |s| &s.session_commit,
            "sessions",
            Shard::deliver_acks,
        ));
        self.await_acks(acks).await;
        if count > 0 {
            tracing::info!(
                shard = self.id.0,
                sessions = count,
                "persistent sessions restored"
            );
        }
    }
}

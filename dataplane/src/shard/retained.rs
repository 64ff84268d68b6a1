//! The shard's part in durable retained messages: the owner of a topic writes each change to
//! its retained log and acknowledges it once a group commit covers it.

use std::rc::Rc;

use bytestring::ByteString;

use super::replies::{Reply, ReplyTo};
use super::Shard;
use crate::message::Message;
use crate::retained_store::RetainedStore;
use crate::storage::retained_owner;

impl Shard {
    /// If this shard owns `topic`, writes the change and takes over answering `ack` (at once
    /// or after the next fsync). Returns false when another shard owns the topic.
    pub(super) fn persist_retained(
        &self,
        topic: &ByteString,
        message: Option<&Message>,
        ack: Option<ReplyTo>,
    ) -> bool {
        if retained_owner(topic, self.shard_count) != self.id {
            return false;
        }
        let (now, commit) = {
            let mut store = self.retained_store.borrow_mut();
            let Some(store) = store.as_mut() else {
                return false;
            };
            if let Err(e) = store.record(topic, message) {
                // The message stays retained in memory; it will not survive a restart.
                tracing::error!(error = %e, topic = %topic, "cannot write a retained message to the log");
            }
            let now = ack.and_then(|to| store.log.answer_when_durable(to));
            (now, store.log.needs_commit())
        };
        if commit {
            self.retained_commit.notify();
        }
        if let Some(to) = now {
            self.reply(to, Reply::Ack);
        }
        true
    }

    /// Installs the store opened at start-up.
    pub fn set_retained_store(&self, store: RetainedStore) {
        *self.retained_store.borrow_mut() = Some(store);
    }

    /// Starts the retained log's group-commit task.
    pub fn start_retained_commits(self: &Rc<Self>) {
        self.spawn_commit_task(self.clone().run_commits(
            |s| &s.retained_store,
            |s| &s.retained_commit,
            "retained",
            Shard::deliver_acks,
        ));
    }
}

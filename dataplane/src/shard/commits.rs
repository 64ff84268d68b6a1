//! The group-commit task of a shard's durable log (retained messages, sessions): wait for
//! appends, flush, fsync off the shard, then answer what waited (see `durable.rs`).

use std::cell::RefCell;
use std::rc::Rc;

use super::replies::{Reply, ReplyTo};
use super::Shard;
use crate::durable::Logged;
use crate::notify::Notify;

impl Shard {
    /// Spawns a group-commit task into the commit queue (created on first use).
    pub(super) fn spawn_commit_task(&self, task: impl std::future::Future<Output = ()> + 'static) {
        let queue = self.commit_queue.get().unwrap_or_else(|| {
            let q = glommio::executor().create_task_queue(
                glommio::Shares::Static(1000),
                glommio::Latency::Matters(std::time::Duration::from_millis(1)),
                "commits",
            );
            self.commit_queue.set(Some(q));
            q
        });
        match glommio::spawn_local_into(task, queue) {
            Ok(t) => {
                t.detach();
            }
            Err(e) => tracing::error!(error = %e, "cannot start a commit task"),
        }
    }

    /// Group commit for one log: whatever was appended while the previous fsync ran is made
    /// durable by the next one; then `deliver` sends what waited (`ok` false: the sync failed
    /// and the log refuses changes from now on).
    pub(super) async fn run_commits<S: Logged>(
        self: Rc<Self>,
        store: fn(&Shard) -> &RefCell<Option<S>>,
        wake: fn(&Shard) -> &Notify,
        what: &'static str,
        deliver: fn(&Rc<Shard>, Vec<S::Waiter>, bool),
    ) {
        loop {
            wake(&self).notified().await;
            loop {
                let step = {
                    let mut cell = store(&self).borrow_mut();
                    let Some(s) = cell.as_mut() else { return };
                    let (log, queue) = s.log_and_queue();
                    if !queue.needs_commit(log.last_lsn()) {
                        break;
                    }
                    queue.begin_commit(log)
                };
                let result = crate::durable::commit(step).await;
                let (answers, ok) = {
                    let mut cell = store(&self).borrow_mut();
                    let Some(s) = cell.as_mut() else { return };
                    match result {
                        Ok(lsn) => {
                            let (_, queue) = s.log_and_queue();
                            self.count_commit(queue.durable_lsn(), lsn);
                            let answers = queue.committed(lsn);
                            s.compact_if_due();
                            (answers, true)
                        }
                        Err(e) => {
                            tracing::error!(error = %e, log = what, "log sync failed; changes are no longer durable");
                            (s.log_and_queue().1.commit_failed(), false)
                        }
                    }
                };
                deliver(&self, answers, ok);
            }
        }
    }

    /// The answers of the retained and session logs: acknowledgements to other requests.
    pub(super) fn deliver_acks(self: &Rc<Self>, answers: Vec<ReplyTo>, _ok: bool) {
        for to in answers {
            self.reply(to, Reply::Ack);
        }
    }
}

impl Shard {
    /// Counts one finished group commit that took the log from `before` to `after`.
    pub(super) fn count_commit(
        &self,
        before: iotcore_core::log::Lsn,
        after: iotcore_core::log::Lsn,
    ) {
        crate::metrics::bump(&self.metrics.log_commits_total, 1);
        crate::metrics::bump(
            &self.metrics.log_committed_records_total,
            after.get().saturating_sub(before.get()),
        );
    }

    /// At shutdown: everything appended reaches the disk (with `durable = false` too), on
    /// this thread, since nothing else is left to serve; the logs' zero-filled tails are cut.
    pub fn sync_logs(&self) {
        let mut results = Vec::new();
        if let Some(s) = self.shadows.borrow_mut().as_mut() {
            results.push(("shadows", s.store.log_mut().sync_and_trim().map(|_| ())));
        }
        if let Some(s) = self.retained_store.borrow_mut().as_mut() {
            results.push(("retained", s.log.log_mut().sync_and_trim().map(|_| ())));
        }
        if let Some(s) = self.session_store.borrow_mut().as_mut() {
            results.push(("sessions", s.log.log_mut().sync_and_trim().map(|_| ())));
        }
        for (log, result) in results {
            if let Err(e) = result {
                tracing::error!(shard = self.id.0, log, error = %e, "cannot sync the log at shutdown");
            }
        }
    }
}

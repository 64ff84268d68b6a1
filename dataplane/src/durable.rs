//! A log with group commit, for the durable parts of a shard that answer a request once its
//! record is on disk (retained messages, persistent sessions). Records are appended at once;
//! the answers wait in order until a sync covers them. One commit task per log flushes and
//! fsyncs (on glommio's blocking pool, so the shard keeps serving), then releases what
//! waited: everything appended during one fsync shares the next one.

use std::collections::VecDeque;

use iotcore_core::log::{Log, LogError, Lsn};

use crate::shard::replies::ReplyTo;

pub struct DurableLog {
    log: Log,
    /// Fsync before answering; when false, answers go out as soon as the record is buffered.
    durable: bool,
    waiting: VecDeque<(Lsn, ReplyTo)>,
    durable_lsn: Lsn,
    /// After a failed write or fsync the log refuses everything (see core::log).
    failed: bool,
}

/// What a commit step needs to do off the shard: an fsync, or nothing more.
pub enum CommitStep {
    Sync(iotcore_core::log::SyncHandle),
    Done(Lsn),
}

impl DurableLog {
    pub fn new(log: Log, durable: bool) -> DurableLog {
        let durable_lsn = log.last_lsn();
        DurableLog {
            log,
            durable,
            waiting: VecDeque::new(),
            durable_lsn,
            failed: false,
        }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn log_mut(&mut self) -> &mut Log {
        &mut self.log
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Appends a record. An error poisons the log: later appends fail too.
    pub fn append(&mut self, record: &[u8]) -> Result<Lsn, LogError> {
        if self.failed {
            return Err(LogError::Poisoned {
                dir: self.log.dir().to_path_buf(),
            });
        }
        self.log.append(record).inspect_err(|_| self.failed = true)
    }

    /// `to` is answered once everything appended so far is durable. Returns it back when
    /// that is already the case (answer now).
    pub fn answer_when_durable(&mut self, to: ReplyTo) -> Option<ReplyTo> {
        let needs = self.log.last_lsn();
        if !self.durable || (needs <= self.durable_lsn && self.waiting.is_empty()) {
            return Some(to);
        }
        self.waiting.push_back((needs, to));
        None
    }

    pub fn needs_commit(&self) -> bool {
        !self.failed && self.log.last_lsn() > self.durable_lsn
    }

    /// Flushes; returns the fsync to run (durable mode) or the LSN now written.
    pub fn begin_commit(&mut self) -> Result<CommitStep, LogError> {
        self.log.flush().inspect_err(|_| self.failed = true)?;
        Ok(if self.durable {
            CommitStep::Sync(self.log.sync_handle())
        } else {
            CommitStep::Done(self.log.last_lsn())
        })
    }

    /// The LSN up to which the last commit made the log durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }

    /// The log is durable up to `lsn`: the answers that waited for it.
    pub fn committed(&mut self, lsn: Lsn) -> Vec<ReplyTo> {
        self.durable_lsn = self.durable_lsn.max(lsn);
        let mut out = Vec::new();
        while let Some(&(needs, to)) = self.waiting.front() {
            if needs > self.durable_lsn {
                break;
            }
            self.waiting.pop_front();
            out.push(to);
        }
        out
    }

    /// The sync failed: everything waiting is answered (as a failure, by the caller).
    pub fn commit_failed(&mut self) -> Vec<ReplyTo> {
        self.failed = true;
        self.waiting.drain(..).map(|(_, to)| to).collect()
    }
}

/// Runs one commit step on the current glommio executor: flush on the shard, fsync on the
/// blocking pool. `Ok(lsn)`: durable up to `lsn`.
pub async fn commit(step: Result<CommitStep, LogError>) -> Result<Lsn, LogError> {
    match step? {
        CommitStep::Sync(handle) => {
            glommio::executor()
                .spawn_blocking(move || handle.sync())
                .await
        }
        CommitStep::Done(lsn) => Ok(lsn),
    }
}

/// A store kept on a `DurableLog`.
pub trait Logged {
    fn durable_log(&mut self) -> &mut DurableLog;
    /// Snapshot and drop old segments if the log has grown enough.
    fn compact_if_due(&mut self);
}

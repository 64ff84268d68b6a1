//! Group commit, for every durable part of a shard that answers a request once its record is
//! on disk (device shadows, retained messages, persistent sessions). Records are appended at
//! once; the answers wait in order in a [`CommitQueue`] until a sync covers them. One commit
//! task per log (`shard/commits.rs`) flushes and fdatasyncs (through the shard's io_uring, so
//! the shard keeps serving), then releases what waited: everything appended during one sync
//! shares the next one.

use std::collections::VecDeque;

use iotcore_core::log::{Log, LogConfig, LogError, Lsn, Recovery, SyncHandle};

use crate::shard::replies::ReplyTo;

/// Opens (recovering) one of a shard's logs with the configured segment size.
pub fn open_log(dir: &std::path::Path, segment_bytes: u64) -> Result<(Log, Recovery), LogError> {
    Log::open(
        dir,
        LogConfig {
            segment_bytes,
            ..LogConfig::default()
        },
    )
}

/// The answers waiting for a log to be durable, each with the LSN it needs, in order; `W`
/// is whatever the owner sends once that LSN is on disk.
pub struct CommitQueue<W> {
    /// Fsync before answering; when false, answers go out as soon as the record is buffered.
    durable: bool,
    waiting: VecDeque<(Lsn, W)>,
    durable_lsn: Lsn,
    /// After a failed write or fsync the log refuses everything (see core::log).
    failed: bool,
}

impl<W> CommitQueue<W> {
    /// For a log that is durable up to `durable_lsn` (all of it, just after recovery).
    pub fn new(durable_lsn: Lsn, durable: bool) -> CommitQueue<W> {
        CommitQueue {
            durable,
            waiting: VecDeque::new(),
            durable_lsn,
            failed: false,
        }
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    /// A write to the log failed: nothing more is committed.
    pub fn fail(&mut self) {
        self.failed = true;
    }

    /// The LSN up to which the last commit made the log durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }

    /// `answer` goes out once the log is durable up to `last_lsn` (everything appended so
    /// far). Returns it back when that is already the case and nothing waits before it.
    pub fn answer_when_durable(&mut self, last_lsn: Lsn, answer: W) -> Option<W> {
        if !self.durable || (last_lsn <= self.durable_lsn && self.waiting.is_empty()) {
            return Some(answer);
        }
        self.waiting.push_back((last_lsn, answer));
        None
    }

    pub fn needs_commit(&self, last_lsn: Lsn) -> bool {
        !self.failed && last_lsn > self.durable_lsn
    }

    /// Flushes `log`; returns the fsync to run (durable mode) or the LSN now written.
    pub fn begin_commit(&mut self, log: &mut Log) -> Result<CommitStep, LogError> {
        log.flush().inspect_err(|_| self.failed = true)?;
        Ok(if self.durable {
            CommitStep::Sync(log.sync_handle())
        } else {
            CommitStep::Done(log.last_lsn())
        })
    }

    /// The log is durable up to `lsn`: the answers that waited for it.
    pub fn committed(&mut self, lsn: Lsn) -> Vec<W> {
        self.durable_lsn = self.durable_lsn.max(lsn);
        let mut out = Vec::new();
        while self
            .waiting
            .front()
            .is_some_and(|(needs, _)| *needs <= self.durable_lsn)
        {
            if let Some((_, answer)) = self.waiting.pop_front() {
                out.push(answer);
            }
        }
        out
    }

    /// The sync failed: everything waiting is handed back, to be answered as a failure.
    pub fn commit_failed(&mut self) -> Vec<W> {
        self.failed = true;
        self.waiting.drain(..).map(|(_, answer)| answer).collect()
    }
}

/// A log whose waiting answers are replies to other requests (retained changes, messages
/// queued for persistent sessions).
pub struct DurableLog {
    log: Log,
    queue: CommitQueue<ReplyTo>,
}

/// What a commit step needs to do off the shard: an fsync, or nothing more.
pub enum CommitStep {
    Sync(SyncHandle),
    Done(Lsn),
}

impl DurableLog {
    pub fn new(log: Log, durable: bool) -> DurableLog {
        let queue = CommitQueue::new(log.last_lsn(), durable);
        DurableLog { log, queue }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn log_mut(&mut self) -> &mut Log {
        &mut self.log
    }

    pub fn failed(&self) -> bool {
        self.queue.failed()
    }

    /// Appends a record. An error poisons the log: later appends fail too.
    pub fn append(&mut self, record: &[u8]) -> Result<Lsn, LogError> {
        if self.queue.failed() {
            return Err(LogError::Poisoned {
                dir: self.log.dir().to_path_buf(),
            });
        }
        self.log.append(record).inspect_err(|_| self.queue.fail())
    }

    /// `to` is answered once everything appended so far is durable. Returns it back when
    /// that is already the case (answer now).
    pub fn answer_when_durable(&mut self, to: ReplyTo) -> Option<ReplyTo> {
        self.queue.answer_when_durable(self.log.last_lsn(), to)
    }

    pub fn needs_commit(&self) -> bool {
        self.queue.needs_commit(self.log.last_lsn())
    }
}

/// A store kept on a log with a [`CommitQueue`], served by the generic commit task.
pub trait Logged {
    /// What waits for a commit.
    type Waiter;
    fn log_and_queue(&mut self) -> (&mut Log, &mut CommitQueue<Self::Waiter>);
    /// Snapshot and drop old segments if the log has grown enough.
    fn compact_if_due(&mut self);
}

impl DurableLog {
    pub fn log_and_queue(&mut self) -> (&mut Log, &mut CommitQueue<ReplyTo>) {
        (&mut self.log, &mut self.queue)
    }
}

/// Runs one commit step on the current glommio executor: the flush was done on the shard,
/// the fdatasync goes through the shard's io_uring. `Ok(lsn)`: durable up to `lsn`.
///
/// Why io_uring and not the blocking thread pool: the kernel runs the fsync in its own
/// worker and posts the completion to the ring the shard polls anyway. Handing it to a
/// pool thread cost a channel send, a futex wake-up and an eventfd round trip back, and
/// its thread competed with the shards for the cores.
pub async fn commit(step: Result<CommitStep, LogError>) -> Result<Lsn, LogError> {
    match step? {
        CommitStep::Sync(handle) => {
            if !handle.needs_sync()? {
                return Ok(handle.lsn());
            }
            let result = fdatasync(handle.fd()).await;
            handle.synced(result)
        }
        CommitStep::Done(lsn) => Ok(lsn),
    }
}

/// fdatasync through glommio's ring, on a duplicate of `fd` (glommio closes the files it
/// owns; the log keeps its own).
async fn fdatasync(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let own = fd.try_clone_to_owned()?;
    // SAFETY: `own` is a fresh descriptor nobody else holds; the BufferedFile takes it over
    // and closes it when dropped.
    #[allow(unsafe_code)]
    let file = unsafe {
        <glommio::io::BufferedFile as std::os::fd::FromRawFd>::from_raw_fd(own.into_raw_fd())
    };
    let result = file.fdatasync().await.map_err(std::io::Error::from);
    let _ = file.close().await;
    result
}

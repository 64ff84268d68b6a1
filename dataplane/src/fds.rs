//! File descriptors: one per connection, so their limit and their table are set up before
//! the shards start.
//!
//! Why the table: the kernel grows a process's descriptor table by doubling it (at 256,
//! 512, 1,024, ... descriptors), and in a process with more than one thread each growth
//! waits for an RCU grace period (`synchronize_rcu` in `expand_fdtable`). With both shards
//! accepting, the `accept4` that crossed each power of two took 8–15 ms, and every client
//! connecting meanwhile waited: 10,000 clients connecting saw p99 20–40 ms from TCP connect
//! to CONNACK against 4–5 ms for the single-threaded Mosquitto (`iotcore-bench run
//! --scenario connections` reports `connect_p99_us`; `perf trace` showed the slow accepts,
//! bench/results session 7). Grown once here, while the process has one thread, it costs
//! nothing and never grows again below that size.

use std::os::fd::AsRawFd;

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The table is grown to at most this many descriptors up front (8 bytes each in the
/// kernel: 2 MiB); past it, it grows as before.
const PREPARED_MAX: u64 = 1 << 18;

/// Raises the soft limit on open files to the hard one (as systemd advises programs that
/// need many to do, and as Go's runtime does) and grows the descriptor table to it, up to
/// `PREPARED_MAX`. Returns the limit now in force. Call it before starting any thread.
pub fn prepare() -> std::io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let limit = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open files limit");
                soft
            }
        }
    } else {
        soft
    };
    let top = limit.min(PREPARED_MAX).saturating_sub(1);
    // `dup2` would close a descriptor open there; none is this early, but if one were, the
    // table is that large already.
    let in_use = nix::fcntl::fcntl(top as i32, nix::fcntl::FcntlArg::F_GETFD).is_ok();
    if top > 0 && !in_use {
        // A descriptor at the top of the range makes the kernel size the table for it;
        // closing it leaves the table as large.
        let stderr = std::io::stderr();
        let fd = nix::unistd::dup2(stderr.as_raw_fd(), top as i32)?;
        nix::unistd::close(fd)?;
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_limit_is_the_hard_one_and_no_descriptor_is_left_open() {
        let before = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0);
        let limit = super::prepare().expect("prepare");
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .expect("getrlimit");
        assert_eq!(limit, soft);
        assert_eq!(soft, hard);
        let after = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0);
        // Other tests may open files meanwhile; the prepared one is not among them.
        assert!(after <= before + 4, "{before} -> {after}");
        assert!(
            !std::path::Path::new(&format!("/proc/self/fd/{}", soft.min(1 << 18) - 1)).exists()
        );
    }
}

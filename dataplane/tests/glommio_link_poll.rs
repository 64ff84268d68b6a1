//! A regression test for the eighth glommio patch (vendor/README.md): an executor that
//! sleeps many times, woken each time by a socket, must not leave a poll armed in the
//! kernel per sleep.
//!
//! Upstream submitted a new poll of the latency ring's file descriptor with every sleep and
//! never removed the old ones; they piled up until the latency ring next had a completion
//! and then all completed at once, stalling the shard. The kernel lists every armed poll of
//! a ring under `PollList:` in the ring's `/proc/self/fdinfo` entry; this test counts them
//! after a few hundred sleeps with no timer in between (a timer's completion would have
//! cleared the pile).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use glommio::{LocalExecutorBuilder, Placement};

/// How many times the executor is woken by the socket.
const WAKES: usize = 300;

/// Armed polls of every io_uring instance of this process, from `/proc/self/fdinfo`.
fn armed_polls() -> usize {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_ring = std::fs::read_link(entry.path())
            .map(|target| target.to_string_lossy().contains("io_uring"))
            .unwrap_or(false);
        if !is_ring {
            continue;
        }
        let info_path = format!("/proc/self/fdinfo/{}", entry.file_name().to_string_lossy());
        let Ok(info) = std::fs::read_to_string(info_path) else {
            continue;
        };
        let mut in_poll_list = false;
        for line in info.lines() {
            if line.starts_with("PollList") {
                in_poll_list = true;
            } else if in_poll_list && line.trim_start().starts_with("op=") {
                total += 1;
            } else if in_poll_list {
                in_poll_list = false;
            }
        }
    }
    total
}

#[test]
fn sleeping_does_not_pile_up_polls_in_the_kernel() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A plain thread writes one byte at a time, slowly enough that the executor sleeps
    // before each one arrives.
    let writer = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        for _ in 0..WAKES {
            std::thread::sleep(Duration::from_micros(300));
            socket.write_all(b"x").unwrap();
        }
        // Held open until the reader has counted.
        std::thread::sleep(Duration::from_secs(2));
    });

    let (polls, read) = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let mut stream = glommio::net::TcpStream::connect(addr).await.unwrap();
            let mut read = 0;
            let mut byte = [0u8; 1];
            while read < WAKES {
                let n = stream.read(&mut byte).await.unwrap();
                assert_eq!(n, 1, "the writer closed early");
                read += n;
            }
            (armed_polls(), read)
        })
        .unwrap()
        .join()
        .unwrap();
    writer.join().unwrap();

    assert_eq!(read, WAKES);
    // At least the link between the rings is armed while the executor runs; none listed
    // means this kernel's fdinfo does not list polls and the count below would prove nothing.
    assert!(
        polls >= 1,
        "the kernel's fdinfo lists no armed poll (no `PollList:`)"
    );
    eprintln!("{polls} polls armed after {WAKES} wake-ups");
    // The socket's own read poll and the link between the rings, each at most once; a few
    // more allowed for glommio's own. Upstream left one per sleep: hundreds.
    assert!(
        polls <= 8,
        "{polls} polls armed in the kernel after {WAKES} wake-ups"
    );
}

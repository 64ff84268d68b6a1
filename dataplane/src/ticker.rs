//! A heartbeat for the shards, over loopback TCP.
//!
//! glommio 0.9 can go to sleep in `io_uring_enter` and miss the wake-up of its own timers
//! on some virtual machines (glommio issue 547: the timeout lives in the "latency" ring,
//! which the sleeping main ring watches through a linked poll that does not always fire;
//! we saw shards sleep through their timers here). Socket readiness, on the other hand,
//! always wakes a shard. So a plain thread writes one byte every `TICK` to a loopback
//! connection per shard: each shard wakes at least that often, runs its expired timers,
//! and checks the stop flag. Cost: a few dozen tiny reads per second per shard.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::Context;

/// How often every shard is woken at the latest.
pub const TICK: Duration = Duration::from_millis(20);

/// Starts the heartbeat thread; shards connect to the returned address.
pub fn start() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind the ticker")?;
    listener
        .set_nonblocking(true)
        .context("cannot configure the ticker")?;
    let addr = listener.local_addr().context("ticker address")?;
    std::thread::Builder::new()
        .name("iotcore-ticker".into())
        .spawn(move || run(listener))
        .context("cannot start the ticker thread")?;
    Ok(addr)
}

fn run(listener: TcpListener) {
    let mut shards: Vec<TcpStream> = Vec::new();
    loop {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        shards.push(stream);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "ticker accept failed");
                    break;
                }
            }
        }
        // A full socket (the shard is busy and will wake anyway) is fine; a closed one is
        // dropped.
        shards.retain_mut(|s| match s.write(&[1]) {
            Ok(_) => true,
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        });
        std::thread::sleep(TICK);
    }
}

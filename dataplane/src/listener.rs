//! Listening sockets. Every shard binds the same address with SO_REUSEPORT, so the kernel
//! spreads incoming connections over the shards. SO_REUSEADDR is set as well: without it,
//! the TIME_WAIT remains of connections the server closed first would stop a restarted
//! server from binding its port for a minute.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel may hold per shard before accept.
const BACKLOG: i32 = 4096;

pub fn bind(addr: SocketAddr) -> io::Result<glommio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    let fd = socket.into_raw_fd();
    // The one `unsafe` of the project: glommio takes a listener only by `bind` (which sets no
    // SO_REUSEADDR) or from a raw fd.
    // SAFETY: `fd` is a bound, listening TCP socket that nothing else owns; `into_raw_fd`
    // gave up its ownership, which passes to the glommio listener.
    #[allow(unsafe_code)]
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
    Ok(listener)
}

/// Checks, before any shard starts, that no other program listens on `addr`: a plain bind
/// without SO_REUSEPORT fails against a live listener, yet passes over TIME_WAIT remains.
///
/// A server that was just stopped may hold its listening sockets for a moment after its
/// process is gone (the kernel closes files held by io_uring requests asynchronously), so a
/// refusal is retried for a few seconds before it is reported.
pub fn check_free(addr: SocketAddr) -> io::Result<()> {
    let mut attempts = 0;
    loop {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        match socket.bind(&addr.into()) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempts < BIND_RETRIES => {
                attempts += 1;
                std::thread::sleep(BIND_RETRY_DELAY);
            }
            Err(e) => return Err(e),
        }
    }
}

const BIND_RETRIES: u32 = 30;
const BIND_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

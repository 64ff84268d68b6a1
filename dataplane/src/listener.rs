//! Listening sockets. Every shard binds the same address with SO_REUSEPORT, so the kernel
//! spreads incoming connections over the shards. SO_REUSEADDR is set as well: without it,
//! the TIME_WAIT remains of connections the server closed first would stop a restarted
//! server from binding its port for a minute.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel may hold per shard before accept.
const BACKLOG: i32 = 4096;

fn listening_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

/// A glommio listener (the HTTP server's).
pub fn bind(addr: SocketAddr) -> io::Result<glommio::net::TcpListener> {
    let fd = listening_socket(addr)?.into_raw_fd();
    // glommio takes a listener only by `bind` (which sets no SO_REUSEADDR) or from a raw fd.
    // SAFETY: `fd` is a bound, listening TCP socket that nothing else owns; `into_raw_fd`
    // gave up its ownership, which passes to the glommio listener.
    #[allow(unsafe_code)]
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
    Ok(listener)
}

/// The MQTT listener of one shard. It accepts with plain non-blocking `accept4` calls, every
/// pending connection at once, after waiting for readiness with one poll on the ring.
///
/// Why not glommio's `accept`: each of its calls toggles the listener's `O_NONBLOCK` around
/// the attempt (three `fcntl`s per connection, and three more for the attempt that finds
/// none), and the peer's address then costs a `getpeername`. Here the listener is
/// non-blocking for good and `accept4` returns the address: 17.6 system calls per
/// connection's life became 13.6 (`strace -c -f` while 5,000 clients connect, park and
/// leave).
pub struct Listener {
    socket: Socket,
}

/// At most this many connections are accepted in one call (the accepting task then offers
/// the shard to its other tasks).
const ACCEPT_BATCH: usize = 64;

pub fn bind_mqtt(addr: SocketAddr) -> io::Result<Listener> {
    let socket = listening_socket(addr)?;
    socket.set_nonblocking(true)?;
    Ok(Listener { socket })
}

impl Listener {
    /// Waits for connections and appends the pending ones (up to a batch) to `into`, each with
    /// its peer's address (always one on a TCP listener; `None` would have the connection
    /// ask the socket). Connections that fail between the handshake and the accept
    /// (`ECONNABORTED`) are skipped; another error is returned only when nothing was taken.
    pub async fn accept_pending(
        &self,
        into: &mut Vec<(OwnedFd, Option<SocketAddr>)>,
    ) -> io::Result<()> {
        loop {
            while into.len() < ACCEPT_BATCH {
                match self.socket.accept() {
                    Ok((socket, addr)) => into.push((socket.into(), addr.as_socket())),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                        ) => {}
                    Err(e) if into.is_empty() => return Err(e),
                    Err(_) => return Ok(()),
                }
            }
            if !into.is_empty() {
                return Ok(());
            }
            glommio::net::wait_readable(self.socket.as_raw_fd()).await?;
        }
    }
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

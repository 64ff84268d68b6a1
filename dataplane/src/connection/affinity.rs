//! Thing affinity: a device whose client id is its thing name (what AWS recommends, and
//! what its SDK samples do) is served by the shard that owns that thing's shadows.
//!
//! Otherwise half of all shadow requests cross to the other shard and their answers cross
//! back: two hops between cores, each a wake-up of the other core, per request. The
//! connection is handed over right after its CONNECT arrives, before anything about the
//! session happened: the socket (a duplicate of its descriptor) and the bytes read so far
//! go to the owner, which runs the handshake from those bytes as if it had read them itself.
//! A client reconnecting under the same id comes back to the same shard, so its session
//! takeover stays local too.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use bytes::BytesMut;
use glommio::net::TcpStream;

use super::io::Half;
use crate::ids::ShardId;
use crate::metrics::bump;
use crate::shard::mesh::ShardMsg;
use crate::shard::Shard;

/// A connection on its way to its thing's shard: the socket and what was read from it.
pub struct Handover {
    socket: OwnedFd,
    read: BytesMut,
}

impl Handover {
    /// The socket as a stream of the calling shard, and the bytes to decode first.
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (super::stream_of(self.socket), self.read)
    }
}

/// The shard to hand this client to, if it is not this one: the owner of the thing named
/// like the client, when affinity is on, that thing has a shadow, and the owner is not too
/// far above the least loaded shard (then it is counted for it already).
///
/// Only things with shadows: a client that never uses one gains nothing on the owner's
/// shard, and placing every thing-named client by its name put 4 publishers on one shard
/// and their 4 subscribers on the other (bench/results, session 5).
pub fn owner_for(shard: &Shard, client_id: &str) -> Option<ShardId> {
    if !shard.config.server.thing_affinity || shard.shard_count < 2 {
        return None;
    }
    if iotcore_core::shadow::ThingName::check(client_id).is_err()
        || !shard.placement.is_shadowed(client_id)
    {
        return None;
    }
    let owner = crate::shadow::owner_of_name(client_id, shard.shard_count);
    (owner != shard.id && shard.placement.claim_for_owner(shard.id, owner)).then_some(owner)
}

/// Sends the connection to `owner`, which `owner_for` counted it for. `read` holds every
/// byte read from the socket so far, the CONNECT first. On failure the connection is
/// closed (the client sees it as refused and retries).
pub fn hand_over(shard: &Rc<Shard>, owner: ShardId, reader: Half, writer: Half, read: BytesMut) {
    drop(writer);
    let Ok(stream) = reader.into_stream() else {
        shard.placement.leave(owner);
        return;
    };
    // A duplicate, because glommio's stream has no way to give its descriptor up; dropping
    // the stream closes the original (and cancels its armed poll) without a shutdown.
    let socket = match duplicate(&stream) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, fd = stream.as_raw_fd(), "cannot hand a connection over");
            shard.placement.leave(owner);
            return;
        }
    };
    drop(stream);
    bump(&shard.metrics.connections_to_thing_owner_total, 1);
    shard.post_to(
        owner,
        ShardMsg::Handover(Box::new(Handover { socket, read })),
    );
}

/// A new descriptor for the stream's socket.
pub(crate) fn duplicate(stream: &TcpStream) -> std::io::Result<OwnedFd> {
    // SAFETY: the descriptor is open for as long as `stream` lives, which outlasts this
    // borrow; `try_clone_to_owned` makes an independent descriptor (F_DUPFD_CLOEXEC).
    #[allow(unsafe_code)]
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    borrowed.try_clone_to_owned()
}

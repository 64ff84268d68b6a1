//! Requests from one shard to another that need an answer (an interest or retained change
//! acknowledged, a session handed over) get it back as a mesh message, and the waiting task
//! is woken by its own shard.
//!
//! Why not a `futures` oneshot: its sender would wake a glommio task from a foreign thread.
//! glommio's own channels never do that (they signal the peer's reactor instead), and foreign
//! task wake-ups are the path in glommio we could not trust under load. With replies on the
//! mesh, every waker is woken on its own thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::ids::ShardId;
use crate::session::Session;

/// Where to send the answer to a request.
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    pub shard: ShardId,
    pub id: ReplyId,
}

/// A request this shard is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyId(pub u64);

pub enum Reply {
    Ack,
    Session(Option<Box<Session>>),
    /// A REST answer: status and JSON body.
    Http {
        status: u16,
        body: Vec<u8>,
    },
}

#[derive(Default)]
struct Slot {
    reply: Option<Reply>,
    waker: Option<Waker>,
}

#[derive(Default)]
pub struct Replies {
    next: Cell<u64>,
    slots: RefCell<HashMap<ReplyId, Slot>>,
}

impl Replies {
    pub fn register(&self) -> ReplyId {
        let id = ReplyId(self.next.get() + 1);
        self.next.set(id.0);
        self.slots.borrow_mut().insert(id, Slot::default());
        id
    }

    /// A reply arrived: keep it for the waiter. A reply nobody waits for any more (the
    /// waiter timed out) is dropped here.
    pub fn complete(&self, id: ReplyId, reply: Reply) {
        let mut slots = self.slots.borrow_mut();
        if let Some(slot) = slots.get_mut(&id) {
            slot.reply = Some(reply);
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        } else if let Reply::Session(Some(s)) = reply {
            tracing::warn!(client_id = %s.client_id, "session handed over after its taker gave up; dropped");
        }
    }

    pub fn wait(&self, id: ReplyId) -> Wait<'_> {
        Wait { replies: self, id }
    }
}

/// Completes with the reply; dropping it unanswered forgets the request.
pub struct Wait<'a> {
    replies: &'a Replies,
    id: ReplyId,
}

impl Future for Wait<'_> {
    type Output = Reply;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let mut slots = self.replies.slots.borrow_mut();
        match slots.get_mut(&self.id) {
            Some(slot) => match slot.reply.take() {
                Some(r) => {
                    slots.remove(&self.id);
                    Poll::Ready(r)
                }
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            },
            // Registered ids stay until answered or dropped; treat a missing one as answered.
            None => Poll::Ready(Reply::Ack),
        }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        self.replies.slots.borrow_mut().remove(&self.id);
    }
}

//! A single-waiter wake-up flag for tasks of one shard: cheaper than a channel, and a
//! notification sent while nobody waits is kept until the next wait.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Notify {
    flag: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.flag.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// For when no task waits (a parked connection, `connection/park.rs`): `waker` is woken
    /// by the next notification, or at once if one is pending. The notification stays
    /// pending for the next wait either way.
    pub fn call_on_notify(&self, waker: Waker) {
        if self.flag.get() {
            waker.wake();
        } else {
            self.waker.set(Some(waker));
        }
    }

    /// Completes once `notify` has been called since the last completed wait.
    pub fn notified(&self) -> Notified<'_> {
        Notified(self)
    }
}

pub struct Notified<'a>(&'a Notify);

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.flag.replace(false) {
            Poll::Ready(())
        } else {
            self.0.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

/// A wait given up takes its waker back: the `Notify` may outlive the task by far (a
/// handshake deadline stays queued for the whole connect timeout), and a waker keeps its
/// task's memory alive. (Connections handed to their thing's shard kept ~590 bytes each
/// that way until the timeout.) One waiter at a time, so the waker is this wait's.
impl Drop for Notified<'_> {
    fn drop(&mut self) {
        drop(self.0.waker.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag;
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn a_dropped_wait_keeps_no_waker() {
        let notify = Notify::default();
        let flag = Arc::new(Flag);
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        {
            let mut wait = std::pin::pin!(notify.notified());
            assert!(wait.as_mut().poll(&mut cx).is_pending());
            assert_eq!(Arc::strong_count(&flag), 3, "the Notify holds a clone");
        }
        assert_eq!(Arc::strong_count(&flag), 2, "given back on drop");
        // A notification sent meanwhile is still kept for the next wait.
        notify.notify();
        let mut wait = std::pin::pin!(notify.notified());
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }
}

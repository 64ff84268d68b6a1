//! Splitting a glommio `TcpStream` into a read half and a write half for two tasks of the
//! same shard. Both halves borrow the stream only inside a synchronous `poll_*` call, so the
//! `RefCell` is never held across an await and never contended.
//!
//! Reads go through the shard's one scratch buffer: an idle connection waits for readiness
//! holding no read buffer at all (glommio tries a non-blocking `recv` first and only then
//! arms a readiness poll), and what arrives is copied into the connection's own buffer sized
//! to fit. One copy per read, not per message, buys kilobytes per idle connection.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

pub struct Half(Rc<RefCell<TcpStream>>);

pub fn split(stream: TcpStream) -> (Half, Half) {
    let reader = Half::new(stream);
    let writer = reader.another();
    (reader, writer)
}

impl AsyncRead for Half {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut stream = self.0.borrow_mut();
        Pin::new(&mut *stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Half {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut stream = self.0.borrow_mut();
        Pin::new(&mut *stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut stream = self.0.borrow_mut();
        Pin::new(&mut *stream).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut stream = self.0.borrow_mut();
        Pin::new(&mut *stream).poll_close(cx)
    }
}

impl Half {
    /// The stream's first half; `another` makes the second.
    pub fn new(stream: TcpStream) -> Half {
        Half(Rc::new(RefCell::new(stream)))
    }

    /// Another half of the same stream (for a writer started again).
    pub fn another(&self) -> Half {
        Half(self.0.clone())
    }

    /// The stream, once its other half is gone; the half back while it is not.
    pub fn into_stream(self) -> Result<TcpStream, Half> {
        Rc::try_unwrap(self.0)
            .map(RefCell::into_inner)
            .map_err(Half)
    }

    /// One read: appends what arrives to `buf`; `Ok(0)` is the end of the stream.
    pub async fn read_into(
        &mut self,
        scratch: &RefCell<Vec<u8>>,
        buf: &mut BytesMut,
    ) -> io::Result<usize> {
        std::future::poll_fn(|cx| {
            // Borrowed only inside this synchronous poll, never across an await.
            let mut scratch = scratch.borrow_mut();
            let mut stream = self.0.borrow_mut();
            match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
                Poll::Ready(Ok(n)) => {
                    buf.extend_from_slice(&scratch[..n]);
                    Poll::Ready(Ok(n))
                }
                other => other,
            }
        })
        .await
    }
}

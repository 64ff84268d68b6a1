//! The device shadow REST API over plain HTTP/1.1, served by every shard on the same port
//! (SO_REUSEPORT, like MQTT). A request is parsed here, handed to the owning shard as a
//! shadow request, and answered when the owner replies (after its log is durable).
//!
//! - `GET|POST|DELETE /things/{thing}/shadow[?name={shadow}]`
//! - `GET /api/things/shadow/ListNamedShadowsForThing/{thing}[?nextToken=..&pageSize=..]`
//!
//! Errors are JSON bodies `{"code": N, "message": "..."}` with the matching status.

mod request;
mod routes;

use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::shard::Shard;
use request::{ParseError, Request};

/// A client that sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request head (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Accepts HTTP connections on this shard until the shard stops.
pub async fn serve(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(connection(shard.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
        if shard.shutting_down.get() {
            return;
        }
    }
}

/// One keep-alive connection: requests are answered one after another.
async fn connection(shard: Rc<Shard>, mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::new();
    let max_body = shard.config.http.max_body_bytes;
    loop {
        let parsed = futures_lite::future::or(
            async { Some(request::read(&mut stream, &mut buf, MAX_HEAD_BYTES, max_body).await) },
            async {
                glommio::timer::sleep(IDLE_TIMEOUT).await;
                None
            },
        )
        .await;
        let (status, body, keep_alive) = match parsed {
            None | Some(Err(ParseError::Closed)) => return,
            Some(Err(e)) => {
                let (status, message) = e.status();
                (status, routes::error_body(status, &message), false)
            }
            Some(Ok(Request::Complete(req))) => {
                let keep_alive = req.keep_alive;
                let (status, body) = routes::handle(&shard, req).await;
                (status, body, keep_alive)
            }
        };
        if write_response(&mut stream, status, &body, keep_alive)
            .await
            .is_err()
            || !keep_alive
        {
            let _ = stream.close().await;
            return;
        }
    }
}

async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    body: &[u8],
    keep_alive: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {}\r\n\r\n",
        reason_phrase(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    stream.write_all(&out).await?;
    stream.flush().await
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Reads more bytes into `buf`; `Ok(0)` at the end of the stream.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

//! The admin HTTP listener: `GET /metrics` in Prometheus text format. It runs on its own
//! thread, off the shards, and reads only the snapshots the shards publish.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{render, Snapshot};

/// Starts the admin thread; a failure to bind is logged and leaves the broker running,
/// since metrics are not worth refusing MQTT service for.
pub fn start(bind: SocketAddr, shards: Vec<Arc<Snapshot>>) {
    let listener = match TcpListener::bind(bind) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%bind, error = %e, "admin listener (admin.bind) not started");
            return;
        }
    };
    tracing::info!(%bind, "admin listener: GET /metrics");
    let spawned = std::thread::Builder::new()
        .name("iotcore-admin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = serve(stream, &shards) {
                    tracing::debug!(error = %e, "admin request failed");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the admin thread");
    }
}

fn serve(stream: TcpStream, shards: &[Arc<Snapshot>]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Headers are read and ignored; the request has no body we care about.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", render(shards)),
        ("GET", _) => (
            "404 Not Found",
            "application/json",
            format!(
                "{{\"message\":\"no such resource: {}\"}}",
                path.escape_default()
            ),
        ),
        _ => (
            "405 Method Not Allowed",
            "application/json",
            "{\"message\":\"only GET is supported\"}".to_string(),
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

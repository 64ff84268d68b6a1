//! Reading one HTTP/1.1 request: the head parsed by `httparse`, the body by
//! Content-Length. Chunked bodies are refused (411): the shadow API's clients send lengths.

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

pub struct HttpRequest {
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

impl HttpRequest {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub enum Request {
    Complete(HttpRequest),
}

#[derive(Debug)]
pub enum ParseError {
    /// The client closed the connection between requests.
    Closed,
    Malformed(String),
    HeadTooLarge,
    BodyTooLarge {
        max: usize,
    },
    LengthRequired,
}

impl ParseError {
    /// The status and message to answer with.
    pub fn status(&self) -> (u16, String) {
        match self {
            ParseError::Closed => (400, "connection closed".into()),
            ParseError::Malformed(m) => (400, format!("malformed HTTP request: {m}")),
            ParseError::HeadTooLarge => (431, "request head too large".into()),
            ParseError::BodyTooLarge { max } => (
                413,
                format!("request body over {max} bytes (http.max_body_bytes)"),
            ),
            ParseError::LengthRequired => (
                411,
                "a Content-Length is required (chunked bodies are not accepted)".into(),
            ),
        }
    }
}

const MAX_HEADERS: usize = 64;

/// Reads the next request from `stream`, keeping any bytes after it in `buf`.
pub async fn read(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max_head: usize,
    max_body: usize,
) -> Result<Request, ParseError> {
    let mut continue_sent = false;
    loop {
        if let Some(head) = parse_head(buf, max_body)? {
            let needed = head.head_len + head.content_length;
            if buf.len() >= needed {
                let body = buf[head.head_len..needed].to_vec();
                buf.drain(..needed);
                return Ok(Request::Complete(HttpRequest {
                    method: head.method,
                    path: head.path,
                    query: head.query,
                    body,
                    keep_alive: head.keep_alive,
                }));
            }
            if head.expect_continue && !continue_sent {
                continue_sent = true;
                stream
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .map_err(|e| ParseError::Malformed(e.to_string()))?;
            }
        } else if buf.len() > max_head {
            return Err(ParseError::HeadTooLarge);
        }
        match super::read_more(stream, buf).await {
            Ok(0) if buf.is_empty() => return Err(ParseError::Closed),
            Ok(0) => {
                return Err(ParseError::Malformed(
                    "connection closed mid-request".into(),
                ))
            }
            Ok(_) => {}
            Err(_) => return Err(ParseError::Closed),
        }
    }
}

struct Head {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    head_len: usize,
    content_length: usize,
    keep_alive: bool,
    expect_continue: bool,
}

fn parse_head(buf: &[u8], max_body: usize) -> Result<Option<Head>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ParseError::Malformed(e.to_string())),
    };
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or("/");
    let http10 = req.version == Some(0);
    let mut content_length = 0usize;
    let mut keep_alive = !http10;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| ParseError::Malformed(format!("header {} is not text", h.name)))?
            .trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = value
                .parse()
                .map_err(|_| ParseError::Malformed(format!("bad Content-Length `{value}`")))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ParseError::LengthRequired);
        } else if h.name.eq_ignore_ascii_case("connection") {
            keep_alive = if value.eq_ignore_ascii_case("close") {
                false
            } else {
                value.eq_ignore_ascii_case("keep-alive") || keep_alive
            };
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
    }
    if content_length > max_body {
        return Err(ParseError::BodyTooLarge { max: max_body });
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    Ok(Some(Head {
        method,
        path: percent_decode(path)?,
        query,
        head_len,
        content_length,
        keep_alive,
        expect_continue,
    }))
}

/// Decodes `%XX` escapes (and `+` as a space, as forms do).
fn percent_decode(s: &str) -> Result<String, ParseError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ParseError::Malformed(format!("bad escape in `{s}`")))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ParseError::Malformed(format!("`{s}` is not UTF-8")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn head_with_query_and_body_length() {
        let raw = b"POST /things/lamp%3A1/shadow?name=cfg HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
        let head = parse_head(raw, 100).unwrap().unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/things/lamp:1/shadow");
        assert_eq!(head.query, vec![("name".to_string(), "cfg".to_string())]);
        assert_eq!(head.content_length, 2);
        assert!(head.keep_alive);
        assert_eq!(&raw[head.head_len..], b"{}");
    }

    #[test]
    fn partial_chunked_and_oversized() {
        assert!(parse_head(b"GET /x HTTP/1.1\r\nHo", 10).unwrap().is_none());
        let chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            parse_head(chunked, 10),
            Err(ParseError::LengthRequired)
        ));
        let big = b"POST /x HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
        assert!(matches!(
            parse_head(big, 10),
            Err(ParseError::BodyTooLarge { max: 10 })
        ));
        assert!(matches!(
            parse_head(b"\x01\x02 nonsense\r\n\r\n", 10),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            percent_decode("%zz"),
            Err(ParseError::Malformed(_))
        ));
        let close = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0)
            .unwrap()
            .unwrap();
        assert!(!close.keep_alive);
        let old = parse_head(b"GET / HTTP/1.0\r\n\r\n", 0).unwrap().unwrap();
        assert!(!old.keep_alive);
    }
}

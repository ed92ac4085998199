//! A minimal HTTP/1.1 client: one keep-alive connection, POST only. Hand-written because a
//! publisher needs nothing more, and a full client would add more than it measures.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A publish not answered by then is an error; without a bound one hung request would
/// stall its client, and the step, forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(addr: &str) -> Self {
        Client {
            addr: addr.to_string(),
            conn: None,
        }
    }

    /// Replaces any kept connection with a fresh one now, so that the next request neither
    /// pays for connecting nor finds its connection closed by the server meanwhile.
    pub async fn reconnect(&mut self) -> io::Result<()> {
        self.conn = None;
        self.ensure_connected().await
    }

    async fn ensure_connected(&mut self) -> io::Result<()> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.addr).await?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
        }
        Ok(())
    }

    /// POSTs `body` (JSON) to `path` and returns the status; the response body is read and
    /// dropped so the connection can be reused.
    pub async fn post(&mut self, path: &str, bearer: &str, body: &str) -> io::Result<u16> {
        let request = request(&self.addr, path, bearer, body);
        let reused = self.conn.is_some();
        match self.exchange_within(&request).await {
            // A kept-alive connection the server had already closed fails before any
            // response byte; the request was not processed, so one retry is safe.
            Err(e) if reused && is_stale(&e) => self.exchange_within(&request).await,
            other => other,
        }
    }

    async fn exchange_within(&mut self, request: &[u8]) -> io::Result<u16> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => {
                // Half a response may be in flight: the connection cannot be reused.
                self.conn = None;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no response within 10 s",
                ))
            }
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<u16> {
        self.ensure_connected().await?;
        let conn = self.conn.as_mut().expect("connected above");
        let result = async {
            conn.get_mut().write_all(request).await?;
            read_response(conn).await
        }
        .await;
        match result {
            Ok(response) => {
                if response.close {
                    self.conn = None;
                }
                Ok(response.status)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

fn request(host: &str, path: &str, bearer: &str, body: &str) -> Vec<u8> {
    let auth = if bearer.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {bearer}\r\n")
    };
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server will close the connection (or the body ran to EOF).
    pub close: bool,
}

/// Reads one response: status line, headers, and a body framed by Content-Length,
/// chunked encoding, or the end of the connection.
/// Only an EOF before the first byte is `UnexpectedEof` (see [`Client::post`]'s retry).
pub async fn read_response<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Response> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;

    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(bad("truncated response"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| bad("bad Content-Length"))?,
                )
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }

    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).await?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            // Chunk data plus its CRLF; the last (empty) chunk is followed by a bare CRLF
            // as long as the server sends no trailers, which ours do not.
            discard(r, size + 2).await?;
            if size == 0 {
                break;
            }
        }
    } else if let Some(length) = length {
        discard(r, length).await?;
    } else if status >= 200 && status != 204 && status != 304 {
        // No framing: the body runs to the end of the connection.
        tokio::io::copy(r, &mut tokio::io::sink()).await?;
        close = true;
    }
    Ok(Response { status, close })
}

async fn discard<R: AsyncBufRead + Unpin>(r: &mut R, n: u64) -> io::Result<()> {
    let copied = tokio::io::copy(&mut r.take(n), &mut tokio::io::sink()).await?;
    if copied < n {
        return Err(bad("truncated response"));
    }
    Ok(())
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse_all(mut raw: &[u8]) -> (Vec<Response>, usize) {
        let mut out = Vec::new();
        while !raw.is_empty() {
            out.push(read_response(&mut raw).await.unwrap());
        }
        (out, raw.len())
    }

    #[tokio::test]
    async fn content_length_and_chunked_bodies_on_one_connection() {
        let raw = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"seq\":17,\"\"}\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n\
HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\nConnection: close\r\n\r\n{}";
        let (responses, rest) = parse_all(raw).await;
        assert_eq!(rest, 0);
        assert_eq!(
            responses,
            vec![
                Response {
                    status: 202,
                    close: false
                },
                Response {
                    status: 200,
                    close: false
                },
                Response {
                    status: 401,
                    close: true
                },
            ]
        );
    }

    #[tokio::test]
    async fn unframed_body_runs_to_eof_and_truncation_is_an_error() {
        let mut raw: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nok";
        assert_eq!(
            read_response(&mut raw).await.unwrap(),
            Response {
                status: 200,
                close: true
            }
        );
        let mut short: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert_eq!(
            read_response(&mut short).await.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let mut empty: &[u8] = b"";
        assert_eq!(
            read_response(&mut empty).await.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn request_bytes() {
        let r = String::from_utf8(request("127.0.0.1:1", "/v1/publish", "key", "{}")).unwrap();
        assert_eq!(
            r,
            "POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAuthorization: Bearer key\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        assert!(!String::from_utf8(request("h", "/publish", "", "{}"))
            .unwrap()
            .contains("Authorization"));
    }
}

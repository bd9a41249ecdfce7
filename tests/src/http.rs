//! A minimal HTTP/1.1 client for the tests and benchmarks of HTTP containers: [`get`] makes one
//! request per connection (`Connection: close`), [`Conn`] keeps one connection alive for many;
//! chunked bodies are decoded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, decoded from chunks when it came chunked.
    pub body: String,
}

/// `GET path` on `addr`, waiting at most `timeout` for the whole answer.
///
/// # Errors
/// Connection and read errors, a timeout, or an answer that is no HTTP.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    parse(&raw)
}

/// One kept-alive connection: requests one after another, each answer read to its end.
pub struct Conn {
    host: String,
    stream: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to `addr`; every read waits at most `timeout`.
    ///
    /// # Errors
    /// When the connection can't be made.
    pub fn open(addr: SocketAddr, timeout: Duration) -> Result<Self, String> {
        let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Self {
            host: addr.to_string(),
            stream: BufReader::new(s),
        })
    }

    /// `GET path`, the connection kept open for the next one.
    ///
    /// # Errors
    /// Read and write errors, a timeout, a closed connection or an answer that is no HTTP.
    pub fn get(&mut self, path: &str) -> Result<Response, String> {
        write!(
            self.stream.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.host
        )
        .map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::new();
        let (mut length, mut chunked) = (None, false);
        loop {
            let n = self
                .stream
                .read_until(b'\n', &mut raw)
                .map_err(|e| format!("read: {e}"))?;
            let line = String::from_utf8_lossy(&raw[raw.len() - n..]).to_ascii_lowercase();
            if n == 0 {
                return Err("the connection closed in the head".into());
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
            chunked |= line
                .replace(' ', "")
                .starts_with("transfer-encoding:chunked");
            if line == "\r\n" {
                break;
            }
        }
        if chunked {
            loop {
                let start = raw.len();
                self.stream
                    .read_until(b'\n', &mut raw)
                    .map_err(|e| format!("read: {e}"))?;
                let size = String::from_utf8_lossy(&raw[start..]).into_owned();
                let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|e| format!("chunk size {size:?}: {e}"))?;
                // The chunk and its CRLF (after the last chunk: the empty trailer's CRLF).
                let mut chunk = vec![0; n + 2];
                self.stream
                    .read_exact(&mut chunk)
                    .map_err(|e| format!("read: {e}"))?;
                raw.extend_from_slice(&chunk);
                if n == 0 {
                    break;
                }
            }
        } else {
            let mut body = vec![0; length.unwrap_or(0)];
            self.stream
                .read_exact(&mut body)
                .map_err(|e| format!("read: {e}"))?;
            raw.extend_from_slice(&body);
        }
        parse(&raw)
    }
}

/// Parses a whole HTTP/1.1 response.
///
/// # Errors
/// When `raw` is not one.
pub fn parse(raw: &[u8]) -> Result<Response, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of the head in {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let chunked = lines.any(|l| {
        l.to_ascii_lowercase()
            .replace(' ', "")
            .starts_with("transfer-encoding:chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| format!("bad chunk in {rest:?}"))?;
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size:?}: {e}"))?;
        if n == 0 {
            return Ok(out);
        }
        let chunk = after
            .get(..n)
            .ok_or_else(|| format!("short chunk in {after:?}"))?;
        out.push_str(chunk);
        rest = after.get(n + 2..).unwrap_or("");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        let r = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hi"));
        let r = parse(
            b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (500, "abcde"));
        assert!(parse(b"garbage").is_err());
    }

    #[test]
    fn a_kept_alive_connection_reads_each_answer_to_its_end() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s);
            let answers: [&[u8]; 2] = [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
            ];
            for a in answers {
                let mut line = String::new();
                while line != "\r\n" {
                    line.clear();
                    r.read_line(&mut line).unwrap();
                }
                r.get_mut().write_all(a).unwrap();
            }
        });
        let mut c = Conn::open(addr, Duration::from_secs(10)).unwrap();
        let a = c.get("/").unwrap();
        assert_eq!((a.status, a.body.as_str()), (200, "abc"));
        let b = c.get("/x").unwrap();
        assert_eq!((b.status, b.body.as_str()), (404, "nope"));
        server.join().unwrap();
        assert!(c.get("/").is_err(), "the server closed the connection");
    }
}

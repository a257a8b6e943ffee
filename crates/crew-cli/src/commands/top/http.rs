//! A plain-HTTP GET over a `TcpStream`: all `crew top` needs from the admin
//! server, without pulling an HTTP client and its TLS stack into the binary.

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A `/metrics` text larger than this is not a crew's.
const MAX_RESPONSE: usize = 64 << 20;

/// Where to scrape: `http://host:port/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    host: String,
    port: u16,
    path: String,
}

impl Target {
    /// Parses `http://host[:port][/path]`, or the same without the scheme;
    /// the port defaults to 80 and an empty path to `/metrics`. IPv6 hosts go
    /// in brackets (`http://[::1]:9598`).
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => bail!(
                "`{url}`: only http:// is supported (the admin server speaks plain HTTP), not {scheme}://"
            ),
            None => url,
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let path = if path.is_empty() || path == "/" {
            "/metrics".to_owned()
        } else {
            path.to_owned()
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .with_context(|| format!("`{url}`: unclosed `[` in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            bail!("`{url}`: no host");
        }
        let port = match port {
            Some(port) => port
                .parse()
                .with_context(|| format!("`{url}`: `{port}` is not a port"))?,
            None => 80,
        };
        Ok(Target {
            host: host.to_owned(),
            port,
            path,
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host_header(), self.path)
    }
}

/// What `crew top` asks for: the OpenMetrics text the admin server serves,
/// or the Prometheus text format; `prometheus-parse` reads both.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

/// GETs `target` and returns the body of a 200 response; fails on any other
/// status, and when the whole exchange (connecting included) takes longer
/// than `timeout`.
pub fn get(target: &Target, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    let within = humantime::format_duration(timeout);
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.host))?;
    let mut last_error = None;
    let mut stream = None;
    // One deadline for all the addresses: a host resolving to several
    // unreachable ones still fails within `timeout`.
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) => last_error = Some(error),
        }
    }
    let mut stream = match (stream, last_error) {
        (Some(stream), _) => stream,
        (None, Some(error)) if timed_out(&error) => {
            bail!("cannot connect within {within}")
        }
        (None, Some(error)) => return Err(error).context("cannot connect"),
        (None, None) => bail!("{} resolves to no address", target.host),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: {ACCEPT}\r\nUser-Agent: crew-top/{}\r\nConnection: close\r\n\r\n",
        target.path,
        target.host_header(),
        env!("CARGO_PKG_VERSION"),
    );
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("cannot connect within {within}");
    }
    stream.set_write_timeout(Some(left))?;
    match stream.write_all(request.as_bytes()) {
        Err(error) if timed_out(&error) => bail!("cannot send the request within {within}"),
        result => result.context("sending the request")?,
    }
    let response = read_response(&mut stream, deadline, &within)?;
    parse_response(&response)
}

/// Whether an I/O error is a socket timeout: `WouldBlock` on Unix
/// (EAGAIN), `TimedOut` elsewhere.
fn timed_out(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Reads until the server closes, or the body's `Content-Length` is in.
/// `within` is the timeout as the error message says it.
fn read_response(
    stream: &mut TcpStream,
    deadline: Instant,
    within: &impl fmt::Display,
) -> anyhow::Result<Vec<u8>> {
    let mut response = Incoming::default();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("{}", response.too_slow(within));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) if timed_out(&error) => bail!("{}", response.too_slow(within)),
            Err(error) => return Err(error).context("reading the response"),
        };
        if n == 0 {
            return Ok(response.bytes);
        }
        if response.push(&chunk[..n])? {
            return Ok(response.bytes);
        }
    }
}

/// A response as it comes in, with what is known of it so far.
#[derive(Default)]
struct Incoming {
    bytes: Vec<u8>,
    /// Where the search for the end of the head goes on: the bytes before
    /// it hold no `\r\n\r\n`, so each byte is looked at about once instead of
    /// once a read.
    search_from: usize,
    /// Once the head is in: where the body starts, and its length if the
    /// head gives one.
    head: Option<(usize, Option<usize>)>,
    /// Bytes looked at while searching for the end of the head, for the
    /// test that the search is linear.
    searched: usize,
}

impl Incoming {
    /// Appends what was read; true once the response is complete by its
    /// `Content-Length`.
    fn push(&mut self, data: &[u8]) -> anyhow::Result<bool> {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > MAX_RESPONSE {
            bail!("the response is over {} MiB", MAX_RESPONSE >> 20);
        }
        if self.head.is_none() {
            let window = &self.bytes[self.search_from..];
            self.searched += window.len();
            match window.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(at) => {
                    // Parsed once: the first `\r\n\r\n` is the one just found.
                    let end = self.search_from + at;
                    let head = head(&self.bytes[..end + 4])?
                        .context("the end of the head, not found again")?;
                    self.head = Some((head.body_at, head.content_length));
                }
                // The last 3 bytes may be the start of the `\r\n\r\n`.
                None => self.search_from = self.bytes.len().saturating_sub(3),
            }
        }
        Ok(match self.head {
            // `head` refused lengths over MAX_RESPONSE: the sum is small.
            Some((body_at, Some(length))) => self.bytes.len() >= body_at + length,
            _ => false,
        })
    }

    /// Why the response is late, for the error.
    fn too_slow(&self, within: &impl fmt::Display) -> String {
        if self.bytes.is_empty() {
            format!("no response within {within}")
        } else {
            format!(
                "no complete response within {within} ({} bytes in)",
                self.bytes.len()
            )
        }
    }
}

/// A response's status line and the headers that matter here.
struct Head {
    status: u16,
    reason: String,
    body_at: usize,
    content_length: Option<usize>,
    chunked: bool,
}

/// The head, once all of it is in `response`.
fn head(response: &[u8]) -> anyhow::Result<Option<Head>> {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text =
        std::str::from_utf8(&response[..end]).context("a response head that is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        bail!("not an HTTP response: `{status_line}`");
    };
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1 response: `{status_line}`");
    }
    let status = code
        .parse()
        .with_context(|| format!("not an HTTP response: `{status_line}`"))?;
    let mut head = Head {
        status,
        reason: parts.next().unwrap_or_default().to_owned(),
        body_at: end + 4,
        content_length: None,
        chunked: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length: u64 = value
                .parse()
                .with_context(|| format!("a bad Content-Length: `{value}`"))?;
            match usize::try_from(length) {
                Ok(length) if length <= MAX_RESPONSE => head.content_length = Some(length),
                _ => bail!(
                    "a Content-Length of {length} bytes, over the {} MiB a crew's metrics can be",
                    MAX_RESPONSE >> 20
                ),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Ok(Some(head))
}

/// The body of a complete 200 response.
fn parse_response(response: &[u8]) -> anyhow::Result<String> {
    let Some(head) = head(response)? else {
        if response.is_empty() {
            bail!("the server closed the connection without answering");
        }
        bail!("the server closed the connection in the middle of the response head");
    };
    if head.status != 200 {
        bail!("the server answered {} {}", head.status, head.reason);
    }
    let body = &response[head.body_at..];
    let body = if head.chunked {
        dechunk(body)?
    } else if let Some(length) = head.content_length {
        if body.len() < length {
            bail!(
                "the server closed the connection after {} of {length} body bytes",
                body.len()
            );
        }
        body[..length].to_vec()
    } else {
        body.to_vec()
    };
    String::from_utf8(body).context("the metrics text is not UTF-8")
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunked body cut short")?;
        let size_text = std::str::from_utf8(&body[..line_end]).unwrap_or_default();
        // Chunk extensions (`;name=value`) carry nothing for us.
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("a bad chunk size: `{size_text}`"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        // `size` comes from the server: compared without adding to it, so
        // `ffffffffffffffff` is an error, not an overflow.
        if size > body.len() || body.len() - size < 2 {
            bail!(
                "a chunked body cut short (a chunk of {size} bytes, {} left)",
                body.len()
            );
        }
        let (data, rest) = body.split_at(size);
        if !rest.starts_with(b"\r\n") {
            bail!("a malformed chunked body: no CRLF after a chunk of {size} bytes");
        }
        out.extend_from_slice(data);
        body = &rest[2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let target = Target::parse("http://127.0.0.1:9598/metrics").unwrap();
        assert_eq!(target.to_string(), "http://127.0.0.1:9598/metrics");
        assert_eq!(
            Target::parse("localhost:9000").unwrap().to_string(),
            "http://localhost:9000/metrics"
        );
        assert_eq!(
            Target::parse("http://host/").unwrap().to_string(),
            "http://host:80/metrics"
        );
        assert_eq!(
            Target::parse("http://[::1]:9598/other")
                .unwrap()
                .to_string(),
            "http://[::1]:9598/other"
        );
        for bad in [
            "https://host:1/metrics",
            "http://:9598",
            "http://host:port",
            "http://[::1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_response_with_a_content_length() {
        let response =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(response).unwrap(), "hello");
    }

    #[test]
    fn a_chunked_response() {
        let response =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ncrew\r\n6;x=y\r\n_top\n!\r\n0\r\n\r\n";
        assert_eq!(parse_response(response).unwrap(), "crew_top\n!");
    }

    #[test]
    fn a_response_until_close() {
        let response = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(parse_response(response).unwrap(), "all of it");
    }

    #[test]
    fn failures_say_what_happened() {
        let error = parse_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("404 Not Found"), "{error}");
        let error = parse_response(b"").unwrap_err().to_string();
        assert!(error.contains("without answering"), "{error}");
        let error = parse_response(b"SSH-2.0-OpenSSH\r\n\r\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not an HTTP"), "{error}");
        let error = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
            .unwrap_err()
            .to_string();
        assert!(error.contains("5 of 10"), "{error}");
        let error =
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc")
                .unwrap_err()
                .to_string();
        assert!(error.contains("cut short"), "{error}");
    }

    #[test]
    fn a_huge_chunk_size_is_an_error_not_an_overflow() {
        let response =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n0\r\n\r\n";
        let error = parse_response(response).unwrap_err().to_string();
        assert!(error.contains("cut short"), "{error}");
        let error = dechunk(b"fffffffffffffffe\r\n").unwrap_err().to_string();
        assert!(error.contains("cut short"), "{error}");
        // The data must end with CRLF where the size says.
        let error = dechunk(b"2\r\nabc\r\n0\r\n\r\n").unwrap_err().to_string();
        assert!(error.contains("no CRLF"), "{error}");
    }

    #[test]
    fn a_content_length_over_the_limit_is_refused() {
        for length in [u64::MAX.to_string(), (MAX_RESPONSE + 1).to_string()] {
            let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\nabc");
            let error = parse_response(response.as_bytes()).unwrap_err().to_string();
            assert!(error.contains("Content-Length of"), "{error}");
            // While reading too, before waiting for a body that big.
            let mut incoming = Incoming::default();
            let error = incoming.push(response.as_bytes()).unwrap_err().to_string();
            assert!(error.contains("Content-Length of"), "{error}");
        }
    }

    #[test]
    fn the_head_is_found_across_reads_looking_at_each_byte_about_once() {
        let response = format!(
            "HTTP/1.1 200 OK\r\nX-Padding: {}\r\ncontent-length: 5\r\n\r\nhello",
            "x".repeat(10_000)
        );
        let bytes = response.as_bytes();
        let mut incoming = Incoming::default();
        let mut pushes = 0;
        let mut complete = false;
        for byte in bytes.chunks(1) {
            assert!(!complete, "complete before the last byte");
            complete = incoming.push(byte).unwrap();
            pushes += 1;
        }
        assert!(complete);
        assert_eq!(incoming.head, Some((bytes.len() - 5, Some(5))));
        // Each read adds its bytes and the 3 kept back from the one before;
        // searching all that was in at each read would be ~50 million.
        assert!(
            incoming.searched <= bytes.len() + 3 * pushes,
            "{} bytes searched for a {}-byte head",
            incoming.searched,
            bytes.len()
        );
        assert_eq!(parse_response(&incoming.bytes).unwrap(), "hello");
    }

    #[test]
    fn an_incomplete_response_says_how_far_it_got() {
        let mut incoming = Incoming::default();
        assert_eq!(incoming.too_slow(&"5s"), "no response within 5s");
        assert!(!incoming
            .push(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc")
            .unwrap());
        assert_eq!(
            incoming.too_slow(&"5s"),
            "no complete response within 5s (41 bytes in)"
        );
    }
}

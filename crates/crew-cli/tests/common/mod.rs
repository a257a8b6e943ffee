//! What more than one test file of crew-cli reads the same way.

// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One HTTP/1.1 GET on a fresh connection, reading until the server closes
/// it (at most `timeout` per read): the status and the body.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("the admin server accepts");
    stream.set_read_timeout(Some(timeout)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The samples of a `/metrics` body with the parser Prometheus users know:
/// `name{labels}` → value, label pairs sorted, the `pipeline` label left
/// out. Histograms are left out too (their `_count` series stand for them).
pub fn samples_of(body: &str) -> BTreeMap<String, f64> {
    let lines = body.lines().map(|line| Ok(line.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let mut samples = BTreeMap::new();
    for sample in parsed.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .filter(|(name, _)| name.as_str() != "pipeline")
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        labels.sort();
        samples.insert(format!("{}{{{}}}", sample.metric, labels.join(",")), value);
    }
    samples
}

/// The metric table rows of a docs/metrics.md text, name to type (rows
/// whose first cell is a `` `crew_…` `` name): what deploy/check.sh's awk
/// reads too.
pub fn documented_in(docs: &str) -> BTreeMap<String, String> {
    docs.lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix('|')?.split('|');
            let name = cells.next()?.trim().strip_prefix('`')?.strip_suffix('`')?;
            let kind = cells.next()?.trim();
            let valid = name.starts_with("crew_")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            valid.then(|| (name.to_owned(), kind.to_owned()))
        })
        .collect()
}

/// Asks `probe` until it answers `Ok`, failing with its last `Err` (what it
/// saw) after `guard`. A condition poll, not a timed wait: it ends on the
/// answer, whatever the machine's load; the pause between looks only spares
/// the CPU.
#[track_caller]
pub fn poll_until<T>(guard: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + guard;
    loop {
        match probe() {
            Ok(answer) => return answer,
            Err(seen) if Instant::now() >= deadline => panic!("HANG after {guard:?}: {seen}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The `crew` binary under test, without the environment variables the
/// examples read (a developer's shell must not change a test's pipeline).
pub fn crew() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_crew"));
    command
        .env_remove("CREW_EVENTS")
        .env_remove("CREW_HTTP_URI")
        .env_remove("PIXELS_SALT")
        .env_remove("RUST_LOG");
    command
}

/// A running `crew run`, its stderr read on a thread: the admin address is
/// picked from its log, and the rest is kept for failure messages. Killed
/// if dropped before [`finish`](Self::finish), so a failed test leaves no
/// crew behind.
pub struct Running {
    pub child: std::process::Child,
    admin: Option<SocketAddr>,
    stderr: std::sync::mpsc::Receiver<String>,
    guard: Duration,
}

impl Running {
    /// Starts `crew --log-format json run FILE --admin 127.0.0.1:0` in
    /// `dir` and waits (up to `guard`) for the admin address in its log.
    pub fn start(
        dir: &std::path::Path,
        file: &std::path::Path,
        env: &[(&str, &str)],
        stdin: std::process::Stdio,
        guard: Duration,
    ) -> Running {
        use std::process::Stdio;
        let mut command = crew();
        command
            .args(["--log-format", "json", "run"])
            .arg(file)
            .args(["--admin", "127.0.0.1:0"])
            .current_dir(dir)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("crew starts");
        let (admin, stderr) = watch_stderr(child.stderr.take().expect("piped"));
        let admin = admin.recv_timeout(guard).ok();
        Running {
            child,
            admin,
            stderr,
            guard,
        }
    }

    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("crew logged its admin address")
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits");
        // SAFETY: kill(2) with a pid this test spawned and has not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the exit (under the guard); returns the status, stdout and
    /// stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let mut stdout = self.child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        let stdout = match rx.recv_timeout(self.guard) {
            Ok(text) => text,
            Err(_) => {
                let _ = self.child.kill();
                panic!("HANG: crew did not exit within {:?}", self.guard);
            }
        };
        let status = self.child.wait().expect("crew is reaped");
        let stderr: String = self.stderr.try_iter().collect();
        (status, stdout, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Harmless once `finish` has reaped it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads stderr lines on a thread; sends the admin address once it shows.
pub fn watch_stderr(
    stderr: std::process::ChildStderr,
) -> (
    std::sync::mpsc::Receiver<SocketAddr>,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::BufRead;
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                if let Ok(addr) = addr.parse() {
                    let _ = addr_tx.send(addr);
                }
            }
            let _ = lines_tx.send(line + "\n");
        }
    });
    (addr_rx, lines_rx)
}

/// The numbers of `crew run`'s summary: `read`, `delivered`, ..., and the
/// per-reason rows as `dropped/consent`, `dead-lettered/parse`.
pub fn summary(stdout: &str) -> BTreeMap<String, u64> {
    let mut numbers = BTreeMap::new();
    let mut section = String::new();
    for line in stdout.lines() {
        let indented = line.starts_with("    ");
        let mut words = line.split_whitespace();
        let (Some(label), Some(number)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = number.replace(',', "").parse::<u64>() else {
            continue;
        };
        if indented {
            numbers.insert(format!("{section}/{label}"), n);
        } else {
            section = label.to_owned();
            numbers.insert(label.to_owned(), n);
        }
    }
    numbers
}

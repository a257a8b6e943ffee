//! The `stdout` sink: NDJSON to standard output.

use std::io::{self, Write};

use serde::Deserialize;

use crate::sink::{OutBatch, Sink, SinkError};

/// The stdout sink's configuration: nothing to set yet.
///
/// ```toml
/// [sink]
/// type = "stdout"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

/// The `stdout` sink: writes each batch's NDJSON to standard output (or any
/// writer) and flushes it on [`flush`](Sink::flush).
///
/// A closed pipe (`crew run … | head`) is a fatal error, which stops the
/// pipeline.
///
/// ```
/// use crew_pipeline::sinks::StdoutSink;
/// use crew_pipeline::{OutBatch, Origin, Sink};
///
/// let mut sink = StdoutSink::to_writer(Vec::new());
/// let mut batch = OutBatch::default();
/// batch.push(Origin { partition: 0, offset: 1 }, None, |buf| buf.extend_from_slice(b"{}"));
/// sink.write(&batch)?;
/// sink.flush()?;
/// # Ok::<(), crew_pipeline::SinkError>(())
/// ```
pub struct StdoutSink {
    out: Box<dyn Write + Send>,
}

impl std::fmt::Debug for StdoutSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutSink").finish_non_exhaustive()
    }
}

impl StdoutSink {
    /// Writes to the process's standard output.
    pub fn new(_config: StdoutConfig) -> StdoutSink {
        StdoutSink::to_writer(io::stdout())
    }

    /// Writes to `writer` instead (for tests, or a pipe of one's own).
    pub fn to_writer(writer: impl Write + Send + 'static) -> StdoutSink {
        StdoutSink {
            out: Box::new(writer),
        }
    }
}

impl Sink for StdoutSink {
    fn write(&mut self, batch: &OutBatch) -> Result<(), SinkError> {
        self.out.write_all(batch.ndjson()).map_err(stdout_error)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(stdout_error)
    }
}

fn stdout_error(error: io::Error) -> SinkError {
    let mut sink_error = SinkError::from(error);
    sink_error.message = format!("writing to stdout: {}", sink_error.message);
    sink_error
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::event::Origin;

    /// A writer the test can read back after the sink took it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>, Arc<Mutex<u32>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            *self.1.lock().unwrap() += 1;
            Ok(())
        }
    }

    #[test]
    fn writes_ndjson_and_flushes() {
        let shared = Shared::default();
        let mut sink = StdoutSink::to_writer(shared.clone());
        let mut batch = OutBatch::default();
        for i in 0..3u64 {
            batch.push(
                Origin {
                    partition: 0,
                    offset: i,
                },
                None,
                |buf| buf.extend_from_slice(format!("{{\"i\":{i}}}").as_bytes()),
            );
        }
        sink.write(&batch).unwrap();
        sink.flush().unwrap();
        assert_eq!(
            &*shared.0.lock().unwrap(),
            b"{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n"
        );
        assert_eq!(*shared.1.lock().unwrap(), 1);
    }

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_fatal() {
        let mut sink = StdoutSink::to_writer(Closed);
        let mut batch = OutBatch::default();
        batch.push(
            Origin {
                partition: 0,
                offset: 0,
            },
            None,
            |buf| buf.push(b'1'),
        );
        let error = sink.write(&batch).unwrap_err();
        assert!(!error.retriable);
        assert!(error.message.contains("stdout"), "{}", error.message);
    }

    #[test]
    fn config_from_toml() {
        assert_eq!(toml::from_str::<StdoutConfig>("").unwrap(), StdoutConfig {});
        assert!(toml::from_str::<StdoutConfig>("color = true").is_err());
    }
}

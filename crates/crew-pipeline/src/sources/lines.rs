//! Splitting a byte stream into NDJSON lines: read in big chunks, lines cut
//! out of the chunk without copying, and never more than a bounded amount of
//! one line held in memory.

use std::io::{self, Read};

use bytes::{Bytes, BytesMut};

/// Default longest line kept whole: longer ones are cut (see [`LineReader`]).
pub(crate) const DEFAULT_MAX_LINE_BYTES: usize = 8 << 20;

/// One line, without its `\n` or `\r\n`.
#[derive(Debug)]
pub(crate) struct Line {
    /// The line's bytes; for a line longer than the maximum, its first
    /// `max_line_bytes + 1` bytes.
    pub(crate) bytes: Bytes,
    /// Stream position just after the line's newline (or the end of the
    /// stream for a last line without one): where reading resumes after it.
    pub(crate) end: u64,
}

/// Cuts lines out of a reader.
///
/// A line longer than `max_line_bytes` comes out as its first
/// `max_line_bytes + 1` bytes, so whoever parses it can tell it is too long
/// without this reader holding the rest: the tail is read and dropped. Memory
/// stays under about `max_line_bytes + chunk_bytes` whatever the input.
pub(crate) struct LineReader<R> {
    reader: R,
    buf: BytesMut,
    /// Stream position of `buf[0]`.
    start: u64,
    /// `buf[..scanned]` holds no newline: the next search starts there.
    scanned: usize,
    chunk_bytes: usize,
    /// `max_line_bytes + 1`: how much of an oversize line is kept.
    keep: usize,
    /// While skipping the tail of an oversize line: the head it will be
    /// reported as once its newline (or the end) is found.
    oversize_head: Option<Bytes>,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    /// Reads from `reader`, whose next byte is at stream position `start`.
    pub(crate) fn new(reader: R, start: u64, chunk_bytes: usize, max_line_bytes: usize) -> Self {
        LineReader {
            reader,
            buf: BytesMut::new(),
            start,
            scanned: 0,
            chunk_bytes: chunk_bytes.max(1),
            keep: max_line_bytes.saturating_add(1),
            oversize_head: None,
            eof: false,
        }
    }

    /// The next line, reading as needed; `None` at the end of the stream.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.buffered_line() {
                return Ok(Some(line));
            }
            if self.eof {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// The next line if it can be cut without reading (or the stream has
    /// ended); `None` when more input is needed or nothing is left.
    pub(crate) fn buffered_line(&mut self) -> Option<Line> {
        if let Some(at) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            let newline = self.scanned + at;
            let chunk = self.buf.split_to(newline + 1).freeze();
            self.start += chunk.len() as u64;
            self.scanned = 0;
            let end = self.start;
            if let Some(head) = self.oversize_head.take() {
                return Some(Line { bytes: head, end });
            }
            return Some(Line {
                bytes: self.trimmed(chunk, newline),
                end,
            });
        }
        self.scanned = self.buf.len();
        if self.oversize_head.is_some() {
            // The buffer is all tail of an oversize line: drop it.
            self.start += self.buf.len() as u64;
            self.buf.clear();
            self.scanned = 0;
        } else if self.buf.len() > self.keep {
            // Even if the next byte is the newline and the last one a `\r`,
            // the line is longer than the maximum: keep its head, drop the rest.
            let head = self.buf.split_to(self.keep).freeze();
            self.start += (head.len() + self.buf.len()) as u64;
            self.buf.clear();
            self.scanned = 0;
            self.oversize_head = Some(head);
        }
        if !self.eof {
            return None;
        }
        if let Some(head) = self.oversize_head.take() {
            return Some(Line {
                bytes: head,
                end: self.start,
            });
        }
        if self.buf.is_empty() {
            return None;
        }
        // A last line without a newline.
        let chunk = self.buf.split().freeze();
        self.start += chunk.len() as u64;
        self.scanned = 0;
        let len = chunk.len();
        Some(Line {
            bytes: self.trimmed(chunk, len),
            end: self.start,
        })
    }

    /// `chunk[..len]` less a trailing `\r`, cut to `max_line_bytes + 1`.
    fn trimmed(&self, chunk: Bytes, len: usize) -> Bytes {
        let len = if len > 0 && chunk[len - 1] == b'\r' {
            len - 1
        } else {
            len
        };
        chunk.slice(..len.min(self.keep))
    }

    /// Reads one chunk into the buffer.
    fn fill(&mut self) -> io::Result<()> {
        let len = self.buf.len();
        // Zeroing costs far less than the read; it keeps this free of unsafe.
        self.buf.resize(len + self.chunk_bytes, 0);
        let read = loop {
            match self.reader.read(&mut self.buf[len..]) {
                Ok(read) => break read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.buf.truncate(len);
                    return Err(error);
                }
            }
        };
        self.buf.truncate(len + read);
        if read == 0 {
            self.eof = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], chunk: usize, max: usize) -> Vec<(Vec<u8>, u64)> {
        let mut reader = LineReader::new(input, 0, chunk, max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            out.push((line.bytes.to_vec(), line.end));
        }
        out
    }

    fn owned(expected: &[(&[u8], u64)]) -> Vec<(Vec<u8>, u64)> {
        expected.iter().map(|(b, e)| (b.to_vec(), *e)).collect()
    }

    #[test]
    fn splits_lines_at_every_chunk_size() {
        let input = b"ab\r\n\ncd\nefg";
        let expected = owned(&[(b"ab", 4), (b"", 5), (b"cd", 8), (b"efg", 11)]);
        for chunk in 1..=input.len() + 1 {
            assert_eq!(lines(input, chunk, 100), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn oversize_lines_come_out_as_their_head() {
        let input = b"0123456789\nab\n0123456789";
        let expected = owned(&[(b"01234", 11), (b"ab", 14), (b"01234", 24)]);
        for chunk in 1..=input.len() + 1 {
            assert_eq!(lines(input, chunk, 4), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn a_line_of_exactly_the_maximum_is_whole_with_or_without_cr() {
        let input = b"abcd\r\nabcd\nabcde\r\n";
        let expected = owned(&[(b"abcd", 6), (b"abcd", 11), (b"abcde", 18)]);
        for chunk in 1..=input.len() + 1 {
            assert_eq!(lines(input, chunk, 4), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn memory_stays_bounded_on_a_huge_line() {
        let mut input = vec![b'x'; 1 << 20];
        input.push(b'\n');
        let mut reader = LineReader::new(&input[..], 0, 1024, 100);
        let line = reader.next_line().unwrap().unwrap();
        assert_eq!(line.bytes.len(), 101);
        assert_eq!(line.end, input.len() as u64);
        assert!(
            reader.buf.capacity() < 8 * 1024,
            "capacity {}",
            reader.buf.capacity()
        );
        assert!(reader.next_line().unwrap().is_none());
    }

    #[test]
    fn an_empty_stream_has_no_lines() {
        assert!(lines(b"", 8, 8).is_empty());
    }
}

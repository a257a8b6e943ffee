//! The file source's checkpoint: how far into a file every event is done,
//! and enough about the file to notice a different one.
//!
//! Stored as one small JSON object, replaced atomically: a crash leaves the
//! old checkpoint or the new one, never a torn one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::source::SourceError;

/// The checkpoint format this code writes and reads.
const VERSION: u32 = 1;

/// What a checkpoint records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Position {
    pub(crate) version: u32,
    /// Bytes of the (decompressed) stream that are done: reading resumes here.
    pub(crate) position: u64,
    /// How many bytes from the start of the stream the fingerprint covers.
    pub(crate) head_bytes: u64,
    /// FNV-1a of those bytes, in hex (a string, so that no JSON reader
    /// rounds it).
    pub(crate) head_fnv1a: String,
    /// The file it was written for; only for messages, since files move.
    pub(crate) file: String,
}

impl Position {
    pub(crate) fn new(position: u64, head: &[u8], file: &Path) -> Position {
        Position {
            version: VERSION,
            position,
            head_bytes: head.len() as u64,
            head_fnv1a: fingerprint(head),
            file: file.display().to_string(),
        }
    }
}

/// The fingerprint of a file's first bytes.
pub(crate) fn fingerprint(head: &[u8]) -> String {
    format!("{:016x}", super::fnv1a(head))
}

/// A checkpoint file.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    path: PathBuf,
}

impl Checkpoint {
    pub(crate) fn new(path: PathBuf) -> Checkpoint {
        Checkpoint { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The stored position; `None` if there is no checkpoint yet.
    pub(crate) fn load(&self) -> Result<Option<Position>, SourceError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.io_error("reading", error)),
        };
        let position: Position = sonic_rs::from_slice(&bytes).map_err(|error| {
            SourceError::fatal(format!(
                "checkpoint {} is corrupt ({error}); remove it to read the file from the start",
                self.path.display()
            ))
        })?;
        if position.version != VERSION {
            return Err(SourceError::fatal(format!(
                "checkpoint {} has version {}; this build reads version {VERSION}",
                self.path.display(),
                position.version
            )));
        }
        Ok(Some(position))
    }

    /// Replaces the checkpoint: a temporary file in the same directory,
    /// fsynced, renamed over the old one, and the directory fsynced so the
    /// rename itself survives a power loss.
    pub(crate) fn store(&self, position: &Position) -> Result<(), SourceError> {
        let (dir, temp) = self.temp_path()?;
        let mut json = sonic_rs::to_vec(position).map_err(|error| {
            SourceError::fatal(format!(
                "encoding checkpoint {}: {error}",
                self.path.display()
            ))
        })?;
        json.push(b'\n');
        let written = File::create(&temp).and_then(|mut file| {
            file.write_all(&json)?;
            file.sync_all()
        });
        if let Err(error) = written.and_then(|()| fs::rename(&temp, &self.path)) {
            let _ = fs::remove_file(&temp);
            return Err(self.io_error("writing", error));
        }
        sync_dir(&dir).map_err(|error| self.io_error("syncing the directory of", error))
    }

    /// The checkpoint's directory, and the temporary file to write in it.
    fn temp_path(&self) -> Result<(PathBuf, PathBuf), SourceError> {
        let Some(name) = self.path.file_name() else {
            return Err(SourceError::fatal(format!(
                "checkpoint path {} does not name a file",
                self.path.display()
            )));
        };
        let dir = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(".tmp");
        let temp = dir.join(temp_name);
        Ok((dir, temp))
    }

    fn io_error(&self, doing: &str, error: io::Error) -> SourceError {
        let mut source_error = SourceError::from(error);
        source_error.message = format!(
            "{doing} checkpoint {}: {}",
            self.path.display(),
            source_error.message
        );
        source_error
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Other systems cannot open a directory to sync it; their rename is as
    // durable as they make it.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = Checkpoint::new(dir.path().join("cp.json"));
        assert_eq!(checkpoint.load().unwrap(), None);
        let position = Position::new(42, b"head", Path::new("in.ndjson"));
        checkpoint.store(&position).unwrap();
        assert_eq!(checkpoint.load().unwrap(), Some(position.clone()));
        let moved = Position::new(99, b"head", Path::new("in.ndjson"));
        checkpoint.store(&moved).unwrap();
        assert_eq!(checkpoint.load().unwrap(), Some(moved));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("cp.json")],
            "no temporary file is left"
        );
    }

    #[test]
    fn a_corrupt_checkpoint_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        fs::write(&path, b"{\"version\":1,\"posit").unwrap();
        let error = Checkpoint::new(path.clone()).load().unwrap_err();
        assert!(!error.retriable);
        assert!(
            error.message.contains(&path.display().to_string()),
            "{}",
            error.message
        );
        assert!(error.message.contains("corrupt"), "{}", error.message);
    }

    #[test]
    fn an_unknown_version_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut position = Position::new(1, b"", Path::new("x"));
        position.version = 7;
        fs::write(&path, sonic_rs::to_vec(&position).unwrap()).unwrap();
        let error = Checkpoint::new(path).load().unwrap_err();
        assert!(error.message.contains("version 7"), "{}", error.message);
    }

    #[test]
    fn a_missing_directory_is_an_error_on_store() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = Checkpoint::new(dir.path().join("missing").join("cp.json"));
        let error = checkpoint
            .store(&Position::new(1, b"", Path::new("x")))
            .unwrap_err();
        assert!(error.message.contains("cp.json"), "{}", error.message);
    }
}

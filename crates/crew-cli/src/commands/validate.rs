//! `crew validate`: loads a pipeline file and builds every stage, without
//! running anything. It looks at files without changing them: it reads the
//! input's metadata and opens it for reading without blocking (a FIFO or
//! device is refused, never opened), and checks that the outputs' and
//! checkpoint's directories exist or could be created; it never writes,
//! truncates or creates a file or directory, and reads no checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config;

/// Arguments of `crew validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline file (TOML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Runs `crew validate`: prints `FILE: ok (...)` and exits 0, or prints the
/// first error (file, line, column, key) and exits 1.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let checked = config::load(&args.file)
        .map_err(anyhow::Error::from)
        .and_then(|config| config.check().map(|()| config));
    match checked {
        Ok(config) => {
            println!("{}: ok ({})", args.file.display(), config.summary());
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

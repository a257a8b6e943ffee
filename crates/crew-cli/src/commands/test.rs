//! `crew test`: runs a pipeline file's unit tests, like `vector test` or
//! `benthos test`: each test feeds one input through named stages and
//! checks what comes out.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use similar::{ChangeTag, TextDiff};

use crate::config::testing::{load_tests, run_case, tests_path_for, Failure};
use crate::config::{self, ConfigError};

/// Arguments of `crew test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline file (TOML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The tests file; default: beside FILE, `NAME.tests.toml` for
    /// `NAME.toml`.
    #[arg(long, value_name = "PATH")]
    pub tests: Option<PathBuf>,
}

/// Runs `crew test`: prints `test NAME ... ok|FAILED` per test, then a diff
/// per failure and `N passed, M failed`. Exits 0 when all pass, 1 when any
/// fails or a file is wrong.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    match run(&args) {
        Ok(code) => Ok(code),
        Err(error) => {
            eprintln!("{error:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.file)?;
    let tests_path = args
        .tests
        .clone()
        .unwrap_or_else(|| tests_path_for(&args.file));
    if args.tests.is_none() && !tests_path.exists() {
        return Err(ConfigError::new(
            &tests_path,
            None,
            None,
            format!(
                "no tests file for {} (write one, or give another with --tests PATH)",
                args.file.display()
            ),
        )
        .into());
    }
    let file = load_tests(&tests_path, &config)?;
    let stages = config.stages()?;

    println!(
        "running {} test{} from {}",
        file.cases.len(),
        if file.cases.len() == 1 { "" } else { "s" },
        file.path.display()
    );
    // A panicking stage is reported as its test's failure; the default hook
    // would print it in the middle of the results.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let results: Vec<_> = file
        .cases
        .iter()
        .map(|case| {
            let result = run_case(case, &stages);
            let status = if result.is_ok() { "ok" } else { "FAILED" };
            println!("test {} ... {status}", case.name);
            (case, result)
        })
        .collect();
    std::panic::set_hook(hook);

    let failed: Vec<_> = results
        .iter()
        .filter_map(|(case, result)| result.as_ref().err().map(|failure| (case, failure)))
        .collect();
    if !failed.is_empty() {
        println!("\nfailures:");
        for (case, failure) in &failed {
            println!(
                "\n---- {} ({}:{}) ----",
                case.name,
                file.path.display(),
                case.at.line
            );
            print!("{}", report(failure));
        }
    }
    println!(
        "\n{} passed, {} failed",
        results.len() - failed.len(),
        failed.len()
    );
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A failure for a person: what differs, a line diff of expected (`-`)
/// against actual (`+`), and the delivered event.
fn report(failure: &Failure) -> String {
    let mut out = String::new();
    for problem in &failure.problems {
        let _ = writeln!(out, "{problem}");
    }
    out.push_str("--- expected\n+++ actual\n");
    let diff = TextDiff::from_lines(&failure.expected, &failure.actual);
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
            ChangeTag::Equal => ' ',
        };
        let line = change.value();
        let _ = write!(out, "{sign}{line}");
        if !line.ends_with('\n') {
            out.push('\n');
        }
    }
    if let Some(output) = &failure.output {
        let _ = writeln!(out, "output:\n{output}");
    }
    out
}

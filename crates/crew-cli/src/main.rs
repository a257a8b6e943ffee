//! The `crew` binary. Today it reports its version and points at what
//! exists; `run`, `validate`, `test`, `top`, `bench` and `gen` arrive with the
//! pipeline (see `design.md`).

use clap::Parser;

/// crew: bounded, observable worker pools and the event pipelines built on
/// them.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    println!(
        "crew {}: the pipeline service is not built yet; the worker pool library is `crew` \
         (see README.md for the examples and the benchmark suite)",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}

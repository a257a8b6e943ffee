//! `crew top`: a running crew's `/metrics`, as a live terminal dashboard or
//! (`--once`) a plain table.
//!
//! The layers: `http` fetches the text, `metrics` parses it (with
//! `prometheus-parse`) into series and histograms, `view` turns two scrapes
//! into what is shown (rates between them, quantiles from the histogram
//! buckets' increase), and `text` and `tui` draw that view.

mod http;
mod metrics;
mod text;
mod tui;
mod view;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

use self::http::Target;
use self::metrics::Metrics;
use self::view::{Scraped, View};

/// How long one scrape may take: a stuck admin server shows as an error
/// instead of a frozen screen.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Arguments of `crew top`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The admin address's metrics URL (plain HTTP); a bare `host:port`
    /// means `http://host:port/metrics`.
    #[arg(default_value = "http://127.0.0.1:9598/metrics")]
    pub url: String,
    /// Time between scrapes, and so the window of the rates and quantiles:
    /// `1s`, `500ms`, `1m30s` (the durations of the config file), from 10ms
    /// to 1h.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Scrape twice, `--interval` apart, print a plain table and exit
    /// (for scripts, logs and terminals without a TUI).
    #[arg(long)]
    pub once: bool,
    /// Show this pipeline when the endpoint serves several (the first one by
    /// name otherwise).
    #[arg(long)]
    pub pipeline: Option<String>,
}

/// Runs `crew top`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let target = Target::parse(&args.url)?;
    if args.once {
        return once(&target, &args);
    }
    if !io::stdout().is_terminal() {
        anyhow::bail!("`crew top` draws on a terminal; use `crew top --once` for a plain table");
    }
    tui::run(target, args.interval, args.pipeline)?;
    Ok(ExitCode::SUCCESS)
}

fn once(target: &Target, args: &Args) -> anyhow::Result<ExitCode> {
    let first = scrape(target)?;
    // Pacing the second scrape, not synchronizing with anything.
    thread::sleep((first.at + args.interval).saturating_duration_since(Instant::now()));
    let second = scrape(target)?;
    let view = View::build(
        &target.to_string(),
        args.pipeline.as_deref(),
        Some(&first),
        &second,
    )?;
    let mut out = io::stdout().lock();
    match out
        .write_all(text::render(&view).as_bytes())
        .and_then(|()| out.flush())
    {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(error).context("cannot write to standard output"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// One scrape, timed from when it was asked for: two scrapes' instants are
/// at least the interval apart, which is what the rates divide by.
fn scrape(target: &Target) -> anyhow::Result<Scraped> {
    let at = Instant::now();
    let body =
        http::get(target, SCRAPE_TIMEOUT).with_context(|| format!("cannot scrape {target}"))?;
    Ok(Scraped {
        at,
        metrics: Metrics::parse(&body),
    })
}

/// A duration in the syntax of every other one in crew (`1s`, `250ms`,
/// `1m30s`), within what makes sense between two scrapes.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration such as 1s or 500ms: {e}"))?;
    // Under 10 ms the rates would measure the scraping, not the pipeline.
    if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&interval) {
        return Err(format!(
            "`{text}`: the interval must be between 10ms and 1h"
        ));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_like_every_duration_in_crew() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_interval("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_interval("20000us"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["fast", "1.5", "0s", "-1s", "5ms", "2h", ""] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}

//! What each Server Pixels stage costs per event on one core, with no
//! pipeline around it: the floor under every pipeline benchmark (B4, B7).
//!
//! `cargo bench -p crew-pipeline --bench pixels_stages`
//!
//! Events come from the pixels generator (no malformed or invalid lines, so
//! every event reaches `consent`; about half pass it and reach `augment`).
//! Each stage is timed on events that went through the stages before it, as
//! in a pipeline; `chain` is all four plus encoding the kept events, which is
//! what a worker does per event.

use std::hint::black_box;

use bytes::Bytes;
use crew_pipeline::pixels::{self, NamedStage};
use crew_pipeline::sources::{GeneratorConfig, PixelsEvents};
use crew_pipeline::{Event, Origin, Outcome};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

// The allocator the crew binary ships with (see crew-cli's main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events per timed batch: enough to leave the caches as a worker's batch
/// does (the default batch is 500 events).
const EVENTS: usize = 1_024;

fn lines() -> Vec<Bytes> {
    let config = GeneratorConfig {
        seed: 7,
        count: Some(EVENTS as u64),
        ..GeneratorConfig::default()
    };
    let mut events = PixelsEvents::new(&config).expect("the generator's defaults are valid");
    (0..EVENTS)
        .map(|_| {
            let mut line = Vec::new();
            events.next_line(&mut line);
            Bytes::from(line)
        })
        .collect()
}

/// Fresh events, each taken through `stages` and kept only if all of them
/// kept it.
fn events_after(lines: &[Bytes], stages: &[NamedStage]) -> Vec<Event> {
    lines
        .iter()
        .enumerate()
        .map(|(offset, line)| {
            Event::new(
                Origin {
                    partition: 0,
                    offset: offset as u64,
                },
                line.clone(),
            )
        })
        .filter_map(|mut event| {
            for (name, stage) in stages {
                match stage.process(&mut event) {
                    Ok(Outcome::Keep) => {}
                    Ok(_) => return None,
                    Err(error) => panic!("stage {name} failed on generated input: {error:?}"),
                }
            }
            Some(event)
        })
        .collect()
}

fn bench_stages(c: &mut Criterion) {
    let lines = lines();
    let stages = pixels::stages();
    let mut group = c.benchmark_group("pixels");
    for (index, (name, stage)) in stages.iter().enumerate() {
        let reaching = events_after(&lines, &stages[..index]).len();
        group.throughput(Throughput::Elements(reaching as u64));
        group.bench_function(name.as_str(), |b| {
            b.iter_batched(
                || events_after(&lines, &stages[..index]),
                |mut events| {
                    for event in &mut events {
                        black_box(stage.process(event).ok());
                    }
                    events
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("chain", |b| {
        b.iter_batched(
            || events_after(&lines, &[]),
            |events| {
                let mut out = Vec::with_capacity(EVENTS * 700);
                for mut event in events {
                    let kept = stages
                        .iter()
                        .all(|(_, stage)| matches!(stage.process(&mut event), Ok(Outcome::Keep)));
                    if let (true, Some(value)) = (kept, event.value()) {
                        sonic_rs::to_writer(&mut out, value).expect("a parsed value encodes");
                        out.push(b'\n');
                    }
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_stages);
criterion_main!(benches);

//! Bad input through the Server Pixels pipeline: the generator with 10%
//! malformed lines (and 5% invalid events). Every malformed line is a dead
//! letter with reason `parse` and its original bytes, every invalid event one
//! with reason `invalid` naming the field, every good line is in the output
//! or counted as dropped, and output + dead letters + dropped = input,
//! exactly.

mod common;

use std::collections::HashMap;

use base64::Engine as _;
use common::{CollectingSink, DeadLetterSink};
use crew_pipeline::pixels::PixelsConfig;
use crew_pipeline::sources::{Generator, GeneratorConfig, LineKind, PixelsEvents};
use crew_pipeline::{Ordering, Pipeline, Settings};
use sonic_rs::JsonValueTrait;

const EVENTS: u64 = 20_000;

fn generator_config(ordering_seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        seed: ordering_seed,
        count: Some(EVENTS),
        malformed: 0.10,
        invalid: 0.05,
        oversize_bytes: 8 * 1024 + 1,
        ..GeneratorConfig::default()
    }
}

fn run(ordering: Ordering) {
    let config = generator_config(11);
    // The expected fate of each line, from the same deterministic stream.
    let mut lines = PixelsEvents::new(&config).unwrap();
    let mut expected: HashMap<u64, (LineKind, Vec<u8>)> = HashMap::new();
    for _ in 0..EVENTS {
        let mut line = Vec::new();
        let info = lines.next_line(&mut line);
        expected.insert(info.seq, (info.kind, line));
    }

    let (sink, delivered) = CollectingSink::new();
    let (dead, dead_letters) = DeadLetterSink::new();
    let mut builder = Pipeline::builder()
        .settings(Settings {
            workers: 2,
            ordering,
            ..Settings::default()
        })
        .source(Generator::new(config).unwrap())
        .sink(sink)
        .dead_letter(dead);
    let pixels = PixelsConfig {
        max_bytes: 8 * 1024,
        ..PixelsConfig::default()
    };
    for (name, stage) in pixels.stages().unwrap() {
        builder = builder.arc_stage(name, stage, None);
    }
    let report = builder.build().unwrap().run();

    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.read, EVENTS);
    assert_eq!(
        report.delivered + report.dropped + report.dead_lettered,
        EVENTS,
        "output + dead letters + dropped = input: {report:#?}"
    );

    let dead_letters = dead_letters.lock().unwrap();
    let delivered = delivered.lock().unwrap();
    assert_eq!(dead_letters.len() as u64, report.dead_lettered);
    assert_eq!(delivered.records.len() as u64, report.delivered);

    let mut malformed = 0;
    let mut invalid = 0;
    for letter in dead_letters.iter() {
        // One partition: the generator's offset is the line's seq.
        let (kind, line) = &expected[&letter.origin.offset];
        let original = match (&letter.original, &letter.original_base64) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap(),
            other => panic!("a dead letter carries its bytes one way: {other:?}"),
        };
        assert_eq!(
            &original, line,
            "the dead letter carries the original bytes"
        );
        match kind {
            LineKind::Malformed(_) => {
                malformed += 1;
                assert_eq!(letter.reason, "parse", "{letter:?}");
                assert_eq!(letter.stage, "parse");
            }
            LineKind::Invalid(_) => {
                invalid += 1;
                assert_eq!(letter.reason, "invalid", "{letter:?}");
                assert!(
                    letter.message.contains('`'),
                    "the message names the field: {letter:?}"
                );
            }
            LineKind::Valid => panic!("a good line was dead-lettered: {letter:?}"),
        }
    }
    let expected_malformed = expected
        .values()
        .filter(|(k, _)| matches!(k, LineKind::Malformed(_)))
        .count();
    let expected_invalid = expected
        .values()
        .filter(|(k, _)| matches!(k, LineKind::Invalid(_)))
        .count();
    assert_eq!(
        malformed, expected_malformed,
        "every malformed line is a dead letter"
    );
    assert_eq!(
        invalid, expected_invalid,
        "every invalid event is a dead letter"
    );
    assert!(expected_malformed as u64 >= EVENTS / 10 - 1);

    // Every delivered record is a good line, once.
    let mut seen = std::collections::HashSet::new();
    for record in &delivered.records {
        assert!(
            seen.insert(record.origin.offset),
            "delivered twice: {:?}",
            record.origin
        );
        let (kind, _) = &expected[&record.origin.offset];
        assert_eq!(*kind, LineKind::Valid);
        let value: sonic_rs::Value = sonic_rs::from_slice(&record.bytes).unwrap();
        assert!(value.get("partner").is_some() && value.get("device").is_some());
    }
    let valid = expected
        .values()
        .filter(|(k, _)| *k == LineKind::Valid)
        .count() as u64;
    assert_eq!(
        report.delivered + report.dropped,
        valid,
        "good lines: output or dropped"
    );
}

#[test]
fn malformed_lines_end_as_dead_letters_and_nothing_is_lost_unordered() {
    run(Ordering::Unordered);
}

#[test]
fn malformed_lines_end_as_dead_letters_and_nothing_is_lost_in_key_order() {
    run(Ordering::Key);
}

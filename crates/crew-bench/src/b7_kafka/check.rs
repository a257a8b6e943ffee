//! The checks that make a crew run count: every event done once, every
//! partition committed, the topics agreeing with the counts.

use super::{CrewRun, KafkaInput};

/// The checks every crew run must pass: every event done exactly once,
/// everything committed, and (with Kafka sinks) the topics agreeing.
pub(super) fn check(run: &CrewRun, input: &KafkaInput) -> Result<(), String> {
    let expected = input.events;
    let (dropped, dead) = (run.dropped_total(), run.dead_total());
    let mut wrong = Vec::new();
    if run.read > expected {
        wrong.push(format!(
            "read {} events, {} of them twice: the group rebalanced during the run (this \
             process stalled past session.timeout.ms?), so the run is not a clean measurement",
            run.read,
            run.read - expected
        ));
    } else if run.read < expected {
        wrong.push(format!("read {} of {expected} events", run.read));
    }
    if run.delivered + dropped + dead != run.read {
        wrong.push(format!(
            "delivered {} + dropped {dropped} + dead-lettered {dead} = {}, not the {} read",
            run.delivered,
            run.delivered + dropped + dead,
            run.read
        ));
    }
    if dead != input.broken() {
        wrong.push(format!(
            "dead-lettered {dead}, but the generator wrote {} broken lines",
            input.broken()
        ));
    }
    let short: Vec<String> = input
        .ends
        .iter()
        .filter(|(p, end)| run.committed.get(p).map_or(0, |done| done + 1) != **end)
        .map(|(p, end)| {
            format!(
                "{p} (committed through {}, ends at {end})",
                run.committed
                    .get(p)
                    .map_or_else(|| "nothing".to_owned(), i64::to_string)
            )
        })
        .collect();
    if !short.is_empty() {
        wrong.push(format!(
            "the committed offsets do not cover the input: partitions {}",
            short.join(", ")
        ));
    }
    if let (Some(records), Some(ids)) = (run.output_records, run.output_ids) {
        if records != run.delivered {
            wrong.push(format!(
                "the output topic holds {records} records for {} delivered",
                run.delivered
            ));
        }
        if ids != records {
            wrong.push(format!(
                "the output topic holds {ids} distinct event_ids in {records} records"
            ));
        }
    }
    if let Some(records) = run.dead_records {
        if records != dead {
            wrong.push(format!(
                "the dead-letter topic holds {records} records for {dead} dead-lettered"
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("events do not add up: {}", wrong.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    fn input() -> KafkaInput {
        KafkaInput {
            events: 100,
            bytes: 0,
            malformed: 10,
            invalid: 0,
            produce_time: Duration::ZERO,
            ends: BTreeMap::from([(0, 60), (1, 40)]),
        }
    }

    fn run_of(read: u64, delivered: u64, dropped: u64, dead: u64) -> CrewRun {
        CrewRun {
            read,
            delivered,
            dropped: BTreeMap::from([("consent".to_owned(), dropped)]),
            dead_lettered: BTreeMap::from([("parse".to_owned(), dead)]),
            committed: BTreeMap::from([(0, 59), (1, 39)]),
            output_records: Some(delivered),
            output_ids: Some(delivered),
            dead_records: Some(dead),
            ..CrewRun::default()
        }
    }

    #[test]
    fn check_refuses_runs_that_do_not_add_up() {
        assert_eq!(check(&run_of(100, 60, 30, 10), &input()), Ok(()));
        // One event missing from the counts.
        assert!(check(&run_of(100, 59, 30, 10), &input()).is_err());
        // Events read twice (a rebalance), even if the counts add up.
        let twice = check(&run_of(104, 64, 30, 10), &input()).unwrap_err();
        assert!(twice.contains("4 of them twice"), "{twice}");
        // A partition not committed to its end.
        let mut short = run_of(100, 60, 30, 10);
        short.committed.insert(1, 30);
        let e = check(&short, &input()).unwrap_err();
        assert!(e.contains("1 (committed through 30, ends at 40)"), "{e}");
        // A record lost on the way to the output topic.
        let mut lost = run_of(100, 60, 30, 10);
        lost.output_records = Some(59);
        lost.output_ids = Some(59);
        assert!(check(&lost, &input()).unwrap_err().contains("output topic"));
        // A record written twice.
        let mut doubled = run_of(100, 60, 30, 10);
        doubled.output_records = Some(61);
        assert!(check(&doubled, &input()).is_err());
        // A valid event dead-lettered.
        assert!(check(&run_of(100, 59, 30, 11), &input())
            .unwrap_err()
            .contains("broken lines"));
        let mut dead_lost = run_of(100, 60, 30, 10);
        dead_lost.dead_records = Some(9);
        assert!(check(&dead_lost, &input())
            .unwrap_err()
            .contains("dead-letter topic"));
        // The blackhole has no topics to compare.
        let mut blackhole = run_of(100, 60, 30, 10);
        (
            blackhole.output_records,
            blackhole.output_ids,
            blackhole.dead_records,
        ) = (None, None, None);
        assert_eq!(check(&blackhole, &input()), Ok(()));
    }
}

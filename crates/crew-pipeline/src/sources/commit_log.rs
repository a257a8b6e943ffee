//! [`CommitLog`]: what a source that persists nothing was asked to commit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::event::{Offset, Partition};

/// The commits a source received, readable from outside the pipeline.
///
/// Sources without a place to persist positions (the generator, stdin) keep
/// their commits here. A test takes a handle before handing the source to the
/// pipeline, and reads it after the run to see what was committed.
///
/// ```
/// use crew_pipeline::sources::{Generator, GeneratorConfig};
///
/// let generator = Generator::new(GeneratorConfig { count: Some(10), ..GeneratorConfig::default() }).unwrap();
/// let commits = generator.commit_log();
/// // ... run a pipeline with `generator` ...
/// assert_eq!(commits.last(), Vec::new());
/// assert_eq!(commits.committed(0), None);
/// ```
#[derive(Clone, Debug, Default)]
pub struct CommitLog {
    shared: Arc<Mutex<Commits>>,
}

#[derive(Debug, Default)]
struct Commits {
    last: Vec<(Partition, Offset)>,
    through: BTreeMap<Partition, Offset>,
    calls: u64,
}

impl CommitLog {
    /// The `done_through` of the latest commit (only the partitions that
    /// moved since the one before).
    pub fn last(&self) -> Vec<(Partition, Offset)> {
        self.lock().last.clone()
    }

    /// The highest offset committed for `partition`, over all commits.
    pub fn committed(&self, partition: Partition) -> Option<Offset> {
        self.lock().through.get(&partition).copied()
    }

    /// The highest offset committed per partition, by partition.
    pub fn all(&self) -> Vec<(Partition, Offset)> {
        self.lock().through.iter().map(|(p, o)| (*p, *o)).collect()
    }

    /// How many commits were received.
    pub fn commits(&self) -> u64 {
        self.lock().calls
    }

    pub(crate) fn record(&self, done_through: &[(Partition, Offset)]) {
        let mut commits = self.lock();
        commits.calls += 1;
        commits.last = done_through.to_vec();
        for &(partition, offset) in done_through {
            let through = commits.through.entry(partition).or_insert(offset);
            *through = (*through).max(offset);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Commits> {
        // The lock only guards plain data, so a panic elsewhere while holding
        // it cannot leave it half-updated in a way that matters.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_commit_and_the_highest_per_partition() {
        let log = CommitLog::default();
        let reader = log.clone();
        log.record(&[(0, 5), (1, 3)]);
        log.record(&[(1, 9)]);
        assert_eq!(reader.last(), vec![(1, 9)]);
        assert_eq!(reader.committed(0), Some(5));
        assert_eq!(reader.all(), vec![(0, 5), (1, 9)]);
        assert_eq!(reader.commits(), 2);
    }
}

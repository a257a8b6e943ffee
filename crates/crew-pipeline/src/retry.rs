//! Retry policy: exponential backoff with jitter, up to a number of attempts.

use std::time::Duration;

use serde::Deserialize;

/// How a failing stage or sink call is retried.
///
/// Attempt `n` (counting from 1) that fails with a retriable error waits
/// `initial_backoff × 2^(n-1)`, capped at `max_backoff`, with "equal jitter":
/// half of that fixed, half random, so that many workers failing together do
/// not retry in lockstep. After `max_attempts` attempts the event goes to the
/// dead-letter sink.
///
/// ```
/// use std::time::Duration;
/// use crew_pipeline::RetryPolicy;
///
/// let policy = RetryPolicy { max_attempts: 4, ..RetryPolicy::default() };
/// let third = policy.backoff(3); // after the third failed attempt
/// assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included. 1 means no retry.
    pub max_attempts: u32,
    /// The wait after the first failed attempt, before jitter.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The longest wait between attempts, before jitter.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Whether another attempt is allowed after `attempts` failed ones.
    pub fn allows_retry(&self, attempts: u32) -> bool {
        attempts < self.max_attempts
    }

    /// The wait after failed attempt number `attempt` (from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let half = base / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

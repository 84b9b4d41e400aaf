//! How failures retry: attempts per job kind and the backoff between them.

use std::time::Duration;

use backon::BackoffBuilder as _;
use drover_shared::jobs::JobKind;

/// Retries of one job kind: exponential backoff with jitter (backon), at
/// most `max_attempts` failures before the job is dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Failures allowed before the dead letters (at least 1).
    pub max_attempts: u32,
    /// Delay after the first failure.
    pub min_delay: Duration,
    /// Ceiling of the delay.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The defaults for a kind: SSH provisioning retries longer and slower
    /// than rendering.
    pub fn for_kind(kind: JobKind) -> Self {
        match kind {
            JobKind::RemoteMachine => Self {
                max_attempts: 8,
                min_delay: Duration::from_secs(5),
                max_delay: Duration::from_secs(300),
            },
            _ => Self {
                max_attempts: 5,
                min_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(60),
            },
        }
    }

    /// The delay before retrying after failure number `attempt` (1-based):
    /// doubling from `min_delay`, capped at `max_delay`, jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        // The delay stops doubling long before 64 steps (a u64 of
        // nanoseconds would overflow), and each step is computed: a huge
        // count must not take minutes.
        let n = attempt.clamp(1, 64) as usize;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(n)
            .with_jitter()
            .build()
            .nth(n - 1)
            .unwrap_or(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_bounds() {
        let p = RetryPolicy {
            max_attempts: 10,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        };
        for attempt in 1..=10 {
            let d = p.delay(attempt);
            // backon's jitter adds up to one more base delay.
            let base = (100u64 << (attempt - 1).min(20)).min(2000);
            assert!(d >= Duration::from_millis(base), "{attempt}: {d:?}");
            assert!(
                d <= Duration::from_millis(base * 2).max(Duration::from_secs(4)),
                "{attempt}: {d:?}"
            );
        }
    }
}

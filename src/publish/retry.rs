//! How a sink retries an event: exponential backoff with jitter, for up to `max_attempts`
//! attempts and `max_age` since the first; then the event is a dead letter.

use std::time::Duration;

use rand::Rng;

/// A sink's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The wait after the first failure; each later one doubles it...
    pub initial: Duration,
    /// ...up to this.
    pub max_delay: Duration,
    /// Attempts in all (at least 1).
    pub max_attempts: u32,
    /// No attempt starts this long after the first.
    pub max_age: Duration,
}

impl Default for Retry {
    /// About a day of retries: 1 s doubling to 10 min, 200 attempts, 24 h.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(600),
            max_attempts: 200,
            max_age: Duration::from_secs(86_400),
        }
    }
}

impl Retry {
    /// The wait after failed attempt number `attempt` (1 for the first), or `None` when the
    /// event is to be given up: out of attempts, or a retry after the wait would start past
    /// `max_age` (`age` is the time since the first attempt). The wait is drawn from its
    /// upper half, so that many sinks failing together do not retry together.
    pub fn after(&self, attempt: u32, age: Duration) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let doubled = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(31));
        let ceiling = doubled.min(self.max_delay);
        let wait = rand::rng().random_range(ceiling / 2..=ceiling);
        (age + wait <= self.max_age).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Retry {
        Retry {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
            max_attempts: 10,
            max_age: Duration::from_secs(60),
        }
    }

    #[test]
    fn waits_double_with_jitter_up_to_the_ceiling() {
        let policy = policy();
        for (attempt, ceiling_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000),
            (9, 1_000),
        ] {
            let wait = policy.after(attempt, Duration::ZERO).expect("retried");
            let ceiling = Duration::from_millis(ceiling_ms);
            assert!(
                wait <= ceiling && wait >= ceiling / 2,
                "{attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn gives_up_after_its_attempts_or_its_age() {
        let policy = policy();
        assert_eq!(policy.after(10, Duration::ZERO), None);
        assert_eq!(policy.after(1, Duration::from_secs(60)), None);
        assert!(policy.after(1, Duration::from_secs(59)).is_some());
    }
}

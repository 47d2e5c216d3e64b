//! When a request's work must stop. A promise or route over a large order can search for a
//! long time; its caller stops waiting at a deadline, so the work stops there too, and
//! answers [`Error::DeadlineExceeded`] having changed nothing.
//!
//! Loops report the work they are about to do with [`Deadline::spend`], in units of roughly
//! one line looked at for one node. The clock is read once every [`CHECK_EVERY`] units, so a
//! check costs a counter addition, and work overruns its deadline by at most that much.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::clock::{Clock, UnixMillis};
use crate::error::{Error, Result};

/// Units of work between two readings of the clock.
pub const CHECK_EVERY: u64 = 4_096;

/// The instant one request's work must stop by. Each request has its own, and its work runs
/// on one thread at a time; the counters are atomics only so that the work may be borrowed
/// across an `.await`, and plain loads and stores of them suffice.
#[derive(Debug)]
pub struct Deadline<'c> {
    /// The clock to read and the instant at which work stops; `None`: never.
    until: Option<(&'c dyn Clock, UnixMillis)>,
    /// Units spent since the clock was last read.
    spent: AtomicU64,
    /// The deadline was seen passed: every later check fails without reading the clock.
    passed: AtomicBool,
}

impl<'c> Deadline<'c> {
    /// Work that may take as long as it takes (benches, tests, internal callers).
    pub fn never() -> Self {
        Self {
            until: None,
            spent: AtomicU64::new(0),
            passed: AtomicBool::new(false),
        }
    }

    /// Work stops once `clock` reads `at_ms` or later.
    pub fn at(clock: &'c dyn Clock, at_ms: UnixMillis) -> Self {
        Self {
            until: Some((clock, at_ms)),
            ..Self::never()
        }
    }

    /// Work stops `budget` from now on `clock` (whole milliseconds: less than one is none).
    pub fn after(clock: &'c dyn Clock, budget: Duration) -> Self {
        let budget_ms = i64::try_from(budget.as_millis()).unwrap_or(i64::MAX);
        Self::at(clock, clock.now_ms().saturating_add(budget_ms))
    }

    /// Accounts for `units` of work about to be done; fails once the deadline has passed.
    pub fn spend(&self, units: u64) -> Result<()> {
        if self.until.is_none() {
            return Ok(());
        }
        let spent = self.spent.load(Relaxed).saturating_add(units);
        if spent < CHECK_EVERY && !self.passed.load(Relaxed) {
            self.spent.store(spent, Relaxed);
            return Ok(());
        }
        self.check()
    }

    /// Reads the clock now: before a step that cannot be taken back, such as a hold.
    pub fn check(&self) -> Result<()> {
        let Some((clock, at_ms)) = self.until else {
            return Ok(());
        };
        self.spent.store(0, Relaxed);
        if self.passed.load(Relaxed) || clock.now_ms() >= at_ms {
            self.passed.store(true, Relaxed);
            return Err(Error::DeadlineExceeded);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn spending_reads_the_clock_only_every_so_many_units() {
        let clock = ManualClock::new(1_000);
        let deadline = Deadline::after(&clock, Duration::from_millis(10));
        clock.advance_ms(10);
        for _ in 1..CHECK_EVERY {
            assert_eq!(deadline.spend(1), Ok(()), "the clock is not read yet");
        }
        assert_eq!(deadline.spend(1), Err(Error::DeadlineExceeded));
    }

    #[test]
    fn a_passed_deadline_stays_passed_even_if_the_clock_goes_back() {
        let clock = ManualClock::new(1_000);
        let deadline = Deadline::at(&clock, 1_005);
        assert_eq!(deadline.check(), Ok(()));
        clock.set_ms(1_005);
        assert_eq!(
            deadline.check(),
            Err(Error::DeadlineExceeded),
            "at the instant"
        );
        clock.set_ms(1_000);
        assert_eq!(deadline.spend(1), Err(Error::DeadlineExceeded));
    }

    #[test]
    fn less_than_a_millisecond_is_no_time_at_all() {
        let clock = ManualClock::new(1_000);
        let deadline = Deadline::after(&clock, Duration::from_micros(900));
        assert_eq!(deadline.check(), Err(Error::DeadlineExceeded));
    }

    #[test]
    fn never_never_fails() {
        let deadline = Deadline::never();
        assert_eq!(deadline.spend(u64::MAX), Ok(()));
        assert_eq!(deadline.check(), Ok(()));
    }
}

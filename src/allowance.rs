//! Each connection's allowance of refused calls, so that under a flood the connections being
//! refused pay for it and the others keep their share of the server. A call refused for the
//! server's resources (gRPC `RESOURCE_EXHAUSTED`: the in-flight limits, an over-size message;
//! HTTP 413 and 429) draws on its connection's account, which earns `per_second` refusals
//! back up to `burst`. A connection that has spent its allowance is not read from until it
//! has earned one back: its next calls wait in its own socket, where TCP pushes back on the
//! sender, instead of taking the CPU every other connection is served with. A client that is
//! refused now and then never notices; answers already on their way still go out.
//!
//! The account is a generic cell rate: one instant, `due`, past which the connection owes
//! nothing. Each refusal moves it one interval later (from now, if it was already past); the
//! connection rests while `due` is more than `burst` intervals ahead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::codegen::http::{Response, StatusCode};

/// How many refusals a connection may have: `burst` at once, then `per_second`. A rate of 0
/// turns the allowance off (a connection is never rested).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub per_second: u32,
    pub burst: u32,
}

/// One connection's account of its refusals.
#[derive(Debug)]
pub struct Account {
    /// What `due` counts nanoseconds from.
    origin: Instant,
    /// Nanoseconds one refusal costs; 0 when the allowance is off.
    interval: u64,
    /// Nanoseconds of refusals a connection may owe before it rests.
    credit: u64,
    /// Nanoseconds after `origin` at which the connection owes nothing.
    due: AtomicU64,
}

impl Account {
    pub fn open(allowance: Allowance) -> Arc<Account> {
        let interval = match allowance.per_second {
            0 => 0,
            rate => 1_000_000_000 / u64::from(rate),
        };
        Arc::new(Account {
            origin: Instant::now(),
            interval,
            credit: interval * u64::from(allowance.burst),
            due: AtomicU64::new(0),
        })
    }

    /// One refusal on the connection.
    pub fn charge(&self) {
        let now = self.nanos(Instant::now());
        let _ = self
            .due
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |due| {
                Some(due.max(now) + self.interval)
            });
    }

    /// Until when the connection rests, when it has spent its allowance.
    pub fn resting_until(&self) -> Option<Instant> {
        let due = self.due.load(Ordering::Relaxed);
        let free = due.checked_sub(self.credit)?;
        (free > self.nanos(Instant::now())).then(|| self.origin + Duration::from_nanos(free))
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_nanos() as u64
    }
}

/// Whether an answer refuses its call for resources: over gRPC `RESOURCE_EXHAUSTED` in its
/// headers (a refusal is trailers-only), over HTTP a body too large or too many calls.
pub fn refused_for_resources<B>(response: &Response<B>) -> bool {
    let grpc_status = response.headers().get("grpc-status");
    grpc_status.map(|code| code.as_bytes()) == Some(b"8")
        || response.status() == StatusCode::PAYLOAD_TOO_LARGE
        || response.status() == StatusCode::TOO_MANY_REQUESTS
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOWANCE: Allowance = Allowance {
        per_second: 10,
        burst: 3,
    };

    #[tokio::test(start_paused = true)]
    async fn a_connection_rests_once_it_has_spent_its_burst_and_only_as_long_as_it_owes() {
        let account = Account::open(ALLOWANCE);
        for _ in 0..3 {
            account.charge();
            assert_eq!(account.resting_until(), None, "within the burst");
        }
        account.charge();
        let rest = account.resting_until().expect("one past the burst rests");
        assert_eq!(rest - Instant::now(), Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(
            account.resting_until().is_some(),
            "still owes a millisecond"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(account.resting_until(), None, "paid up");
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_spread_over_time_within_the_rate_never_rest_the_connection() {
        let account = Account::open(ALLOWANCE);
        for _ in 0..100 {
            account.charge();
            assert_eq!(account.resting_until(), None);
            tokio::time::advance(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_quiet_spell_earns_back_no_more_than_the_burst() {
        let account = Account::open(ALLOWANCE);
        account.charge();
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            account.charge();
        }
        assert_eq!(account.resting_until(), None);
        account.charge();
        assert!(account.resting_until().is_some(), "the burst is 3, not 600");
    }

    #[tokio::test(start_paused = true)]
    async fn an_allowance_at_rate_zero_never_rests_a_connection() {
        let account = Account::open(Allowance {
            per_second: 0,
            burst: 0,
        });
        for _ in 0..1_000 {
            account.charge();
        }
        assert_eq!(account.resting_until(), None);
    }

    fn answer(status: StatusCode, grpc_status: Option<&'static str>) -> Response<()> {
        let mut response = Response::new(());
        *response.status_mut() = status;
        if let Some(code) = grpc_status {
            response
                .headers_mut()
                .insert("grpc-status", code.parse().unwrap());
        }
        response
    }

    #[test]
    fn only_resource_refusals_are_charged() {
        assert!(
            !refused_for_resources(&answer(StatusCode::OK, None)),
            "an answer"
        );
        let bad_input = answer(StatusCode::OK, Some("3"));
        assert!(!refused_for_resources(&bad_input), "the caller's own");
        assert!(refused_for_resources(&answer(StatusCode::OK, Some("8"))));
        assert!(refused_for_resources(&answer(
            StatusCode::TOO_MANY_REQUESTS,
            None
        )));
        assert!(refused_for_resources(&answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            None
        )));
        assert!(!refused_for_resources(&answer(
            StatusCode::BAD_REQUEST,
            None
        )));
    }
}

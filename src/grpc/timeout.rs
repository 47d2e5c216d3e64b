//! How long a call may work: its caller's `grpc-timeout` (how long the caller waits), capped
//! by the server's own maximum, so that no call keeps a core busy after its caller has gone.

use std::time::Duration;

use tonic::metadata::MetadataMap;

/// The header in which a gRPC caller states its deadline, as a timeout from sending.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The work budget of a call: the shorter of its caller's timeout and `max_work`.
pub fn work_budget(metadata: &MetadataMap, max_work: Duration) -> Duration {
    caller_timeout(metadata).map_or(max_work, |timeout| timeout.min(max_work))
}

/// The caller's `grpc-timeout`: one to eight digits and a unit (`H`, `M`, `S`, `m`, `u`,
/// `n`), as gRPC over HTTP/2 writes it. A malformed value is ignored, as tonic's own timeout
/// ignores it.
fn caller_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if !(1..=8).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3_600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(2);

    fn budget(header: Option<&str>) -> Duration {
        let mut metadata = MetadataMap::new();
        if let Some(value) = header {
            metadata.insert(GRPC_TIMEOUT, value.parse().expect("ASCII"));
        }
        work_budget(&metadata, MAX)
    }

    #[test]
    fn the_callers_timeout_wins_when_it_is_shorter() {
        assert_eq!(budget(Some("150m")), Duration::from_millis(150));
        assert_eq!(budget(Some("1500000u")), Duration::from_millis(1_500));
        assert_eq!(budget(Some("20000000n")), Duration::from_millis(20));
        assert_eq!(budget(Some("1S")), Duration::from_secs(1));
    }

    #[test]
    fn the_server_maximum_wins_when_it_is_shorter_or_the_caller_has_none() {
        assert_eq!(budget(None), MAX);
        assert_eq!(budget(Some("1H")), MAX);
        assert_eq!(budget(Some("3M")), MAX);
        assert_eq!(budget(Some("99999999S")), MAX);
    }

    #[test]
    fn a_malformed_timeout_is_ignored() {
        for bad in ["", "m", "10", "10x", "+10m", "123456789m", "1.5S", "-1S"] {
            assert_eq!(budget(Some(bad)), MAX, "{bad:?}");
        }
    }
}

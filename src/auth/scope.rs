//! Scopes: what a credential may do. Each RPC needs exactly one; a feed scope also names the
//! one source its batches may come from.

use std::fmt;
use std::str::FromStr;

/// A permission a credential holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `availability:read`: `Availability/GetAvailability`.
    AvailabilityRead,
    /// `promise`: `Promising/PromiseOrder`.
    Promise,
    /// `reserve`: every `Reservations` call.
    Reserve,
    /// `route`: `Routing/RouteOrder` and `RouteOrders`.
    Route,
    /// `supply:write:<source>`: feed batches as that source, and no other.
    SupplyWrite(String),
    /// `admin:network`: the network configuration (nodes, groups, sources, service levels,
    /// postal codes, safety stock).
    AdminNetwork,
    /// `admin:repair`: `Admin/CheckInvariants`, the outbound sinks' dead letters
    /// (`ListDeadLetters`, `DeleteDeadLetters`), and acting on any caller's reservation.
    AdminRepair,
    /// `insights:read`: `Availability/Explain`, `Admin/GetStats`, `ListAudit` and
    /// `GetPositionHistory` (the audit trail), and `Supply/ListRejections`.
    InsightsRead,
}

const SUPPLY_WRITE: &str = "supply:write:";

/// The scopes without a parameter, in the order the README's table lists them.
pub const FIXED: [Scope; 7] = [
    Scope::AvailabilityRead,
    Scope::Promise,
    Scope::Reserve,
    Scope::Route,
    Scope::AdminNetwork,
    Scope::AdminRepair,
    Scope::InsightsRead,
];

impl Scope {
    fn fixed_name(&self) -> Option<&'static str> {
        Some(match self {
            Self::AvailabilityRead => "availability:read",
            Self::Promise => "promise",
            Self::Reserve => "reserve",
            Self::Route => "route",
            Self::AdminNetwork => "admin:network",
            Self::AdminRepair => "admin:repair",
            Self::InsightsRead => "insights:read",
            Self::SupplyWrite(_) => return None,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SupplyWrite(source) => write!(f, "{SUPPLY_WRITE}{source}"),
            fixed => f.write_str(fixed.fixed_name().unwrap_or_default()),
        }
    }
}

/// A scope name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?} (known: availability:read, promise, reserve, route, supply:write:<source>, admin:network, admin:repair, insights:read)")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(source) = text.strip_prefix(SUPPLY_WRITE) {
            if !source.is_empty() && !source.contains(char::is_whitespace) {
                return Ok(Self::SupplyWrite(source.to_owned()));
            }
        }
        FIXED
            .iter()
            .find(|scope| scope.fixed_name() == Some(text))
            .cloned()
            .ok_or_else(|| UnknownScope(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_reads_back_from_its_name() {
        let mut all = FIXED.to_vec();
        all.push(Scope::SupplyWrite("WMS-A".into()));
        for scope in all {
            assert_eq!(scope.to_string().parse::<Scope>(), Ok(scope));
        }
    }

    #[test]
    fn a_feed_scope_names_one_source() {
        for bad in [
            "supply:write:",
            "supply:write",
            "supply:write:A B",
            "admin:*",
            "Reserve",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
    }
}

//! The caller of one request: the credential that authenticated it and what it may do.

use std::sync::Arc;

use super::scope::Scope;

/// What an RPC needs of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Health checking and reflection: no credential.
    Nothing,
    Scope(Scope),
    /// A feed call: some `supply:write:<source>`; each batch is then checked against its own
    /// source.
    AnyFeed,
}

/// An authenticated caller; cheap to clone (one per request goes into its extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(Arc<Credential>);

#[derive(Debug, PartialEq, Eq)]
struct Credential {
    /// The credential id: an API key's or client certificate's configured id, a token's `sub`.
    id: String,
    scopes: Vec<Scope>,
    /// Holds every scope and feeds every source: only when authentication is off.
    unrestricted: bool,
}

impl Caller {
    pub fn new(id: impl Into<String>, scopes: Vec<Scope>) -> Self {
        Self(Arc::new(Credential {
            id: id.into(),
            scopes,
            unrestricted: false,
        }))
    }

    /// Everyone, when the service runs with `--insecure-no-auth`.
    pub fn anonymous() -> Self {
        Self(Arc::new(Credential {
            id: String::new(),
            scopes: Vec::new(),
            unrestricted: true,
        }))
    }

    pub fn id(&self) -> &str {
        &self.0.id
    }

    pub fn has(&self, scope: &Scope) -> bool {
        self.0.unrestricted || self.0.scopes.contains(scope)
    }

    pub fn may(&self, need: &Need) -> bool {
        match need {
            Need::Nothing => true,
            Need::Scope(scope) => self.has(scope),
            Need::AnyFeed => {
                self.0.unrestricted
                    || self
                        .0
                        .scopes
                        .iter()
                        .any(|s| matches!(s, Scope::SupplyWrite(_)))
            }
        }
    }

    /// May send batches as `source_id`.
    pub fn may_feed(&self, source_id: &str) -> bool {
        self.has(&Scope::SupplyWrite(source_id.to_owned()))
    }

    /// May change or read a reservation `owner` made: its owner, or an operator. A reservation
    /// made without an owner (authentication off, or before owners were recorded) is an
    /// operator's.
    pub fn may_act_for(&self, owner: &str) -> bool {
        (!owner.is_empty() && owner == self.0.id) || self.has(&Scope::AdminRepair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_credential_feeds_its_own_source_only() {
        let feed = Caller::new("wms-a", vec![Scope::SupplyWrite("WMS-A".into())]);
        assert!(feed.may(&Need::AnyFeed));
        assert!(feed.may_feed("WMS-A"));
        assert!(!feed.may_feed("WMS-B"));
        assert!(!feed.may(&Need::Scope(Scope::Reserve)));
    }

    #[test]
    fn a_reservation_is_its_owners_or_an_operators() {
        let checkout = Caller::new("checkout", vec![Scope::Reserve]);
        let operator = Caller::new("ops", vec![Scope::AdminRepair]);
        assert!(checkout.may_act_for("checkout"));
        assert!(!checkout.may_act_for("oms"));
        assert!(!checkout.may_act_for(""));
        assert!(operator.may_act_for("checkout") && operator.may_act_for(""));
        assert!(Caller::anonymous().may_act_for("checkout"));
    }
}

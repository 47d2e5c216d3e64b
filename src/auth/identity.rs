//! Who a request comes from: the credential that authenticated it and what it may do.

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

/// The actor the audit trail names when authentication is off.
pub const ANONYMOUS_ACTOR: &str = "anonymous";

/// An authenticated credential; cheap to clone (one per request goes into its extensions, and
/// from there into the request's `app::Caller`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity(Arc<Credential>);

#[derive(Debug, PartialEq, Eq)]
struct Credential {
    /// The credential id: an API key's or client certificate's configured id, a token's `sub`.
    id: String,
    scopes: Vec<Scope>,
    /// Holds every scope and feeds every source: only when authentication is off.
    unrestricted: bool,
}

impl Identity {
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

    /// The service itself, for a change one of its own loops makes (`system:expiry`): no
    /// credential and no scopes.
    pub fn system(loop_name: &str) -> Self {
        Self::new(format!("system:{loop_name}"), Vec::new())
    }

    /// The credential id; empty for [`Identity::anonymous`]. A reservation records it as its
    /// owner.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// Who the audit trail says made a change: the credential id, or [`ANONYMOUS_ACTOR`] when
    /// authentication is off.
    pub fn actor(&self) -> &str {
        if self.0.unrestricted {
            ANONYMOUS_ACTOR
        } else {
            &self.0.id
        }
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
        let feed = Identity::new("wms-a", vec![Scope::SupplyWrite("WMS-A".into())]);
        assert!(feed.may(&Need::AnyFeed));
        assert!(feed.may_feed("WMS-A"));
        assert!(!feed.may_feed("WMS-B"));
        assert!(!feed.may(&Need::Scope(Scope::Reserve)));
    }

    #[test]
    fn a_reservation_is_its_owners_or_an_operators() {
        let checkout = Identity::new("checkout", vec![Scope::Reserve]);
        let operator = Identity::new("ops", vec![Scope::AdminRepair]);
        assert!(checkout.may_act_for("checkout"));
        assert!(!checkout.may_act_for("oms"));
        assert!(!checkout.may_act_for(""));
        assert!(operator.may_act_for("checkout") && operator.may_act_for(""));
        assert!(Identity::anonymous().may_act_for("checkout"));
    }

    #[test]
    fn the_audit_trail_names_the_credential_or_anonymous() {
        assert_eq!(Identity::new("checkout", Vec::new()).actor(), "checkout");
        assert_eq!(Identity::anonymous().actor(), ANONYMOUS_ACTOR);
        assert_eq!(Identity::anonymous().id(), "", "owns nothing");
        let expiry = Identity::system("expiry");
        assert_eq!(expiry.actor(), "system:expiry");
        assert!(!expiry.may(&Need::Scope(Scope::Reserve)));
    }
}

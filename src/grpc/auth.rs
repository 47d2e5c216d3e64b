//! Authentication and authorisation of every call, default deny: a tower layer in front of the
//! services authenticates the caller (`auth`), checks the one scope its method needs (health
//! checking and reflection need none; a method missing from the table is refused to everyone)
//! and puts the [`Identity`] into the request's extensions, where a handler finds it as its
//! [`Caller`] (`grpc::caller`). Handlers then check what depends on the message: a feed
//! batch's source, a reservation's owner. Unauthenticated is
//! UNAUTHENTICATED, unauthorised PERMISSION_DENIED, and neither reaches a handler's write.
//! Each refusal is logged (target `promised::security`) without the credential itself.

use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_util::either::Either;
use tonic::codegen::http;
use tonic::{Request, Status};
use tower::{Layer, Service};

use crate::app::{App, Caller};
use crate::auth::{Authenticator, Identity, Need, Scope};
use crate::connections::Peer;

/// How callers are admitted.
#[derive(Debug)]
pub enum Authentication {
    /// `--insecure-no-auth`: every caller may do everything, as one anonymous credential.
    Insecure,
    Verify(Arc<Authenticator>),
}

/// What a method needs; `None` for a method not in the table, which nobody may call.
pub fn need(path: &str) -> Option<Need> {
    use Scope::*;
    if path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        return Some(Need::Nothing);
    }
    let (service, method) = path.strip_prefix("/promised.v1.")?.split_once('/')?;
    Some(match (service, method) {
        ("Availability", "GetAvailability" | "WatchAvailability") => Need::Scope(AvailabilityRead),
        ("Availability", "Explain") => Need::Scope(InsightsRead),
        ("Promising", "PromiseOrder") => Need::Scope(Promise),
        ("Reservations", "Reserve" | "Update" | "Extend" | "Release" | "Get" | "Commit") => {
            Need::Scope(Reserve)
        }
        ("Routing", "RouteOrder" | "RouteOrders") => Need::Scope(Route),
        ("Supply", "StreamUpdates" | "ApplyBatch" | "BeginSync" | "SyncPart" | "CommitSync") => {
            Need::AnyFeed
        }
        ("Reservations", "WatchOrders") => Need::Scope(InsightsRead),
        ("Supply", "ListRejections")
        | ("Admin", "GetStats" | "ListAudit" | "GetPositionHistory") => Need::Scope(InsightsRead),
        ("Admin", "CheckInvariants" | "ListDeadLetters" | "DeleteDeadLetters") => {
            Need::Scope(AdminRepair)
        }
        (
            "Admin",
            "UpsertNodes"
            | "UpsertGroups"
            | "UpsertSources"
            | "UpsertServiceLevels"
            | "UpsertItems"
            | "UpsertPostalCodes"
            | "UpsertMappings"
            | "SetSafetyStock",
        ) => Need::Scope(AdminNetwork),
        _ => return None,
    })
}

fn describe(need: &Need) -> String {
    match need {
        Need::Nothing => "nothing".into(),
        Need::Scope(scope) => format!("scope {scope}"),
        Need::AnyFeed => "scope supply:write:<source>".into(),
    }
}

impl Authentication {
    /// Admits a request, putting its caller into its extensions, or answers why not.
    fn admit<B>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|value| value.as_bytes());
        let peer = request.extensions().get::<Peer>();
        if let Some(caller) = self.admit_call(request.uri().path(), authorization, peer)? {
            request.extensions_mut().insert(caller);
        }
        Ok(())
    }

    /// Who may call the gRPC `method` (its path, `/promised.v1.Service/Method`) with this
    /// `Authorization` header over this connection: `None` for a method that needs nothing, or
    /// why not. Every edge admits its calls here, by the method it ends in.
    pub fn admit_call(
        &self,
        method: &str,
        authorization: Option<&[u8]>,
        peer: Option<&Peer>,
    ) -> Result<Option<Identity>, Status> {
        let need = need(method);
        if need == Some(Need::Nothing) {
            return Ok(None);
        }
        let addr = peer.and_then(|p| p.addr);
        let caller = match self {
            Self::Insecure => Identity::anonymous(),
            Self::Verify(auth) => {
                let certificate = peer.and_then(|p| p.certificate.as_ref());
                auth.authenticate(authorization, certificate)
                    .map_err(|refusal| {
                        tracing::warn!(target: "promised::security", event = "unauthenticated",
                        reason = refusal.reason(), method, peer = ?addr);
                        Status::unauthenticated(refusal.to_string())
                    })?
            }
        };
        let Some(need) = need else {
            tracing::warn!(target: "promised::security", event = "permission_denied",
                credential = caller.id(), method, peer = ?addr, "method not in the scope table");
            return Err(Status::permission_denied(format!(
                "{method} is not open to any credential"
            )));
        };
        if !caller.may(&need) {
            tracing::warn!(target: "promised::security", event = "permission_denied",
                credential = caller.id(), method, needs = %describe(&need), peer = ?addr);
            return Err(Status::permission_denied(format!(
                "{method} needs {}",
                describe(&need)
            )));
        }
        Ok(Some(caller))
    }
}

/// The identity the layer admitted. Its absence means the layer is not installed: refused.
pub fn identity<T>(request: &Request<T>) -> Result<Identity, Status> {
    request
        .extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
}

/// A feed batch may only come from the source its credential is bound to.
pub fn check_feed(caller: &Caller, source_id: &str) -> Result<(), Status> {
    if caller.identity.may_feed(source_id) {
        return Ok(());
    }
    tracing::warn!(target: "promised::security", event = "permission_denied",
        credential = caller.identity.id(), source = source_id, "batch for a source the credential is not bound to");
    Err(Status::permission_denied(format!(
        "this credential may not send batches as source {source_id:?} (needs scope supply:write:{source_id})"
    )))
}

/// A promise or route that also holds its plan: the caller needs the `reserve` scope as well as
/// the method's own, and the reservation id must be free or the caller's ([`check_owner`]).
pub fn check_hold(app: &App, caller: &Caller, reservation_id: &str) -> Result<(), Status> {
    let need = Need::Scope(Scope::Reserve);
    if !caller.identity.may(&need) {
        tracing::warn!(target: "promised::security", event = "permission_denied",
            credential = caller.identity.id(), needs = %describe(&need), "a hold without the reserve scope");
        return Err(Status::permission_denied(format!(
            "holding the plan needs {}",
            describe(&need)
        )));
    }
    check_owner(app, caller, reservation_id)
}

/// Only a reservation's owner (or an operator) may act on it; an id nobody holds is free, and
/// the operation itself answers NOT_FOUND where it must. Owners never change while an id is
/// remembered, so checking before the operation is checking it.
pub fn check_owner(app: &App, caller: &Caller, reservation_id: &str) -> Result<(), Status> {
    // The owner as stored, durable or not: a hold still in flight is its owner's too.
    let Some(owner) = app.reservation_owner(reservation_id) else {
        return Ok(());
    };
    if caller.identity.may_act_for(&owner) {
        return Ok(());
    }
    tracing::warn!(target: "promised::security", event = "permission_denied",
        credential = caller.identity.id(), reservation = reservation_id, "reservation of another caller");
    Err(Status::permission_denied(format!(
        "reservation {reservation_id:?} belongs to another caller"
    )))
}

/// The layer, for `Server::builder().layer(..)`.
#[derive(Debug, Clone)]
pub struct AuthLayer(Arc<Authentication>);

impl AuthLayer {
    /// The layer over an authentication it shares with the other edges.
    pub fn new(authentication: Arc<Authentication>) -> Self {
        Self(authentication)
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            authentication: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    authentication: Arc<Authentication>,
}

impl<S, B, R> Service<http::Request<B>> for Authorize<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<R>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.authentication.admit(&mut request) {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(status) => Either::Left(ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Every method of every `promised.v1` service has its entry, so a new RPC is refused
    /// until someone decides its scope.
    #[test]
    fn every_method_of_the_api_needs_a_scope() {
        let set = prost_types::FileDescriptorSet::decode(super::super::pb::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut methods = 0;
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    let need = need(&path);
                    assert!(
                        matches!(need, Some(Need::Scope(_) | Need::AnyFeed)),
                        "{path}: {need:?}"
                    );
                    methods += 1;
                }
            }
        }
        assert_eq!(methods, 33);
        assert_eq!(need("/promised.v1.Admin/DropEverything"), None);
        assert_eq!(need("/grpc.health.v1.Health/Check"), Some(Need::Nothing));
    }
}

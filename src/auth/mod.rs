//! Credential verification: who a caller is, from a bearer token (a static API key stored as
//! its SHA-256, or a JWT) or a client certificate, and which [`Scope`]s it holds. All of it is
//! configured in one credentials file (TOML). Transport-neutral: the gRPC layer
//! (`grpc::auth`) asks this module, any other edge can too.

mod cache;
mod certificate;
mod file;
mod identity;
mod jwt;
mod scope;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::clock::Clock;

pub use cache::{Digest, TokenCache, Verified};
pub use certificate::PeerCertificate;
pub use identity::{Identity, Need, ANONYMOUS_ACTOR};
pub use jwt::JwtVerifier;
pub use scope::{Scope, UnknownScope, FIXED as FIXED_SCOPES};

/// Verified tokens remembered at most; beyond that the soonest to lapse make room.
pub const TOKEN_CACHE_ENTRIES: usize = 100_000;

/// Why a request's credential was not accepted. The text is what the caller is told: it names
/// the problem, never the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no credential: send `authorization: Bearer <token>` or a client certificate")]
    NoCredential,
    #[error("the authorization header is not `Bearer <token>`")]
    BadHeader,
    #[error("unknown API key or token")]
    Unknown,
    #[error("malformed token")]
    Malformed,
    #[error("the token's signing key is not known")]
    UnknownSigningKey,
    #[error("the token's algorithm is not its key's")]
    WrongAlgorithm,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token lacks the {0} claim")]
    MissingClaim(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the client certificate names no credential")]
    UnknownCertificate,
}

impl Refusal {
    /// A short fixed name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoCredential => "no_credential",
            Self::BadHeader => "bad_header",
            Self::Unknown => "unknown_credential",
            Self::Malformed => "malformed_token",
            Self::UnknownSigningKey => "unknown_signing_key",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::BadSignature => "bad_signature",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownCertificate => "unknown_certificate",
        }
    }
}

/// The SHA-256 of a presented secret: how API keys are stored and tokens are cached.
pub fn digest(secret: &[u8]) -> Digest {
    Sha256::digest(secret).into()
}

/// The configured credentials and the cache of verified tokens.
#[derive(Debug)]
pub struct Authenticator {
    /// API keys by the SHA-256 of the key.
    api_keys: HashMap<Digest, Identity>,
    /// Client certificates by the subject name (CN or SAN) they are registered under.
    clients: HashMap<String, Identity>,
    jwt: Option<JwtVerifier>,
    cache: TokenCache,
    clock: Arc<dyn Clock>,
}

impl Authenticator {
    /// Reads the credentials file; key files it names are relative to it.
    pub fn load(path: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        file::load(path, clock)
    }

    /// Who sends `authorization` (the header's value, if any) over a connection whose client
    /// certificate is `peer` (if any). A bearer token, when present, decides.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        peer: Option<&PeerCertificate>,
    ) -> Result<Identity, Refusal> {
        match (authorization, peer) {
            (Some(header), _) => self.bearer(bearer_token(header)?),
            (None, Some(peer)) => peer
                .names()
                .iter()
                .find_map(|name| self.clients.get(name))
                .cloned()
                .ok_or(Refusal::UnknownCertificate),
            (None, None) => Err(Refusal::NoCredential),
        }
    }

    /// An API key, a token verified before and still valid, or a token verified now.
    pub fn bearer(&self, token: &str) -> Result<Identity, Refusal> {
        let digest = digest(token.as_bytes());
        if let Some(caller) = self.api_keys.get(&digest) {
            return Ok(caller.clone());
        }
        let now_ms = self.clock.now_ms();
        if let Some(caller) = self.cache.get(&digest, now_ms) {
            return Ok(caller);
        }
        let jwt = self.jwt.as_ref().ok_or(Refusal::Unknown)?;
        if token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(Refusal::Unknown);
        }
        let verified = jwt.verify(token, now_ms)?;
        let caller = verified.identity.clone();
        self.cache.insert(digest, verified);
        Ok(caller)
    }

    /// Tokens verified and remembered.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }
}

/// The token of an `authorization: Bearer <token>` header.
fn bearer_token(header: &[u8]) -> Result<&str, Refusal> {
    let text = std::str::from_utf8(header).map_err(|_| Refusal::BadHeader)?;
    let (scheme, token) = text.split_once(' ').ok_or(Refusal::BadHeader)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Refusal::BadHeader);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_headers_carry_tokens() {
        assert_eq!(bearer_token(b"Bearer abc"), Ok("abc"));
        assert_eq!(bearer_token(b"bearer  abc "), Ok("abc"));
        for bad in [&b"Basic abc"[..], b"Bearer", b"Bearer ", b"\xff"] {
            assert_eq!(bearer_token(bad), Err(Refusal::BadHeader));
        }
    }
}

//! Bearer JWTs: signature by a configured key (a JWKS file, or one HS256 secret, RS256 or ES256
//! public key), issuer and audience as configured, and validity (`exp`, `nbf`, with leeway for
//! clock skew) against the server's clock, so tests control time.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::clock::UnixMillis;

use super::cache::Verified;
use super::{Identity, Refusal, Scope};

/// The `[jwt]` table of the credentials file. Key file paths are relative to that file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// An `aud` every token must carry.
    pub audience: String,
    /// Clock skew allowed either side of `exp` and `nbf`.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Exactly one of these four.
    pub jwks_file: Option<String>,
    pub hs256_secret_file: Option<String>,
    pub rs256_public_key_file: Option<String>,
    pub es256_public_key_file: Option<String>,
}

fn default_leeway_secs() -> u64 {
    60
}

/// A token's claims as we read them; `exp` and `sub` are required, and a claim of the wrong
/// type makes the token malformed.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    nbf: Option<i64>,
    /// OAuth 2.0 scopes, space-separated (RFC 8693), ...
    #[serde(default)]
    scope: String,
    /// ... or as an array (`scp`).
    #[serde(default)]
    scp: Vec<String>,
}

#[derive(Debug)]
struct Key {
    id: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
    /// Issuer, audience and the key's one algorithm; `exp`/`nbf` are checked against the
    /// server's clock instead of the library's.
    validation: Validation,
}

#[derive(Debug)]
pub struct JwtVerifier {
    keys: Vec<Key>,
    leeway_ms: i64,
}

impl JwtVerifier {
    pub fn load(section: &JwtSection, base: &Path) -> anyhow::Result<Self> {
        let read = |file: &str| {
            let path = base.join(file);
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
        };
        let keys = match (
            &section.jwks_file,
            &section.hs256_secret_file,
            &section.rs256_public_key_file,
            &section.es256_public_key_file,
        ) {
            (Some(file), None, None, None) => jwks(&read(file)?)?,
            (None, Some(file), None, None) => {
                // A secret file usually ends with a newline that is not part of the secret.
                let secret = read(file)?;
                let secret = secret.trim_ascii_end();
                if secret.len() < 32 {
                    bail!("the HS256 secret must be at least 32 bytes");
                }
                vec![(None, Algorithm::HS256, DecodingKey::from_secret(secret)?)]
            }
            (None, None, Some(file), None) => {
                let key = DecodingKey::from_rsa_pem(&read(file)?).context("RS256 public key")?;
                vec![(None, Algorithm::RS256, key)]
            }
            (None, None, None, Some(file)) => {
                let key = DecodingKey::from_ec_pem(&read(file)?).context("ES256 public key")?;
                vec![(None, Algorithm::ES256, key)]
            }
            _ => bail!("[jwt] needs exactly one of jwks_file, hs256_secret_file, rs256_public_key_file, es256_public_key_file"),
        };
        let keys = keys
            .into_iter()
            .map(|(id, algorithm, key)| Key {
                id,
                algorithm,
                key,
                validation: validation(algorithm, section),
            })
            .collect();
        Ok(Self {
            keys,
            leeway_ms: i64::try_from(section.leeway_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        })
    }

    /// Verifies a token at `now_ms`: who it is and how long it stays good.
    pub fn verify(&self, token: &str, now_ms: UnixMillis) -> Result<Verified, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        let key = match &header.kid {
            Some(kid) => self.keys.iter().find(|k| k.id.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
        .ok_or(Refusal::UnknownSigningKey)?;
        if header.alg != key.algorithm {
            return Err(Refusal::WrongAlgorithm);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation)
            .map_err(|error| refusal(error.kind()))?
            .claims;
        let seconds_ms = |secs: i64| secs.saturating_mul(1000);
        let verified = Verified {
            valid_from_ms: claims.nbf.map_or(i64::MIN, |nbf| {
                seconds_ms(nbf).saturating_sub(self.leeway_ms)
            }),
            valid_until_ms: seconds_ms(claims.exp).saturating_add(self.leeway_ms),
            identity: Identity::new(claims.sub, scopes(&claims.scope, &claims.scp)),
        };
        if now_ms > verified.valid_until_ms {
            return Err(Refusal::Expired);
        }
        if now_ms < verified.valid_from_ms {
            return Err(Refusal::NotYetValid);
        }
        Ok(verified)
    }
}

fn validation(algorithm: Algorithm, section: &JwtSection) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[&section.issuer]);
    validation.set_audience(&[&section.audience]);
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation
}

/// The scopes a token grants; names that are not ours (an identity provider serves many
/// services) are ignored.
fn scopes(scope: &str, scp: &[String]) -> Vec<Scope> {
    scope
        .split_whitespace()
        .chain(scp.iter().map(String::as_str))
        .filter_map(|name| name.parse().ok())
        .collect()
}

fn refusal(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::InvalidSignature => Refusal::BadSignature,
        ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
        ErrorKind::InvalidAudience => Refusal::WrongAudience,
        ErrorKind::InvalidAlgorithm => Refusal::WrongAlgorithm,
        ErrorKind::MissingRequiredClaim(claim) => Refusal::MissingClaim(claim.clone()),
        _ => Refusal::Malformed,
    }
}

/// The keys of a JWKS document: RS256, ES256 (P-256) and HS256 keys, each with its `kid`.
fn jwks(bytes: &[u8]) -> anyhow::Result<Vec<(Option<String>, Algorithm, DecodingKey)>> {
    let set: JwkSet = serde_json::from_slice(bytes).context("JWKS is not valid JSON")?;
    if set.keys.is_empty() {
        bail!("JWKS has no keys");
    }
    set.keys
        .iter()
        .map(|jwk| {
            let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(KeyAlgorithm::RS256), _) | (None, AlgorithmParameters::RSA(_)) => {
                    Algorithm::RS256
                }
                (Some(KeyAlgorithm::ES256), _) | (None, AlgorithmParameters::EllipticCurve(_)) => {
                    Algorithm::ES256
                }
                (Some(KeyAlgorithm::HS256), _) | (None, AlgorithmParameters::OctetKey(_)) => {
                    Algorithm::HS256
                }
                (other, _) => {
                    return Err(anyhow!(
                        "JWKS key algorithm {other:?} is not accepted (RS256, ES256, HS256)"
                    ))
                }
            };
            if let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm {
                if ec.curve != EllipticCurve::P256 {
                    bail!("JWKS EC keys must be P-256 (ES256)");
                }
            }
            let key = DecodingKey::from_jwk(jwk).context("JWKS key")?;
            Ok((jwk.common.key_id.clone(), algorithm, key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const K1: &[u8] = b"k1-secret-of-at-least-thirty-two-bytes!";
    const K2: &[u8] = b"k2-another-secret-thirty-two-bytes-long";
    const JWKS: &str = r#"{"keys": [
        {"kty": "oct", "kid": "k1", "alg": "HS256", "k": "azEtc2VjcmV0LW9mLWF0LWxlYXN0LXRoaXJ0eS10d28tYnl0ZXMh"},
        {"kty": "oct", "kid": "k2", "k": "azItYW5vdGhlci1zZWNyZXQtdGhpcnR5LXR3by1ieXRlcy1sb25n"}
    ]}"#;

    /// The verifier of [`JWKS`], read from a directory of the test `tag`'s own.
    fn verifier(tag: &str) -> JwtVerifier {
        let dir = std::env::temp_dir().join(format!("promised-jwks-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("jwks.json"), JWKS).expect("write");
        let section: JwtSection = toml::from_str(
            "issuer = \"iss\"\naudience = \"aud\"\nleeway_secs = 10\njwks_file = \"jwks.json\"\n",
        )
        .expect("section");
        let verifier = JwtVerifier::load(&section, &dir).expect("loads");
        let _ = std::fs::remove_dir_all(&dir);
        verifier
    }

    fn token(kid: Option<&str>, secret: &[u8], claims: serde_json::Value) -> String {
        let header = Header {
            kid: kid.map(str::to_owned),
            ..Header::new(Algorithm::HS256)
        };
        let key = EncodingKey::from_secret(secret).expect("key");
        jsonwebtoken::encode(&header, &claims, &key).expect("signed")
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({"iss": "iss", "aud": "aud", "sub": "oms", "exp": 100,
            "nbf": 50, "scope": "route reserve other:scope", "scp": ["promise"]})
    }

    #[test]
    fn a_jwks_key_is_picked_by_kid_and_the_token_keeps_its_scopes_and_validity() {
        let verifier = verifier("valid");
        let verified = verifier
            .verify(&token(Some("k2"), K2, claims()), 60_000)
            .expect("valid");
        assert_eq!(verified.identity.id(), "oms");
        for scope in [Scope::Route, Scope::Reserve, Scope::Promise] {
            assert!(verified.identity.has(&scope), "{scope}");
        }
        assert_eq!(
            (verified.valid_from_ms, verified.valid_until_ms),
            (40_000, 110_000),
            "nbf and exp, each widened by the leeway"
        );
    }

    #[test]
    fn a_token_is_refused_for_each_thing_wrong_with_it() {
        let verifier = verifier("refused");
        let mut wrong_issuer = claims();
        wrong_issuer["iss"] = "someone".into();
        let mut no_audience = claims();
        no_audience.as_object_mut().expect("object").remove("aud");
        let mut text_expiry = claims();
        text_expiry["exp"] = "100".into();
        for (token, now_ms, refusal) in [
            (
                token(Some("k1"), K2, claims()),
                60_000,
                Refusal::BadSignature,
            ),
            (
                token(Some("k3"), K1, claims()),
                60_000,
                Refusal::UnknownSigningKey,
            ),
            (
                token(None, K1, claims()),
                60_000,
                Refusal::UnknownSigningKey,
            ),
            (
                token(Some("k1"), K1, wrong_issuer),
                60_000,
                Refusal::WrongIssuer,
            ),
            (
                token(Some("k1"), K1, no_audience),
                60_000,
                Refusal::MissingClaim("aud".into()),
            ),
            (
                token(Some("k1"), K1, text_expiry),
                60_000,
                Refusal::Malformed,
            ),
            (token(Some("k1"), K1, claims()), 110_001, Refusal::Expired),
            (
                token(Some("k1"), K1, claims()),
                39_999,
                Refusal::NotYetValid,
            ),
            ("a.b.c".into(), 60_000, Refusal::Malformed),
        ] {
            assert_eq!(verifier.verify(&token, now_ms).map(|_| ()), Err(refusal));
        }
    }
}

//! Webhook deliveries of supply batches, as integration platforms send them: signed with a
//! per-source shared secret when the network file gives the source one (HMAC-SHA256 of the
//! raw body, hex, in `X-Promised-Signature: sha256=<hex>`), and retried with the same
//! `Idempotency-Key`, which answers the original result instead of applying again.
//!
//! Remembered answers live in memory, at most [`REMEMBERED`] of them (the oldest forgotten
//! first); a delivery retried after a restart or past that still applies at most once,
//! because its key is also its batch sequence when the body has none, and the core answers
//! a sequence it already applied as a duplicate.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use prost_reflect::{DynamicMessage, Value};
use sha2::{Digest, Sha256};
use tonic::Status;

/// The header carrying a delivery's signature.
pub const SIGNATURE_HEADER: &str = "x-promised-signature";
/// The header naming a delivery, the same on every retry of it.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// How many delivered answers are remembered for redelivery.
pub const REMEMBERED: usize = 10_000;
/// Longest idempotency key accepted.
const MAX_KEY_LEN: usize = 256;

/// Secrets by source, and the answers of recent deliveries.
#[derive(Debug, Default)]
pub struct Webhooks {
    secrets: HashMap<String, Vec<u8>>,
    delivered: Mutex<Delivered>,
}

/// Answers by (source, key), with the digest of the body that got them; `order` is oldest
/// first, for forgetting.
#[derive(Debug, Default)]
struct Delivered {
    answers: HashMap<(String, String), ([u8; 32], Vec<u8>)>,
    order: VecDeque<(String, String)>,
}

impl Webhooks {
    /// Webhooks whose sources have these secrets (source id, secret).
    pub fn new(secrets: HashMap<String, Vec<u8>>) -> Self {
        Self {
            secrets,
            delivered: Mutex::default(),
        }
    }

    /// Checks the signature of a delivery for `source_id` when the source has a secret:
    /// missing or wrong is UNAUTHENTICATED, and nothing is read further.
    pub fn verify(&self, source_id: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), Status> {
        let Some(secret) = self.secrets.get(source_id) else {
            return Ok(());
        };
        let refused = |why: &str| {
            tracing::warn!(target: "promised::security", event = "bad_signature",
                source = source_id, reason = why);
            Status::unauthenticated(format!(
                "source {source_id:?} signs its deliveries: {SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of the body> ({why})"
            ))
        };
        let signature = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| refused("no signature"))?;
        let hex = signature
            .strip_prefix("sha256=")
            .ok_or_else(|| refused("not sha256="))?;
        let sent = decode_hex(hex).ok_or_else(|| refused("not hex"))?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).map_err(|_| refused("unusable secret"))?;
        mac.update(body);
        mac.verify_slice(&sent)
            .map_err(|_| refused("signature does not match"))
    }

    /// The delivery's key, if it sent a usable one.
    pub fn key(headers: &HeaderMap) -> Result<Option<String>, Status> {
        let Some(key) = headers.get(IDEMPOTENCY_HEADER) else {
            return Ok(None);
        };
        match key.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= MAX_KEY_LEN => Ok(Some(key.to_owned())),
            _ => Err(super::error::invalid(
                "Idempotency-Key",
                format!("must be 1 to {MAX_KEY_LEN} printable characters"),
            )),
        }
    }

    /// The original answer to an earlier delivery with this key; the same key with another
    /// body is FAILED_PRECONDITION, as for a reservation id reused with another request.
    pub fn recall(
        &self,
        source_id: &str,
        key: &str,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, Status> {
        let delivered = self
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some((digest, answer)) = delivered
            .answers
            .get(&(source_id.to_owned(), key.to_owned()))
        else {
            return Ok(None);
        };
        if *digest != digest_of(body) {
            return Err(Status::failed_precondition(format!(
                "Idempotency-Key {key:?} was used for another body"
            )));
        }
        Ok(Some(answer.clone()))
    }

    /// Remembers a delivery's answer, forgetting the oldest past [`REMEMBERED`].
    pub fn remember(&self, source_id: &str, key: &str, body: &[u8], answer: &[u8]) {
        let mut delivered = self
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let id = (source_id.to_owned(), key.to_owned());
        let fresh = delivered
            .answers
            .insert(id.clone(), (digest_of(body), answer.to_vec()))
            .is_none();
        if fresh {
            delivered.order.push_back(id);
        }
        while delivered.order.len() > REMEMBERED {
            if let Some(oldest) = delivered.order.pop_front() {
                delivered.answers.remove(&oldest);
            }
        }
    }
}

/// A batch without a sequence takes a numeric key as its sequence, so a redelivery is the
/// core's duplicate even when its answer is no longer remembered.
pub fn sequence_from_key(batch: &mut DynamicMessage, key: &str) {
    let unsequenced = batch
        .get_field_by_name("seq")
        .is_some_and(|seq| seq.as_u64() == Some(0));
    if let (true, Ok(seq)) = (unsequenced, key.parse::<u64>()) {
        batch.set_field_by_name("seq", Value::U64(seq));
    }
}

fn digest_of(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signature header's value for `body` under `secret`, as a sender computes it.
#[allow(clippy::expect_used, reason = "HMAC takes a key of any length")]
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks() -> Webhooks {
        Webhooks::new(HashMap::from([("WMS".to_owned(), b"s3cret".to_vec())]))
    }

    fn signed(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, value.parse().expect("a header value"));
        headers
    }

    #[test]
    fn only_the_right_signature_passes() {
        let hooks = hooks();
        let good = sign(b"s3cret", b"{}");
        assert!(hooks.verify("WMS", &signed(&good), b"{}").is_ok());
        assert!(hooks.verify("WMS", &signed(&good), b"{ }").is_err());
        assert!(hooks.verify("WMS", &signed("sha256=zz"), b"{}").is_err());
        assert!(hooks.verify("WMS", &HeaderMap::new(), b"{}").is_err());
        assert!(
            hooks.verify("ERP", &HeaderMap::new(), b"{}").is_ok(),
            "no secret"
        );
    }

    #[test]
    fn a_key_recalls_its_answer_for_its_body_only() {
        let hooks = hooks();
        hooks.remember("WMS", "k1", b"body", b"answer");
        assert_eq!(
            hooks.recall("WMS", "k1", b"body").ok(),
            Some(Some(b"answer".to_vec()))
        );
        assert!(hooks.recall("WMS", "k1", b"other").is_err());
        assert_eq!(hooks.recall("ERP", "k1", b"body").ok(), Some(None));
    }

    #[test]
    fn the_oldest_answers_are_forgotten() {
        let hooks = hooks();
        for i in 0..=REMEMBERED {
            hooks.remember("WMS", &i.to_string(), b"b", b"a");
        }
        assert_eq!(hooks.recall("WMS", "0", b"b").ok(), Some(None));
        assert!(hooks.recall("WMS", "1", b"b").ok().flatten().is_some());
    }
}

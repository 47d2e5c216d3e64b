//! What a broker message carries, and what happens to one that cannot apply, whatever the
//! broker: a message's payload is one `promised.v1.SupplyBatch`, protobuf-encoded, or its
//! canonical JSON form when the message's `Content-Type` header says `application/json`; a
//! poison message is published to the feed's dead-letter subject or topic with why in its
//! headers.

use prost::Message as _;

use crate::domain::SupplyBatch;
use crate::grpc::pb;
use crate::http::json;

/// The header that selects the JSON form (its name matched without regard to case).
pub const CONTENT_TYPE: &str = "Content-Type";
/// The content type of the canonical JSON form.
pub const JSON: &str = "application/json";

/// Dead letters' headers: why, in a word and in a sentence, and where the message was read.
pub const REASON_HEADER: &str = "Promised-Reason";
pub const DETAIL_HEADER: &str = "Promised-Detail";
pub const SOURCE_HEADER: &str = "Promised-Source";

/// Longest detail a dead letter carries, in bytes.
const MAX_DETAIL_BYTES: usize = 512;

/// Why a message can never apply, whatever is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poison {
    /// Its payload is larger than the service's message limit.
    Oversized,
    /// Its payload is not a `SupplyBatch` in the form its headers name.
    Undecodable,
    /// Its batch names another source than the feed's.
    WrongSource,
    /// The service refused its batch as a whole (too many updates, no sequence, ...).
    Invalid,
}

impl Poison {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Undecodable => "undecodable",
            Self::WrongSource => "wrong_source",
            Self::Invalid => "invalid",
        }
    }
}

/// The batch a message carries, or why it carries none; `content_type` is the value of the
/// message's [`CONTENT_TYPE`] header, if it has one.
pub fn decode(
    content_type: Option<&str>,
    payload: &[u8],
    max_bytes: usize,
) -> Result<SupplyBatch, (Poison, String)> {
    if payload.len() > max_bytes {
        let detail = format!("{} bytes exceed the limit of {max_bytes}", payload.len());
        return Err((Poison::Oversized, detail));
    }
    let is_json = content_type.is_some_and(|value| value.starts_with(JSON));
    let batch = if is_json {
        from_json(payload)
    } else {
        pb::SupplyBatch::decode(payload).map_err(|error| error.to_string())
    };
    batch
        .map(SupplyBatch::from)
        .map_err(|detail| (Poison::Undecodable, detail))
}

/// A batch in the canonical JSON mapping, as the HTTP edge reads it.
fn from_json(payload: &[u8]) -> Result<pb::SupplyBatch, String> {
    let desc = json::POOL
        .get_message_by_name("promised.v1.SupplyBatch")
        .ok_or("the API has no SupplyBatch message")?;
    json::parse(desc, payload)
        .and_then(|message| json::to_message(&message))
        .map_err(|status| status.message().to_owned())
}

/// Why a dead letter is one and whose it is; each broker adds where it was read.
pub struct DeadLetter<'a> {
    pub poison: Poison,
    pub detail: &'a str,
    pub source: &'a str,
    /// The original message's [`CONTENT_TYPE`], kept so the letter reads as it did.
    pub content_type: Option<&'a str>,
}

impl DeadLetter<'_> {
    /// The headers every dead letter has: the original's content type, the reason, the
    /// source.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(4);
        if let Some(content_type) = self.content_type {
            headers.push((CONTENT_TYPE, content_type.to_owned()));
        }
        headers.push((REASON_HEADER, self.poison.as_str().to_owned()));
        headers.push((DETAIL_HEADER, header_text(self.detail)));
        headers.push((SOURCE_HEADER, self.source.to_owned()));
        headers
    }
}

/// `text` as a header value may hold it: one line, at most [`MAX_DETAIL_BYTES`].
fn header_text(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > MAX_DETAIL_BYTES {
        let mut end = MAX_DETAIL_BYTES;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> pb::SupplyBatch {
        pb::SupplyBatch {
            source_id: "WMS".into(),
            seq: 4,
            ..pb::SupplyBatch::default()
        }
    }

    #[test]
    fn a_batch_reads_as_protobuf_or_as_json_by_its_content_type() {
        let read = decode(None, &batch().encode_to_vec(), 1024).expect("protobuf");
        assert_eq!((read.source_id.as_str(), read.seq), ("WMS", 4));
        let body = br#"{"sourceId": "WMS", "seq": "4"}"#;
        let read = decode(Some(JSON), body, 1024).expect("JSON");
        assert_eq!((read.source_id.as_str(), read.seq), ("WMS", 4));
        let error = decode(None, body, 1024).expect_err("JSON is not protobuf");
        assert_eq!(error.0, Poison::Undecodable);
        let error = decode(None, &batch().encode_to_vec(), 3).expect_err("over the limit");
        assert_eq!(error.0, Poison::Oversized);
    }

    #[test]
    fn a_dead_letter_detail_is_one_bounded_line() {
        let detail = format!("line one\r\nline two {}", "é".repeat(600));
        let text = header_text(&detail);
        assert!(text.starts_with("line one  line two"));
        assert!(text.len() <= MAX_DETAIL_BYTES);
    }
}

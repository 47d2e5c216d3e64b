//! What a broker message carries, and what happens to one that cannot apply: a message's
//! payload is one `promised.v1.SupplyBatch`, protobuf-encoded, or its canonical JSON form when
//! the message's `Content-Type` header says `application/json`; a poison message is
//! published to the feed's dead-letter subject with why in its headers.

use async_nats::HeaderMap;
use prost::Message as _;

use crate::domain::SupplyBatch;
use crate::grpc::pb;
use crate::http::json;

/// The header that selects the JSON form.
pub const CONTENT_TYPE: &str = "Content-Type";
/// The content type of the canonical JSON form.
pub const JSON: &str = "application/json";

/// Dead letters' headers: why, in a word and in a sentence, and where the message was read.
pub const REASON_HEADER: &str = "Promised-Reason";
pub const DETAIL_HEADER: &str = "Promised-Detail";
pub const SOURCE_HEADER: &str = "Promised-Source";
pub const STREAM_HEADER: &str = "Promised-Stream";
pub const STREAM_SEQ_HEADER: &str = "Promised-Stream-Sequence";
/// JetStream's de-duplication id: a message dead-lettered again (after a crash between the
/// dead letter and its ack) is stored once.
const MSG_ID_HEADER: &str = "Nats-Msg-Id";

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

/// The batch a message carries, or why it carries none.
pub fn decode(
    headers: Option<&HeaderMap>,
    payload: &[u8],
    max_bytes: usize,
) -> Result<SupplyBatch, (Poison, String)> {
    if payload.len() > max_bytes {
        let detail = format!("{} bytes exceed the limit of {max_bytes}", payload.len());
        return Err((Poison::Oversized, detail));
    }
    let is_json = headers
        .and_then(|headers| headers.get(CONTENT_TYPE))
        .is_some_and(|value| value.as_str().starts_with(JSON));
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

/// Where a dead letter came from and why it is one.
pub struct DeadLetter<'a> {
    pub poison: Poison,
    pub detail: &'a str,
    pub source: &'a str,
    pub stream: &'a str,
    pub stream_seq: u64,
}

impl DeadLetter<'_> {
    /// The dead letter's headers: the original's content type, the reason, and its origin.
    pub fn headers(&self, original: Option<&HeaderMap>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(content_type) = original.and_then(|headers| headers.get(CONTENT_TYPE)) {
            headers.insert(CONTENT_TYPE, content_type.as_str());
        }
        headers.insert(REASON_HEADER, self.poison.as_str());
        headers.insert(DETAIL_HEADER, header_text(self.detail));
        headers.insert(SOURCE_HEADER, self.source);
        headers.insert(STREAM_HEADER, self.stream);
        headers.insert(STREAM_SEQ_HEADER, self.stream_seq.to_string());
        headers.insert(
            MSG_ID_HEADER,
            format!("{}:{}", self.stream, self.stream_seq),
        );
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
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, JSON);
        let body = br#"{"sourceId": "WMS", "seq": "4"}"#;
        let read = decode(Some(&headers), body, 1024).expect("JSON");
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

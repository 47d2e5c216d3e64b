//! The CloudEvents 1.0 envelope of every event a sink sends, and the events of a journaled
//! change. An event is one position's change (`promised.availability.changed`, subject the
//! SKU) or one reservation's (`promised.reservation.<held|updated|released|expired|committed|
//! shipped>`, subject the reservation id); its `data` is the canonical proto3 JSON of the
//! watch message (`AvailabilityChange` or `OrderChange`) cut down to that one position or
//! reservation, so it carries the change's token and cause. Its id is the watch's `event_id`:
//! the journal entry and what changed, the same on every delivery.
//!
//! Structured mode is the whole event as one JSON object (`application/cloudevents+json`);
//! binary mode puts the attributes in `ce-*` headers and the data in the body.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat};
use prost::Message;
use serde_json::{json, Value};

use crate::checkpoint::tail::EntryId;
use crate::grpc::{self, pb};
use crate::http::json::{render, POOL};
use crate::network::Network;
use crate::watch::Changes;

pub const SPEC_VERSION: &str = "1.0";
/// The content type of `data`, and of a binary-mode body.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// The content type of a structured-mode body.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
pub const AVAILABILITY_CHANGED: &str = "promised.availability.changed";

/// One event, ready for either mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    /// Unique and stable: receivers dedupe by it.
    pub id: String,
    /// `/promised/<instance>`.
    pub source: String,
    pub kind: String,
    pub subject: String,
    /// RFC 3339, UTC, milliseconds: when the change was made.
    pub time: String,
    pub time_ms: i64,
    /// Canonical proto3 JSON.
    pub data: Vec<u8>,
}

impl CloudEvent {
    /// The whole event as one JSON object (structured mode).
    pub fn structured(&self) -> Vec<u8> {
        // The data was rendered as JSON just before, so it reads back.
        let data: Value = serde_json::from_slice(&self.data).unwrap_or(Value::Null);
        let event = json!({
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.kind,
            "subject": self.subject,
            "time": self.time,
            "datacontenttype": DATA_CONTENT_TYPE,
            "data": data,
        });
        event.to_string().into_bytes()
    }

    /// The attributes as binary-mode headers (`content-type` last); the body is `data`.
    pub fn binary_headers(&self) -> [(&'static str, &str); 7] {
        [
            ("ce-specversion", SPEC_VERSION),
            ("ce-id", &self.id),
            ("ce-source", &self.source),
            ("ce-type", &self.kind),
            ("ce-subject", &self.subject),
            ("ce-time", &self.time),
            ("content-type", DATA_CONTENT_TYPE),
        ]
    }
}

/// How events are put on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Attributes as headers, data as the body.
    #[default]
    Binary,
    /// The whole event as a JSON body.
    Structured,
}

/// The events of the change at `token`, in its order: positions first, then reservations.
pub fn events(
    source: &str,
    token: EntryId,
    changes: Changes,
    network: &Arc<Network>,
) -> anyhow::Result<Vec<CloudEvent>> {
    let mut events = Vec::new();
    if let Some(change) = changes.availability {
        let message = grpc::availability_change(token, change);
        let at_ms = cause_ms(message.cause.as_ref());
        for position in &message.positions {
            let one = pb::AvailabilityChange {
                positions: vec![position.clone()],
                ..message.clone()
            };
            events.push(CloudEvent {
                id: position.event_id.clone(),
                source: source.to_owned(),
                kind: AVAILABILITY_CHANGED.to_owned(),
                subject: position.sku.clone(),
                time: rfc3339(at_ms),
                time_ms: at_ms,
                data: data("promised.v1.AvailabilityChange", &one)?,
            });
        }
    }
    if let Some(change) = changes.orders {
        let message = grpc::order_change(token, change, network);
        let at_ms = cause_ms(message.cause.as_ref());
        for event in &message.events {
            let one = pb::OrderChange {
                events: vec![event.clone()],
                ..message.clone()
            };
            let kind = event.kind().as_str_name();
            let kind = kind.trim_start_matches("ORDER_EVENT_KIND_").to_lowercase();
            let reservation = event.reservation.as_ref();
            events.push(CloudEvent {
                id: event.event_id.clone(),
                source: source.to_owned(),
                kind: format!("promised.reservation.{kind}"),
                subject: reservation
                    .map(|r| r.reservation_id.clone())
                    .unwrap_or_default(),
                time: rfc3339(at_ms),
                time_ms: at_ms,
                data: data("promised.v1.OrderChange", &one)?,
            });
        }
    }
    Ok(events)
}

fn cause_ms(cause: Option<&pb::ChangeCause>) -> i64 {
    cause
        .and_then(|cause| cause.at.as_ref())
        .map_or(0, |at| at.seconds * 1000 + i64::from(at.nanos) / 1_000_000)
}

fn rfc3339(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The message as canonical JSON; failing only if the descriptors were not built from the
/// same protos as the generated types.
fn data(name: &str, message: &impl Message) -> anyhow::Result<Vec<u8>> {
    let desc = POOL
        .get_message_by_name(name)
        .ok_or_else(|| anyhow::anyhow!("no descriptor for {name}"))?;
    render(desc, message).map_err(|status| anyhow::anyhow!("{}", status.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> CloudEvent {
        CloudEvent {
            id: "1-0:reservation:cart".into(),
            source: "/promised/test".into(),
            kind: "promised.reservation.held".into(),
            subject: "cart".into(),
            time: rfc3339(1_772_463_600_123),
            time_ms: 1_772_463_600_123,
            data: br#"{"token":"1-0"}"#.to_vec(),
        }
    }

    #[test]
    fn structured_mode_carries_every_attribute_and_the_data_as_json() {
        let value: Value = serde_json::from_slice(&event().structured()).expect("JSON");
        assert_eq!(value["specversion"], "1.0");
        assert_eq!(value["id"], "1-0:reservation:cart");
        assert_eq!(value["source"], "/promised/test");
        assert_eq!(value["type"], "promised.reservation.held");
        assert_eq!(value["subject"], "cart");
        assert_eq!(value["time"], "2026-03-02T15:00:00.123Z");
        assert_eq!(value["datacontenttype"], "application/json");
        assert_eq!(value["data"]["token"], "1-0");
    }

    #[test]
    fn binary_mode_names_the_attributes_in_ce_headers() {
        let event = event();
        let headers = event.binary_headers();
        assert!(headers.contains(&("ce-id", "1-0:reservation:cart")));
        assert!(headers.contains(&("ce-time", "2026-03-02T15:00:00.123Z")));
        assert!(headers.contains(&("content-type", "application/json")));
    }
}

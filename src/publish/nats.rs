//! The NATS JetStream sink: each event is published with an acknowledgement to
//! `<prefix>.availability.<sku>` or `<prefix>.orders.<reservation id>` (a subject per SKU
//! keeps each SKU's order for consumers that filter), with `Nats-Msg-Id` set to the event id
//! so that JetStream drops a redelivery within its duplicate window. In binary mode the
//! CloudEvents attributes are `ce-*` headers and the data the payload; in structured mode the
//! payload is the whole event. An event is delivered once the stream acknowledges it.

use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use hyper::body::Bytes;

use super::cloudevents::{CloudEvent, Mode, AVAILABILITY_CHANGED, STRUCTURED_CONTENT_TYPE};
use super::settings::NatsSink;
use super::Sink;

/// The longest wait to connect; a failed connection is a failed attempt, retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One NATS server (or cluster) and its JetStream context, once connected.
pub struct Nats {
    sink: NatsSink,
    context: Option<jetstream::Context>,
}

impl Nats {
    pub fn new(sink: NatsSink) -> Self {
        Self {
            sink,
            context: None,
        }
    }

    /// The connected context, connecting (and making the stream, if one is named) first.
    async fn context(&mut self) -> Result<&jetstream::Context, String> {
        if let Some(context) = self.context.take() {
            return Ok(self.context.insert(context));
        }
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(self.sink.url.as_str())
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.sink.url))?;
        let context = jetstream::new(client);
        if let Some(name) = &self.sink.stream {
            let config = stream::Config {
                name: name.clone(),
                subjects: vec![format!("{}.>", self.sink.subject_prefix)],
                ..stream::Config::default()
            };
            context
                .get_or_create_stream(config)
                .await
                .map_err(|e| format!("making the stream {name}: {e}"))?;
        }
        Ok(self.context.insert(context))
    }

    /// The subject of `event`.
    pub fn subject(&self, event: &CloudEvent) -> String {
        let family = if event.kind == AVAILABILITY_CHANGED {
            "availability"
        } else {
            "orders"
        };
        format!(
            "{}.{family}.{}",
            self.sink.subject_prefix,
            token(&event.subject)
        )
    }
}

/// An id as one subject token: characters a subject gives meaning to (`.`, `*`, `>`,
/// whitespace) become `_`, and an empty id `_`. Two ids that differ only there share a
/// subject, which keeps both in order.
fn token(id: &str) -> String {
    if id.is_empty() {
        return "_".into();
    }
    id.chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

impl Sink for Nats {
    async fn send(&mut self, event: &CloudEvent) -> Result<(), String> {
        let subject = self.subject(event);
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, event.id.as_str());
        let payload = match self.sink.feed.mode {
            Mode::Binary => {
                for (name, value) in event.binary_headers() {
                    headers.insert(name, value);
                }
                event.data.clone()
            }
            Mode::Structured => {
                headers.insert("content-type", STRUCTURED_CONTENT_TYPE);
                event.structured()
            }
        };
        let context = self.context().await?;
        let published = context
            .publish_with_headers(subject, headers, Bytes::from(payload))
            .await;
        let acked = match published {
            Ok(ack) => ack.await.map(drop),
            Err(error) => Err(error),
        };
        acked.map_err(|e| format!("publishing: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_single_subject_tokens() {
        assert_eq!(token("SKU-1"), "SKU-1");
        assert_eq!(token("a.b*c>d e"), "a_b_c_d_e");
        assert_eq!(token(""), "_");
    }
}

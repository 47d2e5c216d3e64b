//! What the outbound sinks keep in Redis: each sink's cursor (the last journal entry whose
//! events it delivered, so that after a restart it resumes there) and its dead letters (a
//! stream of the events it gave up on, for admins to read and delete). Keys are under the
//! instance's hash tag: `{prefix}:sink:<name>:cursor` and `{prefix}:sink:<name>:dead`.

use redis::streams::{StreamMaxlen, StreamRangeReply};
use redis::AsyncCommands;

use super::tail::EntryId;
use super::Store;
use crate::error::{Error, Result};

/// Dead letters one sink keeps; past it the oldest are dropped (and counted in the logs).
pub const MAX_DEAD_LETTERS: usize = 100_000;

/// An event a sink gave up on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetter {
    /// The letter's stream id (empty until stored).
    pub id: String,
    pub event_id: String,
    pub kind: String,
    pub subject: String,
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: String,
    pub dead_at_ms: i64,
    /// The event as a structured-mode CloudEvent.
    pub cloud_event: String,
}

const FIELDS: [&str; 7] = [
    "event_id",
    "type",
    "subject",
    "attempts",
    "error",
    "dead_at_ms",
    "cloud_event",
];

impl Store {
    fn sink_key(&self, sink: &str, what: &str) -> String {
        format!("{}:sink:{sink}:{what}", self.keys.tag)
    }

    /// The last journal entry `sink` delivered every event of, if it ever delivered one.
    pub async fn sink_cursor(&self, sink: &str) -> anyhow::Result<Option<EntryId>> {
        let text: Option<String> = self.conn.clone().get(self.sink_key(sink, "cursor")).await?;
        text.map(|text| {
            text.parse()
                .map_err(|()| anyhow::anyhow!("sink {sink}'s cursor {text:?} is not an entry id"))
        })
        .transpose()
    }

    /// Gives `sink` a cursor at the journal's end if it has none: a new sink is sent what
    /// happens from its first start on.
    pub async fn open_sink_cursor(&self, sink: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let end = super::tail::end(&mut conn, &self.keys).await?;
        let _: Option<String> = redis::cmd("SET")
            .arg(self.sink_key(sink, "cursor"))
            .arg(end.to_string())
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Records that `sink` delivered every event up to and including the entry `at`.
    pub async fn save_sink_cursor(&self, sink: &str, at: EntryId) -> anyhow::Result<()> {
        let () = self
            .conn
            .clone()
            .set(self.sink_key(sink, "cursor"), at.to_string())
            .await?;
        Ok(())
    }

    /// Keeps an event `sink` gave up on.
    pub async fn add_dead_letter(&self, sink: &str, letter: &DeadLetter) -> anyhow::Result<()> {
        let attempts = letter.attempts.to_string();
        let dead_at = letter.dead_at_ms.to_string();
        let values = [
            letter.event_id.as_str(),
            letter.kind.as_str(),
            letter.subject.as_str(),
            attempts.as_str(),
            letter.error.as_str(),
            dead_at.as_str(),
            letter.cloud_event.as_str(),
        ];
        let items: Vec<(&str, &str)> = FIELDS.into_iter().zip(values).collect();
        let _: String = self
            .conn
            .clone()
            .xadd_maxlen(
                self.sink_key(sink, "dead"),
                StreamMaxlen::Approx(MAX_DEAD_LETTERS),
                "*",
                &items,
            )
            .await?;
        Ok(())
    }

    /// Up to `limit` of `sink`'s dead letters after the letter `after` (from the oldest when
    /// `None`), and how many it holds.
    pub async fn dead_letters(
        &self,
        sink: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, u64)> {
        let key = self.sink_key(sink, "dead");
        let mut conn = self.conn.clone();
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let page: StreamRangeReply = conn
            .xrange_count(&key, &start, "+", limit)
            .await
            .map_err(|error| unreadable(&error))?;
        let total: u64 = conn.xlen(&key).await.map_err(|error| unreadable(&error))?;
        let letters = page
            .ids
            .into_iter()
            .map(|entry| {
                let text = |field: &str| entry.get::<String>(field).unwrap_or_default();
                DeadLetter {
                    event_id: text("event_id"),
                    kind: text("type"),
                    subject: text("subject"),
                    attempts: text("attempts").parse().unwrap_or_default(),
                    error: text("error"),
                    dead_at_ms: text("dead_at_ms").parse().unwrap_or_default(),
                    cloud_event: text("cloud_event"),
                    id: entry.id,
                }
            })
            .collect();
        Ok((letters, total))
    }

    /// Deletes the letters `ids` of `sink`; answers how many it held.
    pub async fn delete_dead_letters(&self, sink: &str, ids: &[String]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.conn
            .clone()
            .xdel(self.sink_key(sink, "dead"), ids)
            .await
            .map_err(|error| unreadable(&error))
    }
}

fn unreadable(error: &redis::RedisError) -> Error {
    tracing::warn!(%error, "reading or changing dead letters failed");
    Error::Unavailable("the dead letters could not be reached in Redis; retry".into())
}

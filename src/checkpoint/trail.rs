//! The audit trail, read from the journal: every journaled change carries its cause (who,
//! which operation, when, the request id), and the journal keeps entries for the audit
//! retention even after a snapshot covers them (`snapshot::trim_superseded`). Reads are bounded:
//! a page scans at most [`SCAN_LIMIT`] entries, a position's history at most
//! [`HISTORY_SCAN_LIMIT`].

use std::collections::BTreeSet;

use anyhow::{anyhow, Context};
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands;

use super::Keys;
use crate::index::{position_images, Position};
use crate::mutation::StoredRecord;
use crate::network::NodeIdx;

/// Journal entries one audit page reads at most, whatever its filters.
pub const SCAN_LIMIT: usize = 10_000;
/// Journal entries a position's history reads at most, newest first.
pub const HISTORY_SCAN_LIMIT: usize = 20_000;
/// Entries read per round trip.
const PAGE: usize = 500;
/// Distinct SKUs an entry lists; the count of positions changed is always whole.
const MAX_LISTED_SKUS: usize = 20;

/// Which entries an audit page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Journal time range in Unix milliseconds, `from` inclusive and `to` exclusive.
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub actor: Option<String>,
    pub source_id: Option<String>,
    pub sku: Option<String>,
    /// Entries to return.
    pub limit: usize,
    /// Continue after this entry id (a page's `next_after`).
    pub after: Option<String>,
}

/// One journaled change, as the audit trail reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The journal entry id (`ms-seq`, Redis's clock).
    pub id: String,
    /// Server time of the change; 0 for entries journaled before causes were recorded.
    pub at_ms: i64,
    pub actor: String,
    pub request_id: String,
    pub action: String,
    /// The feed batch, if the change was one.
    pub source_seq: Option<(String, u64)>,
    pub reservation_ids: Vec<String>,
    pub order_ids: Vec<String>,
    /// Distinct SKUs changed, at most [`MAX_LISTED_SKUS`].
    pub skus: Vec<String>,
    pub positions_changed: u32,
    pub network_changed: bool,
}

/// A page of the trail; `next_after` is set when the scan stopped before the range's end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_after: Option<String>,
}

/// One change of a position: what caused it, and the position before (when the history
/// reaches back that far) and after.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionChange {
    pub cause: AuditEntry,
    pub before: Option<Position>,
    pub after: Position,
}

/// A decoded journal entry: its trail entry and its position images.
fn decode(id: &str, bytes: &[u8]) -> anyhow::Result<(AuditEntry, Vec<(String, Position)>)> {
    let mut record = StoredRecord::decode(bytes).map_err(|e| anyhow!("journal entry {id}: {e}"))?;
    let images =
        position_images(&mut record.effects).map_err(|e| anyhow!("journal entry {id}: {e}"))?;
    let cause = record.cause.take().unwrap_or_default();
    let mut skus = BTreeSet::new();
    for (sku, _) in &images {
        if skus.len() == MAX_LISTED_SKUS {
            break;
        }
        skus.insert(sku.to_string());
    }
    let entry = AuditEntry {
        id: id.to_owned(),
        at_ms: cause.at_ms,
        actor: cause.actor,
        request_id: cause.request_id,
        action: cause.action,
        source_seq: record.source_seq.map(|(s, seq)| (s.to_owned(), seq)),
        reservation_ids: record.reservation_ids(),
        order_ids: record.order_ids(),
        skus: skus.into_iter().collect(),
        positions_changed: u32::try_from(images.len()).unwrap_or(u32::MAX),
        network_changed: record.network.is_some(),
    };
    let images = images
        .into_iter()
        .map(|(sku, position)| (sku.to_owned(), position))
        .collect();
    Ok((entry, images))
}

impl AuditQuery {
    fn admits(&self, entry: &AuditEntry, images: &[(String, Position)]) -> bool {
        let matches =
            |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        matches(&self.actor, &entry.actor)
            && self
                .source_id
                .as_deref()
                .is_none_or(|wanted| entry.source_seq.as_ref().is_some_and(|(s, _)| s == wanted))
            && self
                .sku
                .as_deref()
                .is_none_or(|wanted| images.iter().any(|(sku, _)| sku == wanted))
    }
}

/// Reads one page of journal entries: `(start, end)` are stream range bounds.
async fn read(
    conn: &mut ConnectionManager,
    keys: &Keys,
    start: &str,
    end: &str,
    newest_first: bool,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let page: StreamRangeReply = if newest_first {
        conn.xrevrange_count(&keys.journal, end, start, PAGE).await
    } else {
        conn.xrange_count(&keys.journal, start, end, PAGE).await
    }
    .context("reading the journal")?;
    page.ids
        .into_iter()
        .map(|entry| {
            let bytes: Vec<u8> = entry
                .get("r")
                .ok_or_else(|| anyhow!("journal entry {} has no record", entry.id))?;
            Ok((entry.id, bytes))
        })
        .collect()
}

/// The entries `query` asks for, oldest first, scanning at most [`SCAN_LIMIT`] entries.
pub async fn page(
    conn: &mut ConnectionManager,
    keys: &Keys,
    query: &AuditQuery,
) -> anyhow::Result<AuditPage> {
    let mut start = match &query.after {
        Some(after) => format!("({after}"),
        None => query
            .from_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms}-0")),
    };
    let end = query
        .to_ms
        .map_or_else(|| "+".to_owned(), |ms| format!("({ms}-0"));
    let mut result = AuditPage::default();
    let mut scanned = 0;
    loop {
        let entries = read(conn, keys, &start, &end, false).await?;
        let Some((last, _)) = entries.last() else {
            return Ok(result);
        };
        start = format!("({last}");
        for (id, bytes) in &entries {
            scanned += 1;
            let (entry, images) = decode(id, bytes)?;
            if query.admits(&entry, &images) {
                result.entries.push(entry);
            }
            if result.entries.len() == query.limit || scanned == SCAN_LIMIT {
                result.next_after = Some(id.clone());
                return Ok(result);
            }
        }
    }
}

/// The last `limit` changes of the position at (`sku`, `node`), newest first, and how many
/// journal entries were read for them; a change's `before` is the position as the next older
/// change left it, absent where the journal kept does not reach back that far (or the change
/// created the position).
pub async fn position_history(
    conn: &mut ConnectionManager,
    keys: &Keys,
    sku: &str,
    node: NodeIdx,
    limit: usize,
) -> anyhow::Result<(Vec<PositionChange>, usize)> {
    let mut changes: Vec<PositionChange> = Vec::new();
    let mut end = "+".to_owned();
    let mut scanned = 0;
    while scanned < HISTORY_SCAN_LIMIT {
        let entries = read(conn, keys, "-", &end, true).await?;
        let Some((last, _)) = entries.last() else {
            break;
        };
        end = format!("({last}");
        for (id, bytes) in &entries {
            scanned += 1;
            let (entry, images) = decode(id, bytes)?;
            // A record's last image of the position is what its change left there.
            let image = images
                .into_iter()
                .rev()
                .find(|(s, p)| s == sku && p.node() == node)
                .map(|(_, p)| p);
            if let Some(image) = image {
                if let Some(newer) = changes.last_mut() {
                    newer.before = Some(image.clone());
                }
                if changes.len() == limit {
                    return Ok((changes, scanned));
                }
                changes.push(PositionChange {
                    cause: entry,
                    before: None,
                    after: image,
                });
            }
            if scanned == HISTORY_SCAN_LIMIT {
                break;
            }
        }
    }
    Ok((changes, scanned))
}

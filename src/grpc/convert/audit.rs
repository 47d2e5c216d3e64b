//! The audit trail's messages: a page query checked and bounded, entries and position
//! figures out; and the outbound sinks' dead letters, paged and deleted by id.

use super::{timestamp, timestamp_ms};
use crate::checkpoint::outbox::DeadLetter;
use crate::checkpoint::trail::{AuditEntry, AuditPage, AuditQuery, PositionChange};
use crate::error::{Error, Result};
use crate::grpc::pb;
use crate::index::Position;

/// Entries a page returns when the request does not say.
const DEFAULT_PAGE: usize = 100;
/// Most entries a page returns.
const MAX_PAGE: usize = 1_000;
/// Changes a history returns when the request does not say.
const DEFAULT_HISTORY: usize = 10;
/// Most changes a history returns.
const MAX_HISTORY: usize = 100;
/// Longest filter value; ids longer than this match nothing stored.
const MAX_FILTER_LEN: usize = 256;

/// A limit of 0 means the default; above the most is refused.
fn limit(asked: u32, default: usize, max: usize) -> Result<usize> {
    match asked as usize {
        0 => Ok(default),
        n if n <= max => Ok(n),
        _ => Err(Error::invalid("limit", format!("must be at most {max}"))),
    }
}

fn filter(value: String, field: &str) -> Result<Option<String>> {
    if value.len() > MAX_FILTER_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_FILTER_LEN} bytes"),
        ));
    }
    Ok(Some(value).filter(|v| !v.is_empty()))
}

fn instant(timestamp: Option<prost_types::Timestamp>, field: &str) -> Result<Option<u64>> {
    timestamp
        .map(|t| {
            u64::try_from(timestamp_ms(&t))
                .map_err(|_| Error::invalid(field, "must not be before 1970"))
        })
        .transpose()
}

/// A stream entry id (`ms-seq`), or nothing when empty.
fn entry_id(value: String, field: &str) -> Result<Option<String>> {
    let id = filter(value, field)?;
    if let Some(id) = &id {
        let parts = id.split_once('-');
        if !parts.is_some_and(|(ms, seq)| ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok()) {
            return Err(Error::invalid(field, "must be an entry id (`ms-seq`)"));
        }
    }
    Ok(id)
}

pub fn audit_query(request: pb::ListAuditRequest) -> Result<AuditQuery> {
    let after = entry_id(request.after, "after")?;
    Ok(AuditQuery {
        from_ms: instant(request.from, "from")?,
        to_ms: instant(request.to, "to")?,
        actor: filter(request.actor, "actor")?,
        source_id: filter(request.source_id, "source_id")?,
        sku: filter(request.sku, "sku")?,
        limit: limit(request.limit, DEFAULT_PAGE, MAX_PAGE)?,
        after,
    })
}

/// Letters one delete names at most.
const MAX_DELETED: usize = 1_000;

/// A sink's name as the events-out file allows it.
fn sink(name: String) -> Result<String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(Error::invalid(
            "sink",
            "must be a sink's name: 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    Ok(name)
}

/// A page of dead letters: the sink, the letter it follows, its size.
pub fn dead_letter_query(
    request: pb::ListDeadLettersRequest,
) -> Result<(String, Option<String>, usize)> {
    Ok((
        sink(request.sink)?,
        entry_id(request.after_id, "after_id")?,
        limit(request.limit, DEFAULT_PAGE, MAX_PAGE)?,
    ))
}

/// The sink and the letters to delete, each a letter id.
pub fn dead_letter_ids(request: pb::DeleteDeadLettersRequest) -> Result<(String, Vec<String>)> {
    let sink = sink(request.sink)?;
    if request.ids.len() > MAX_DELETED {
        return Err(Error::invalid(
            "ids",
            format!("at most {MAX_DELETED} letters at once"),
        ));
    }
    let mut ids = Vec::with_capacity(request.ids.len());
    for (i, id) in request.ids.into_iter().enumerate() {
        match entry_id(id, &format!("ids[{i}]"))? {
            Some(id) => ids.push(id),
            None => return Err(Error::invalid(format!("ids[{i}]"), "must not be empty")),
        }
    }
    Ok((sink, ids))
}

pub fn dead_letters(letters: Vec<DeadLetter>, total: u64) -> pb::ListDeadLettersResponse {
    pb::ListDeadLettersResponse {
        letters: letters
            .into_iter()
            .map(|letter| pb::DeadLetter {
                id: letter.id,
                event_id: letter.event_id,
                r#type: letter.kind,
                subject: letter.subject,
                attempts: letter.attempts,
                error: letter.error,
                dead_at: Some(timestamp(letter.dead_at_ms)),
                cloud_event: letter.cloud_event,
            })
            .collect(),
        total,
    }
}

/// The number of changes a history request asks for.
pub fn history_limit(request: &pb::GetPositionHistoryRequest) -> Result<usize> {
    limit(request.limit, DEFAULT_HISTORY, MAX_HISTORY)
}

fn entry(entry: AuditEntry) -> pb::AuditEntry {
    let (source_id, seq) = entry.source_seq.unwrap_or_default();
    pb::AuditEntry {
        id: entry.id,
        at: Some(timestamp(entry.at_ms)),
        actor: entry.actor,
        request_id: entry.request_id,
        action: entry.action,
        source_id,
        seq,
        reservation_ids: entry.reservation_ids,
        order_ids: entry.order_ids,
        skus: entry.skus,
        positions_changed: entry.positions_changed,
        network_changed: entry.network_changed,
    }
}

pub fn audit_page(page: AuditPage) -> pb::ListAuditResponse {
    pb::ListAuditResponse {
        entries: page.entries.into_iter().map(entry).collect(),
        next_after: page.next_after.unwrap_or_default(),
    }
}

fn figures(position: &Position) -> pb::PositionFigures {
    let totals = position.totals();
    // An override is never negative, so -1 as the node default tells whether there is one.
    let safety = position.safety(-1);
    pb::PositionFigures {
        on_hand: totals.on_hand,
        reserved: totals.reserved,
        allocated: totals.allocated,
        inbound: totals.inbound,
        safety_stock_override: (safety >= 0).then_some(safety),
    }
}

pub fn position_history(changes: Vec<PositionChange>, scanned: usize) -> pb::PositionHistory {
    pb::PositionHistory {
        changes: changes
            .into_iter()
            .map(|change| pb::PositionChange {
                before: change.before.as_ref().map(figures),
                after: Some(figures(&change.after)),
                cause: Some(entry(change.cause)),
            })
            .collect(),
        entries_scanned: scanned as u64,
    }
}

//! The bounded log of rejected supply updates, newest kept, queryable by source.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::clock::UnixMillis;
use crate::domain::Rejection;

/// A rejection as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRejection {
    pub source_id: String,
    pub seq: u64,
    pub at_ms: UnixMillis,
    pub rejection: Rejection,
}

/// The most recent rejections, bounded; older ones fall off the end.
#[derive(Debug)]
pub struct RejectionLog {
    entries: Mutex<VecDeque<LoggedRejection>>,
    capacity: usize,
    /// Rejections ever logged, including those no longer held.
    total: AtomicU64,
}

impl RejectionLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            total: AtomicU64::new(0),
        }
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub(crate) fn record(
        &self,
        source_id: &str,
        seq: u64,
        at_ms: UnixMillis,
        rejections: &[Rejection],
    ) {
        if rejections.is_empty() {
            return;
        }
        self.total
            .fetch_add(rejections.len() as u64, Ordering::Relaxed);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for rejection in rejections {
            if entries.len() == self.capacity {
                entries.pop_front();
            }
            if self.capacity > 0 {
                entries.push_back(LoggedRejection {
                    source_id: source_id.to_owned(),
                    seq,
                    at_ms,
                    rejection: rejection.clone(),
                });
            }
        }
    }

    /// Up to `limit` rejections, newest first, optionally of one source only.
    pub fn recent(&self, source_id: Option<&str>, limit: usize) -> Vec<LoggedRejection> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .rev()
            .filter(|logged| source_id.is_none_or(|id| logged.source_id == id))
            .take(limit)
            .cloned()
            .collect()
    }
}

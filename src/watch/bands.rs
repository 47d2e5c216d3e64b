//! Band watches: a watcher of positions that is shown only their crossings of stock bands
//! (`promised_core::band`), each with the bands before and after, the figures and the cause.
//!
//! A band's hysteresis makes it depend on the figures before, so a watcher's bands at a token
//! must be a function of the journal up to that token, or a resumed watch would re-emit or
//! lose a crossing. A band watch therefore starts its bands at an anchor, the journal position
//! it first watched from: every position is unseen there, its first figure after the anchor
//! gives its band (a crossing from "unseen"), and each later figure moves it by
//! [`Bands::next`]. Its resume token names both the anchor and the last change delivered; a
//! resumed watch reads the journal again from the anchor, replaying the bands without
//! reporting, and reports from the token on, so it continues exactly where the first one
//! stopped. An anchor the journal no longer reaches is refused like any expired token.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::{Change, Figures, WatchFilter, Why};
use crate::band::{Band, Bands};
use crate::checkpoint::tail::EntryId;

/// Where a band watch's bands start, and the last change it delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandToken {
    pub anchor: EntryId,
    pub last: EntryId,
}

impl fmt::Display for BandToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}~{}", self.last, self.anchor)
    }
}

impl FromStr for BandToken {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (last, anchor) = text.split_once('~').ok_or(())?;
        let token = BandToken {
            anchor: anchor.parse()?,
            last: last.parse()?,
        };
        (token.anchor <= token.last).then_some(token).ok_or(())
    }
}

/// One position's change of band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BandCrossing {
    /// `None`: the position's first figure after the watch's anchor.
    pub from: Option<Band>,
    pub to: Band,
    pub figures: Figures,
}

impl BandCrossing {
    /// A restock: from OUT_OF_STOCK to a higher band.
    pub fn back_in_stock(&self) -> bool {
        self.from == Some(Band::OutOfStock) && self.to > Band::OutOfStock
    }
}

/// The crossings one journaled change made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BandChange {
    pub why: Why,
    pub crossings: Vec<BandCrossing>,
}

/// A band watcher's state: each watched position's band since the anchor.
#[derive(Debug)]
pub struct BandState {
    filter: WatchFilter,
    bands: Bands,
    /// Changes up to and including this one were delivered before: replayed, not reported.
    replay_until: EntryId,
    current: HashMap<(String, String), Band>,
}

impl BandState {
    /// A watcher's bands from its anchor; `resume` replays up to its last token.
    pub fn new(filter: WatchFilter, bands: Bands, resume: Option<BandToken>) -> Self {
        Self {
            filter,
            bands,
            replay_until: resume.map(|r| r.last).unwrap_or_default(),
            current: HashMap::new(),
        }
    }

    /// Moves the bands of the positions `change` touched; the crossings to report, if any.
    pub fn take(&mut self, id: EntryId, change: &Change) -> Option<BandChange> {
        let mut crossings = Vec::new();
        for figures in &change.positions {
            if !self.filter.admits(&figures.sku, &figures.node_id) {
                continue;
            }
            let key = (figures.sku.clone(), figures.node_id.clone());
            let from = self.current.get(&key).copied();
            let to = match from {
                Some(band) => self.bands.next(band, figures.atp),
                None => self.bands.of(figures.atp),
            };
            self.current.insert(key, to);
            if from != Some(to) {
                crossings.push(BandCrossing {
                    from,
                    to,
                    figures: figures.clone(),
                });
            }
        }
        (id > self.replay_until && !crossings.is_empty()).then(|| BandChange {
            why: change.why.clone(),
            crossings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Totals;

    fn change(atp: i64) -> Change {
        Change {
            why: Why::default(),
            positions: vec![Figures {
                sku: "SKU-1".into(),
                node_id: "DC-1".into(),
                atp,
                safety_stock: 0,
                totals: Totals::default(),
            }],
            network_changed: false,
            reservations: Vec::new(),
        }
    }

    fn id(seq: u64) -> EntryId {
        format!("1000-{seq}").parse().expect("an entry id")
    }

    /// The crossings a watcher reports of `figures`, one change each, after `resume`.
    fn reported(figures: &[i64], resume: Option<BandToken>) -> Vec<(u64, Option<Band>, Band)> {
        let bands = Bands::new(5, 2, "bands").expect("valid");
        let mut state = BandState::new(WatchFilter::default(), bands, resume);
        let mut out = Vec::new();
        for (seq, &atp) in (1..).zip(figures) {
            if let Some(told) = state.take(id(seq), &change(atp)) {
                out.extend(told.crossings.iter().map(|c| (seq, c.from, c.to)));
            }
        }
        out
    }

    #[test]
    fn a_band_watch_reports_a_first_sight_then_only_crossings() {
        use Band::*;
        assert_eq!(
            reported(&[10, 5, 6, 7, 0, 3, 9], None),
            [
                (1, None, InStock),
                (2, Some(InStock), Low),
                (5, Some(Low), OutOfStock),
                (6, Some(OutOfStock), Low),
                (7, Some(Low), InStock),
            ]
        );
    }

    /// Whatever token it resumes after, a resumed watch reports exactly what the first one
    /// reported after that token, even when the figure sat inside a margin at the token.
    #[test]
    fn a_resumed_band_watch_continues_exactly_where_the_first_stopped() {
        let figures = [10, 5, 6, 7, 0, 3, 9, 7, 6, 8, 1];
        let whole = reported(&figures, None);
        for last in 0..=figures.len() as u64 {
            let resume = BandToken {
                anchor: EntryId::default(),
                last: if last == 0 {
                    EntryId::default()
                } else {
                    id(last)
                },
            };
            let after: Vec<_> = whole.iter().filter(|r| r.0 > last).cloned().collect();
            assert_eq!(reported(&figures, Some(resume)), after, "after {last}");
        }
    }

    #[test]
    fn a_band_token_names_its_last_change_and_its_anchor() {
        let token = BandToken {
            anchor: id(1),
            last: id(7),
        };
        assert_eq!(token.to_string(), "1000-7~1000-1");
        assert_eq!("1000-7~1000-1".parse(), Ok(token));
        assert!(
            "1000-1~1000-7".parse::<BandToken>().is_err(),
            "anchor after last"
        );
        assert!("1000-7".parse::<BandToken>().is_err());
    }
}

//! Stock bands with hysteresis: what a storefront shows of a figure (OUT_OF_STOCK, LOW,
//! IN_STOCK) and when that changes. A figure enters a lower band as soon as it reaches the
//! band (OUT_OF_STOCK exactly at 0, LOW at `low_at_most`), so nothing is ever shown as more
//! available than it is; it leaves a band upwards only once it passes the band's upper
//! boundary by `margin`, so a figure wobbling around a boundary does not flap. The band after
//! a figure is a function of the band before it and the figure, nothing else.

use crate::error::FieldViolation;

/// A band a figure is shown in, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Band {
    OutOfStock,
    Low,
    InStock,
}

/// The bands' boundaries and the margin that holds a band against small rises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bands {
    /// A figure of 1 to this is LOW (0 is OUT_OF_STOCK, above is IN_STOCK); 0: no LOW band.
    low_at_most: i64,
    /// How far past a band's upper boundary a figure must rise to leave the band upwards.
    margin: i64,
}

/// A change of band, and whether it is a restock (from OUT_OF_STOCK to any higher band).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossing {
    pub from: Band,
    pub to: Band,
}

impl Crossing {
    pub fn back_in_stock(&self) -> bool {
        self.from == Band::OutOfStock && self.to > Band::OutOfStock
    }
}

/// The largest `low_at_most` or `margin` accepted: far above any stock figure, and far
/// enough below `i64::MAX` that their sum cannot overflow.
pub const MAX_THRESHOLD: i64 = 1 << 40;

impl Bands {
    /// Bands with LOW at 1 to `low_at_most` and `margin` of hysteresis; each must be 0 to
    /// [`MAX_THRESHOLD`]. `field` prefixes the names of the fields a violation names.
    pub fn new(low_at_most: i64, margin: i64, field: &str) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        for (name, value) in [("low_at_most", low_at_most), ("margin", margin)] {
            if !(0..=MAX_THRESHOLD).contains(&value) {
                violations.push(FieldViolation::new(
                    format!("{field}.{name}"),
                    format!("must be 0 to {MAX_THRESHOLD}"),
                ));
            }
        }
        if violations.is_empty() {
            Ok(Self {
                low_at_most,
                margin,
            })
        } else {
            Err(violations)
        }
    }

    /// The band of `figure` alone, without hysteresis: where a figure first seen is shown.
    pub fn of(&self, figure: i64) -> Band {
        if figure <= 0 {
            Band::OutOfStock
        } else if figure <= self.low_at_most {
            Band::Low
        } else {
            Band::InStock
        }
    }

    /// The band after `figure` when the band was `current`: down at once; up only as far as
    /// the figure passes the boundaries by the margin (possibly over several bands at once).
    pub fn next(&self, current: Band, figure: i64) -> Band {
        let plain = self.of(figure);
        if plain <= current {
            return plain;
        }
        // A rise past a boundary by the margin is a rise of `figure - margin` past it.
        self.of(figure.saturating_sub(self.margin)).max(current)
    }

    /// The crossing `figure` makes from `current`, if its band changes.
    pub fn cross(&self, current: Band, figure: i64) -> Option<Crossing> {
        let to = self.next(current, figure);
        (to != current).then_some(Crossing { from: current, to })
    }
}

#[cfg(test)]
#[path = "band_tests.rs"]
mod tests;

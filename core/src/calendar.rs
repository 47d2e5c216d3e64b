//! Working calendars of nodes and carriers: open weekdays and holidays, counted in calendar
//! days of the owner's time zone.

use std::fmt;

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;

/// A calendar day, counted in days since 1970-01-01. Which zone it is a day of is up to the
/// caller: at a node, days are in the node's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Day {
    /// The latest representable day, used as "never".
    pub const MAX: Day = Day(i32::MAX);

    const EPOCH_CE_DAYS: i32 = 719_163;

    pub fn from_date(date: NaiveDate) -> Day {
        Day(date.num_days_from_ce() - Self::EPOCH_CE_DAYS)
    }

    pub fn to_date(self) -> Option<NaiveDate> {
        NaiveDate::from_num_days_from_ce_opt(self.0.checked_add(Self::EPOCH_CE_DAYS)?)
    }

    /// Parses an ISO `YYYY-MM-DD` date.
    pub fn parse(text: &str) -> Option<Day> {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(Day::from_date)
    }

    /// The local calendar day in `zone` at the instant `unix_ms`.
    pub fn in_zone(zone: Tz, unix_ms: i64) -> Day {
        match zone.timestamp_millis_opt(unix_ms).single() {
            Some(local) => Day::from_date(local.date_naive()),
            // Only out-of-range instants have no single mapping from UTC.
            None => Day(unix_ms.div_euclid(86_400_000) as i32),
        }
    }

    pub fn plus(self, days: i32) -> Day {
        Day(self.0.saturating_add(days))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_date() {
            Some(date) => write!(f, "{}", date.format("%Y-%m-%d")),
            None => write!(f, "day{}", self.0),
        }
    }
}

/// Bit `n` is weekday `n`, Monday = 0.
pub const MON_TO_FRI: u8 = 0b0001_1111;
pub const EVERY_DAY: u8 = 0b0111_1111;
pub const WEEKDAY_NAMES: [&str; 7] = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// Longest stretch searched for an open day; a calendar with none in a year is refused.
const SEARCH_DAYS: i32 = 366;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    pub open_weekdays: u8,
    /// Ascending.
    pub holidays: Vec<Day>,
}

impl Default for Calendar {
    fn default() -> Self {
        Self {
            open_weekdays: MON_TO_FRI,
            holidays: Vec::new(),
        }
    }
}

/// Parses weekday names ("MON" … "SUN") into a mask; `None` names the bad one.
pub fn weekday_mask(names: &[String]) -> Result<u8, String> {
    names.iter().try_fold(0u8, |mask, name| {
        WEEKDAY_NAMES
            .iter()
            .position(|w| w.eq_ignore_ascii_case(name))
            .map(|bit| mask | (1 << bit))
            .ok_or_else(|| name.clone())
    })
}

pub fn weekday_names(mask: u8) -> Vec<String> {
    (0..7)
        .filter(|bit| mask & (1 << bit) != 0)
        .map(|bit| WEEKDAY_NAMES[bit].to_owned())
        .collect()
}

impl Calendar {
    pub fn new(open_weekdays: u8, mut holidays: Vec<Day>) -> Self {
        holidays.sort_unstable();
        holidays.dedup();
        Self {
            open_weekdays,
            holidays,
        }
    }

    pub fn is_open(&self, day: Day) -> bool {
        let weekday = day
            .to_date()
            .map_or(0, |date| date.weekday().num_days_from_monday());
        self.open_weekdays & (1 << weekday) != 0 && self.holidays.binary_search(&day).is_err()
    }

    /// The first open day at or after `day`; `None` if none within a year.
    pub fn next_open(&self, day: Day) -> Option<Day> {
        (0..SEARCH_DAYS)
            .map(|n| day.plus(n))
            .find(|d| self.is_open(*d))
    }

    /// The day `n` open days after `day` (`day` itself need not be open): 0 gives `day`.
    pub fn add_open_days(&self, day: Day, n: u32) -> Option<Day> {
        let mut at = day;
        for _ in 0..n {
            at = self.next_open(at.plus(1))?;
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Day {
        Day::parse(text).expect("date")
    }

    #[test]
    fn weekends_and_holidays_are_skipped() {
        // 2026-12-25 is a Friday.
        let calendar = Calendar::new(MON_TO_FRI, vec![day("2026-12-25")]);
        assert!(!calendar.is_open(day("2026-12-25")));
        assert_eq!(
            calendar.next_open(day("2026-12-25")),
            Some(day("2026-12-28"))
        );
        assert_eq!(
            calendar.add_open_days(day("2026-12-24"), 1),
            Some(day("2026-12-28"))
        );
        assert_eq!(
            calendar.add_open_days(day("2026-12-24"), 0),
            Some(day("2026-12-24"))
        );
        assert_eq!(Calendar::new(0, vec![]).next_open(day("2026-12-24")), None);
    }

    #[test]
    fn weekday_names_round_trip() {
        let names = vec!["mon".to_owned(), "SAT".to_owned()];
        let mask = weekday_mask(&names).expect("valid");
        assert_eq!(weekday_names(mask), ["MON", "SAT"]);
        assert_eq!(
            weekday_mask(&["FUNDAY".to_owned()]),
            Err("FUNDAY".to_owned())
        );
    }
}

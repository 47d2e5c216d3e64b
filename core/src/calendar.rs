//! Working calendars of nodes and carriers: open weekdays and holidays, counted in calendar
//! days of the owner's time zone.

use chrono::Datelike;

use crate::domain::{Day, Fulfilment, ServiceLevel};
use crate::error::FieldViolation;

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

/// Calendar settings as a file or a request states them, before validation.
/// (Unknown fields cannot be refused here: serde does not combine that with flattening.)
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct CalendarSpec {
    /// Weekday names; empty is Monday to Friday.
    #[serde(default)]
    pub open_days: Vec<String>,
    /// `YYYY-MM-DD` dates.
    #[serde(default)]
    pub holidays: Vec<String>,
}

impl CalendarSpec {
    /// The calendar, or the problems by field name (`open_days`, `holidays[i]`).
    pub fn resolve(&self, days_field: &str) -> Result<Calendar, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let open_weekdays = match weekday_mask(&self.open_days) {
            Ok(0) => MON_TO_FRI,
            Ok(mask) => mask,
            Err(bad) => {
                violations.push(FieldViolation::new(
                    days_field,
                    format!("{bad:?} is not MON..SUN"),
                ));
                0
            }
        };
        let mut holidays = Vec::new();
        for (i, text) in self.holidays.iter().enumerate() {
            match Day::parse(text) {
                Some(day) => holidays.push(day),
                None => violations.push(FieldViolation::new(
                    format!("holidays[{i}]"),
                    "not a YYYY-MM-DD date",
                )),
            }
        }
        if violations.is_empty() {
            Ok(Calendar::new(open_weekdays, holidays))
        } else {
            Err(violations)
        }
    }
}

/// A node's fulfilment settings as stated, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct FulfilmentSpec {
    #[serde(flatten)]
    pub calendar: CalendarSpec,
    /// Local `HH:MM`; empty takes orders until midnight.
    #[serde(default)]
    pub cutoff: String,
    #[serde(default)]
    pub processing_days: u32,
    #[serde(default)]
    pub daily_capacity: u32,
}

impl FulfilmentSpec {
    pub fn resolve(&self) -> Result<Fulfilment, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let calendar = self.calendar.resolve("open_days").unwrap_or_else(|v| {
            violations.extend(v);
            Calendar::default()
        });
        let cutoff_minutes = match self.cutoff.as_str() {
            "" => None,
            text => {
                let minutes = parse_cutoff(text);
                if minutes.is_none() {
                    violations.push(FieldViolation::new(
                        "cutoff",
                        format!("{text:?} is not HH:MM"),
                    ));
                }
                minutes
            }
        };
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(Fulfilment {
            calendar,
            cutoff_minutes,
            processing_days: self.processing_days,
            daily_capacity: self.daily_capacity,
        })
    }
}

/// Minutes after midnight of a `HH:MM` time.
pub fn parse_cutoff(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let (hours, minutes): (u16, u16) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60).then_some(hours * 60 + minutes)
}

pub fn cutoff_text(minutes: Option<u16>) -> String {
    minutes.map_or_else(String::new, |m| format!("{:02}:{:02}", m / 60, m % 60))
}

/// A carrier service level as stated, before validation.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ServiceLevelSpec {
    pub name: String,
    /// `[[up to km, transit days], ...]`, ascending.
    pub transit: Vec<(f64, u32)>,
    /// Pickup and delivery days and carrier holidays; weekdays default to Monday to Friday.
    #[serde(flatten)]
    pub calendar: CalendarSpec,
    #[serde(default)]
    pub base_cost: f64,
    #[serde(default)]
    pub cost_per_km: f64,
}

impl ServiceLevelSpec {
    pub fn resolve(self) -> Result<ServiceLevel, Vec<FieldViolation>> {
        let calendar = self.calendar.resolve("pickup_days")?;
        Ok(ServiceLevel {
            name: self.name,
            transit: self.transit,
            calendar,
            base_cost: self.base_cost,
            cost_per_km: self.cost_per_km,
        })
    }
}

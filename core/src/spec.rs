//! Calendars, fulfilment settings and service levels as a network file or a request states
//! them (weekday names, `HH:MM` cutoffs, transit bands), checked into the domain's types with
//! every problem named by field.

use crate::calendar::{weekday_mask, Calendar, MON_TO_FRI};
use crate::domain::{Day, Fulfilment, ServiceLevel};
use crate::error::FieldViolation;
use crate::rate_card::{kg_per, ItemAttributes, RateCard};

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
    #[serde(default)]
    pub rate_card: Option<RateCard>,
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
            rate_card: self.rate_card,
        })
    }
}

/// What an item weighs (in `weight_unit`: `kg`, `g`, `lb` or `oz`) and measures in
/// centimetres, as stated.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemSpec {
    pub sku: String,
    pub weight: f64,
    #[serde(default = "kilograms")]
    pub weight_unit: String,
    #[serde(default)]
    pub length_cm: f64,
    #[serde(default)]
    pub width_cm: f64,
    #[serde(default)]
    pub height_cm: f64,
}

fn kilograms() -> String {
    "kg".to_owned()
}

impl ItemSpec {
    /// The SKU and its attributes in kilograms; an unknown unit names `weight_unit`. The
    /// figures themselves are checked with the network's other items.
    pub fn resolve(self) -> Result<(String, ItemAttributes), Vec<FieldViolation>> {
        let Some(kg_per) = kg_per(&self.weight_unit) else {
            let problem = format!(
                "unknown weight unit {:?}: kg, g, lb or oz",
                self.weight_unit
            );
            return Err(vec![FieldViolation::new("weight_unit", problem)]);
        };
        let attributes = ItemAttributes {
            weight_kg: self.weight * kg_per,
            length_cm: self.length_cm,
            width_cm: self.width_cm,
            height_cm: self.height_cm,
        };
        Ok((self.sku, attributes))
    }
}

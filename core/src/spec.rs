//! Calendars, fulfilment settings and service levels as a network file or a request states
//! them (weekday names, `HH:MM` cutoffs, transit bands), checked into the domain's types with
//! every problem named by field.

use crate::calendar::{weekday_mask, Calendar, MON_TO_FRI};
use crate::domain::{Day, Fulfilment, Pickup, ServiceLevel};
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
        let cutoff_minutes = optional_cutoff(&self.cutoff, &mut violations);
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

/// `violations` of a nested part, their fields named under `prefix` (`pickup.hours[0].open`).
pub fn nested(prefix: &str, violations: Vec<FieldViolation>) -> Vec<FieldViolation> {
    violations
        .into_iter()
        .map(|v| FieldViolation::new(format!("{prefix}.{}", v.field), v.description))
        .collect()
}

/// Longest pick time of a store: a day.
pub const MAX_PICK_MINUTES: u32 = 24 * 60;

/// Longest transfer from a node to a store, in calendar days.
pub const MAX_TRANSFER_DAYS: u32 = 60;

/// Most nodes transferring to one store.
pub const MAX_TRANSFERS: usize = 16;

/// A store's pickup settings as stated, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PickupSpec {
    /// Opening hours by weekday; a weekday not named is closed.
    pub hours: Vec<HoursSpec>,
    #[serde(default)]
    pub pick_minutes: u32,
    /// Local `HH:MM` of the same-day cutoff; empty picks until closing.
    #[serde(default)]
    pub cutoff: String,
    #[serde(default)]
    pub transfers: Vec<TransferSpec>,
}

/// Opening hours of some weekdays, local `HH:MM`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursSpec {
    pub days: Vec<String>,
    pub open: String,
    pub close: String,
}

/// A node feeding a store, and the calendar days a transfer takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSpec {
    pub from_node_id: String,
    pub days: u32,
}

impl PickupSpec {
    /// The pickup settings, or the problems by field (`hours[i].open`, `transfers[j].days`).
    pub fn resolve(&self) -> Result<Pickup, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let mut hours = [None; 7];
        for (i, spec) in self.hours.iter().enumerate() {
            let at = |field: &str| format!("hours[{i}].{field}");
            let time = |field: &str, text: &str, violations: &mut Vec<FieldViolation>| {
                let minutes = parse_cutoff(text);
                if minutes.is_none() {
                    violations.push(FieldViolation::new(
                        at(field),
                        format!("{text:?} is not HH:MM"),
                    ));
                }
                minutes
            };
            let open = time("open", &spec.open, &mut violations);
            let close = time("close", &spec.close, &mut violations);
            if let (Some(open), Some(close)) = (open, close) {
                if open >= close {
                    violations.push(FieldViolation::new(at("close"), "must be after open"));
                }
            }
            let mask = match weekday_mask(&spec.days) {
                Ok(0) => {
                    violations.push(FieldViolation::new(at("days"), "name at least one weekday"));
                    0
                }
                Ok(mask) => mask,
                Err(bad) => {
                    violations.push(FieldViolation::new(
                        at("days"),
                        format!("{bad:?} is not MON..SUN"),
                    ));
                    0
                }
            };
            for (weekday, slot) in hours.iter_mut().enumerate() {
                if mask & (1 << weekday) == 0 {
                    continue;
                }
                if slot.is_some() {
                    violations.push(FieldViolation::new(at("days"), "a weekday has hours twice"));
                }
                *slot = open.zip(close);
            }
        }
        if self.hours.is_empty() {
            violations.push(FieldViolation::new(
                "hours",
                "a pickup store needs opening hours",
            ));
        }
        if self.pick_minutes > MAX_PICK_MINUTES {
            let problem = format!("at most {MAX_PICK_MINUTES} minutes");
            violations.push(FieldViolation::new("pick_minutes", problem));
        }
        let cutoff_minutes = optional_cutoff(&self.cutoff, &mut violations);
        if self.transfers.len() > MAX_TRANSFERS {
            let problem = format!("at most {MAX_TRANSFERS} nodes");
            violations.push(FieldViolation::new("transfers", problem));
        }
        for (j, transfer) in self.transfers.iter().enumerate() {
            if !(1..=MAX_TRANSFER_DAYS).contains(&transfer.days) {
                let problem = format!("1 to {MAX_TRANSFER_DAYS} days");
                violations.push(FieldViolation::new(format!("transfers[{j}].days"), problem));
            }
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(Pickup {
            hours,
            pick_minutes: self.pick_minutes,
            cutoff_minutes,
            transfers: self
                .transfers
                .iter()
                .map(|t| (t.from_node_id.clone(), t.days))
                .collect(),
        })
    }
}

/// A `cutoff` field: none when empty, otherwise `HH:MM` in minutes, or a violation.
fn optional_cutoff(text: &str, violations: &mut Vec<FieldViolation>) -> Option<u16> {
    if text.is_empty() {
        return None;
    }
    let minutes = parse_cutoff(text);
    if minutes.is_none() {
        violations.push(FieldViolation::new(
            "cutoff",
            format!("{text:?} is not HH:MM"),
        ));
    }
    minutes
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

//! The network configuration as bytes, for the journal and snapshots.

use super::Network;
use crate::calendar::Calendar;
use crate::clock::UnixMillis;
use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::domain::{
    parse_time_zone, Day, Fulfilment, Node, NodeGroup, NodeKind, Pickup, ServiceLevel, Source,
    SourceKind, SupplyType,
};
use crate::normalize::{SourceMapping, UnitFactor};
use crate::rate_card::{ItemAttributes, RateCard};

impl Network {
    /// Encodes the configuration (not the feeds' runtime state) for the journal and snapshots.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.var(self.version);
        w.len(self.groups.len());
        for group in &self.groups {
            w.str(&group.id);
            w.str(&group.description);
        }
        w.len(self.nodes.len());
        for node in &self.nodes {
            w.str(&node.id);
            w.u8(node.kind as u8);
            w.f64(node.lat);
            w.f64(node.lon);
            w.str(&node.postal_code);
            w.str(&node.country);
            w.str(node.time_zone.name());
            w.ivar(i64::from(node.priority));
            w.len(node.group_ids.len());
            node.group_ids.iter().for_each(|g| w.str(g));
            w.ivar(node.safety_stock);
            let fulfilment = &node.fulfilment;
            encode_calendar(&mut w, &fulfilment.calendar);
            w.var(fulfilment.cutoff_minutes.map_or(0, |m| u64::from(m) + 1));
            w.var(u64::from(fulfilment.processing_days));
            w.var(u64::from(fulfilment.daily_capacity));
        }
        w.len(self.sources.len());
        for source in &self.sources {
            let def = &source.def;
            w.str(&def.id);
            w.u8(def.kind as u8);
            w.len(def.owned_node_ids.len());
            def.owned_node_ids.iter().for_each(|n| w.str(n));
            w.len(def.owned_supply_types.len());
            def.owned_supply_types
                .iter()
                .for_each(|t| w.u8(t.index() as u8));
            w.ivar(def.stale_after_ms.unwrap_or(-1));
        }
        w.len(self.service_levels.len());
        for level in &self.service_levels {
            w.str(&level.name);
            w.len(level.transit.len());
            for (km, days) in &level.transit {
                w.f64(*km);
                w.var(u64::from(*days));
            }
            encode_calendar(&mut w, &level.calendar);
            w.f64(level.base_cost);
            w.f64(level.cost_per_km);
        }
        // In key order, so one configuration always encodes to the same bytes.
        let mut postal_codes: Vec<_> = self.postal_codes.iter().collect();
        postal_codes.sort_unstable_by(|a, b| a.0.cmp(b.0));
        w.len(postal_codes.len());
        for ((country, code), (lat, lon)) in postal_codes {
            w.str(country);
            w.str(code);
            w.f64(*lat);
            w.f64(*lon);
        }
        // Versions before normalization end here; a decoder finding nothing more reads none.
        w.len(self.mappings.len());
        self.mappings
            .values()
            .for_each(|m| encode_mapping(&mut w, &m.mapping()));
        // Versions before rate cards end here; a decoder finding nothing more reads none.
        for level in &self.service_levels {
            match &level.rate_card {
                None => w.u8(0),
                Some(card) => {
                    w.u8(1);
                    card.encode(&mut w);
                }
            }
        }
        w.len(self.items.len());
        for (sku, item) in &self.items {
            w.str(sku);
            item.encode(&mut w);
        }
        // Versions before store pickup end here; a decoder finding nothing more reads none.
        for node in &self.nodes {
            match &node.pickup {
                None => w.u8(0),
                Some(pickup) => {
                    w.u8(1);
                    encode_pickup(&mut w, pickup);
                }
            }
        }
        w.buf
    }

    /// Rebuilds a network from [`Network::encode`], through the same validation as upserts so
    /// node indices come out as they were. Every source counts as heard at `now_ms`.
    pub fn decode(bytes: &[u8], now_ms: UnixMillis) -> Decoded<Network> {
        let mut r = Reader::new(bytes);
        let version = r.var()?;
        let groups = (0..r.len()?)
            .map(|_| {
                Ok(NodeGroup {
                    id: r.str()?.to_owned(),
                    description: r.str()?.to_owned(),
                })
            })
            .collect::<Decoded<Vec<_>>>()?;
        let mut nodes = (0..r.len()?)
            .map(|_| decode_node(&mut r))
            .collect::<Decoded<Vec<_>>>()?;
        let sources = (0..r.len()?)
            .map(|_| decode_source(&mut r))
            .collect::<Decoded<Vec<_>>>()?;
        let mut levels = (0..r.len()?)
            .map(|_| decode_service_level(&mut r))
            .collect::<Decoded<Vec<_>>>()?;
        let postal = (0..r.len()?)
            .map(|_| {
                Ok((
                    (r.str()?.to_owned(), r.str()?.to_owned()),
                    (r.f64()?, r.f64()?),
                ))
            })
            .collect::<Decoded<Vec<_>>>()?;
        let mappings = if r.is_empty() {
            Vec::new()
        } else {
            (0..r.len()?)
                .map(|_| decode_mapping(&mut r))
                .collect::<Decoded<Vec<_>>>()?
        };
        let items = if r.is_empty() {
            Vec::new()
        } else {
            decode_rate_cards(&mut r, &mut levels)?;
            (0..r.len()?)
                .map(|_| Ok((r.str()?.to_owned(), ItemAttributes::decode(&mut r)?)))
                .collect::<Decoded<Vec<_>>>()?
        };
        if !r.is_empty() {
            for node in &mut nodes {
                node.pickup = match r.u8()? {
                    0 => None,
                    _ => Some(decode_pickup(&mut r)?),
                };
            }
        }
        let invalid = |_| CodecError("network fails validation");
        let network = Network::default()
            .with_groups(groups)
            .and_then(|n| n.with_nodes(nodes))
            .and_then(|n| n.with_sources(sources, now_ms))
            .and_then(|n| n.with_service_levels(levels))
            .and_then(|n| n.with_postal_codes_as_stored(postal))
            .and_then(|n| n.with_mappings_as_stored(mappings))
            .and_then(|n| n.with_items(items))
            .map_err(invalid)?;
        Ok(Network { version, ..network })
    }
}

fn decode_node(r: &mut Reader<'_>) -> Decoded<Node> {
    const KINDS: [NodeKind; 3] = [NodeKind::Dc, NodeKind::Store, NodeKind::ThirdParty];
    Ok(Node {
        id: r.str()?.to_owned(),
        kind: *KINDS
            .get(usize::from(r.u8()?))
            .ok_or(CodecError("node kind"))?,
        lat: r.f64()?,
        lon: r.f64()?,
        postal_code: r.str()?.to_owned(),
        country: r.str()?.to_owned(),
        time_zone: parse_time_zone(r.str()?).ok_or(CodecError("time zone"))?,
        priority: i32::try_from(r.ivar()?).map_err(|_| CodecError("priority"))?,
        group_ids: (0..r.len()?)
            .map(|_| r.str().map(str::to_owned))
            .collect::<Decoded<_>>()?,
        safety_stock: r.ivar()?,
        fulfilment: Fulfilment {
            calendar: decode_calendar(r)?,
            cutoff_minutes: decode_cutoff(r)?,
            processing_days: u32::try_from(r.var()?).map_err(|_| CodecError("processing days"))?,
            daily_capacity: u32::try_from(r.var()?).map_err(|_| CodecError("capacity"))?,
        },
        pickup: None,
    })
}

/// A local time of day written as minutes plus one, 0 for none.
fn decode_cutoff(r: &mut Reader<'_>) -> Decoded<Option<u16>> {
    match r.var()? {
        0 => Ok(None),
        m => u16::try_from(m - 1)
            .map(Some)
            .map_err(|_| CodecError("cutoff")),
    }
}

fn encode_pickup(w: &mut Writer, pickup: &Pickup) {
    for hours in &pickup.hours {
        match hours {
            None => w.u8(0),
            Some((open, close)) => {
                w.u8(1);
                w.var(u64::from(*open));
                w.var(u64::from(*close));
            }
        }
    }
    w.var(u64::from(pickup.pick_minutes));
    w.var(pickup.cutoff_minutes.map_or(0, |m| u64::from(m) + 1));
    w.len(pickup.transfers.len());
    for (from, days) in &pickup.transfers {
        w.str(from);
        w.var(u64::from(*days));
    }
}

fn decode_pickup(r: &mut Reader<'_>) -> Decoded<Pickup> {
    let minutes = |r: &mut Reader<'_>| u16::try_from(r.var()?).map_err(|_| CodecError("minutes"));
    let mut hours = [None; 7];
    for slot in &mut hours {
        if r.u8()? != 0 {
            *slot = Some((minutes(r)?, minutes(r)?));
        }
    }
    let pick_minutes = u32::try_from(r.var()?).map_err(|_| CodecError("pick minutes"))?;
    let cutoff_minutes = decode_cutoff(r)?;
    let transfers = (0..r.len()?)
        .map(|_| {
            let from = r.str()?.to_owned();
            let days = u32::try_from(r.var()?).map_err(|_| CodecError("transfer days"))?;
            Ok((from, days))
        })
        .collect::<Decoded<_>>()?;
    Ok(Pickup {
        hours,
        pick_minutes,
        cutoff_minutes,
        transfers,
    })
}

fn decode_source(r: &mut Reader<'_>) -> Decoded<Source> {
    const KINDS: [SourceKind; 4] = [
        SourceKind::Wms,
        SourceKind::Erp,
        SourceKind::ThirdParty,
        SourceKind::Pos,
    ];
    Ok(Source {
        id: r.str()?.to_owned(),
        kind: *KINDS
            .get(usize::from(r.u8()?))
            .ok_or(CodecError("source kind"))?,
        owned_node_ids: (0..r.len()?)
            .map(|_| r.str().map(str::to_owned))
            .collect::<Decoded<_>>()?,
        owned_supply_types: (0..r.len()?)
            .map(|_| {
                let at = usize::from(r.u8()?);
                SupplyType::ALL
                    .get(at)
                    .copied()
                    .ok_or(CodecError("supply type"))
            })
            .collect::<Decoded<_>>()?,
        stale_after_ms: Some(r.ivar()?).filter(|ms| *ms >= 0),
    })
}

fn encode_mapping(w: &mut Writer, mapping: &SourceMapping) {
    w.str(&mapping.source_id);
    for table in [&mapping.items, &mapping.locations] {
        w.len(table.len());
        for (code, target) in table {
            w.str(code);
            w.str(target);
        }
    }
    w.len(mapping.units.len());
    for (sku, factor) in &mapping.units {
        w.str(sku);
        w.var(u64::from(factor.eaches));
        w.var(u64::from(factor.units));
    }
}

fn decode_mapping(r: &mut Reader<'_>) -> Decoded<SourceMapping> {
    let source_id = r.str()?.to_owned();
    let mut table = || {
        (0..r.len()?)
            .map(|_| Ok((r.str()?.to_owned(), r.str()?.to_owned())))
            .collect::<Decoded<Vec<_>>>()
    };
    let items = table()?;
    let locations = table()?;
    // A zero factor never passes an upsert; read back, it would divide by zero.
    let factor = |r: &mut Reader<'_>| match u32::try_from(r.var()?) {
        Ok(0) | Err(_) => Err(CodecError("unit factor")),
        Ok(factor) => Ok(factor),
    };
    let units = (0..r.len()?)
        .map(|_| {
            let sku = r.str()?.to_owned();
            let eaches = factor(r)?;
            Ok((
                sku,
                UnitFactor {
                    eaches,
                    units: factor(r)?,
                },
            ))
        })
        .collect::<Decoded<Vec<_>>>()?;
    Ok(SourceMapping {
        source_id,
        items,
        locations,
        units,
    })
}

fn encode_calendar(w: &mut Writer, calendar: &Calendar) {
    w.u8(calendar.open_weekdays);
    w.len(calendar.holidays.len());
    calendar
        .holidays
        .iter()
        .for_each(|d| w.ivar(i64::from(d.0)));
}

fn decode_calendar(r: &mut Reader<'_>) -> Decoded<Calendar> {
    let open_weekdays = r.u8()?;
    let holidays = (0..r.len()?)
        .map(|_| {
            i32::try_from(r.ivar()?)
                .map(Day)
                .map_err(|_| CodecError("holiday"))
        })
        .collect::<Decoded<_>>()?;
    Ok(Calendar::new(open_weekdays, holidays))
}

fn decode_service_level(r: &mut Reader<'_>) -> Decoded<ServiceLevel> {
    let name = r.str()?.to_owned();
    let transit = (0..r.len()?)
        .map(|_| {
            Ok((
                r.f64()?,
                u32::try_from(r.var()?).map_err(|_| CodecError("transit days"))?,
            ))
        })
        .collect::<Decoded<_>>()?;
    Ok(ServiceLevel {
        name,
        transit,
        calendar: decode_calendar(r)?,
        base_cost: r.f64()?,
        cost_per_km: r.f64()?,
        rate_card: None,
    })
}

/// Each level's rate card, in the levels' order, where one is stored.
fn decode_rate_cards(r: &mut Reader<'_>, levels: &mut [ServiceLevel]) -> Decoded<()> {
    for level in levels {
        level.rate_card = match r.u8()? {
            0 => None,
            1 => Some(RateCard::decode(r)?),
            _ => return Err(CodecError("rate card")),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A network of postal codes only, added in the order of `numbers`.
    fn with_postal_codes(numbers: impl Iterator<Item = u32>) -> Network {
        let codes = numbers
            .map(|n| (("US".to_owned(), format!("{n:05}")), (40.0, -74.0)))
            .collect();
        Network::default()
            .with_postal_codes(codes)
            .expect("valid postal codes")
    }

    #[test]
    fn one_configuration_encodes_to_the_same_bytes() {
        let forward = with_postal_codes(0..50).encode();
        let backward = with_postal_codes((0..50).rev()).encode();
        assert_eq!(forward, backward, "added in another order");
        let decoded = Network::decode(&forward, 0).expect("decodes");
        assert_eq!(decoded.encode(), forward, "decoded and encoded again");
    }

    #[test]
    fn a_stored_postal_code_off_the_globe_still_decodes() {
        let code = ("CA".to_owned(), "M5V".to_owned());
        let stored = Network::default()
            .with_postal_codes_as_stored(vec![(code.clone(), (431.64, -79.39))])
            .expect("taken as stored");
        assert!(Network::default()
            .with_postal_codes(vec![(code, (431.64, -79.39))])
            .is_err());
        let decoded = Network::decode(&stored.encode(), 0).expect("written before the check");
        assert_eq!(decoded.locate("CA", "M5V"), Some((431.64, -79.39)));
    }

    #[test]
    fn rate_cards_and_items_read_back_and_older_encodings_have_none() {
        let level = ServiceLevel {
            name: "GROUND".into(),
            transit: vec![(5_000.0, 3)],
            calendar: Calendar::default(),
            base_cost: 4.0,
            cost_per_km: 0.001,
            rate_card: Some(crate::rate_card::tests::card()),
        };
        let item = ItemAttributes {
            weight_kg: 1.25,
            length_cm: 30.0,
            width_cm: 20.0,
            height_cm: 10.0,
        };
        let network = Network::default()
            .with_service_levels(vec![level.clone()])
            .and_then(|n| n.with_items(vec![("SKU-1".into(), item)]))
            .expect("valid");
        let bytes = network.encode();
        let decoded = Network::decode(&bytes, 0).expect("decodes");
        assert_eq!(decoded.service_levels(), std::slice::from_ref(&level));
        assert_eq!(decoded.item("SKU-1"), item);
        assert_eq!(decoded.encode(), bytes);

        // Before rate cards the encoding ended after the mappings.
        let flat = ServiceLevel {
            rate_card: None,
            ..level
        };
        let older = Network::default()
            .with_service_levels(vec![flat.clone()])
            .expect("valid")
            .encode();
        let cut = older.len() - 2; // one absent rate card and no items
        let decoded = Network::decode(&older[..cut], 0).expect("an older encoding");
        assert_eq!(decoded.service_levels(), [flat]);
        assert_eq!(decoded.items().count(), 0);
    }
}

use super::*;
use crate::cost::{self, Parcel};

/// Zone 1 within 500 km, zone 2 to 2,000 km; New York to New York is zone 1 by prefix.
pub(crate) fn card() -> RateCard {
    let rate = |zone, from_kg, to_kg, price| Rate {
        zone,
        from_kg,
        to_kg,
        price,
    };
    RateCard {
        zone_rules: vec![ZoneRule {
            origin_prefix: "10".into(),
            destination_prefix: "1".into(),
            zone: 1,
        }],
        zone_bands: vec![(500.0, 1), (2_000.0, 2)],
        dim_divisor: 5_000.0,
        rates: vec![
            rate(1, 0.0, 1.0, 5.0),
            rate(1, 1.0, 10.0, 8.0),
            rate(2, 0.0, 10.0, 12.0),
        ],
        transit: vec![(1, 1), (2, 3)],
        handling: vec![("NYC".into(), 0.75)],
    }
}

fn parcel(km: f64, kg: f64, cm3: f64) -> Parcel<'static> {
    Parcel {
        node_id: "CHI",
        origin_postal: "60601",
        destination_postal: "94105",
        km,
        kg,
        cm3,
    }
}

fn problems(card: &RateCard) -> Vec<String> {
    let mut violations = Vec::new();
    card.check("service_levels[0].rate_card", &mut violations);
    violations.into_iter().map(|v| v.field).collect()
}

#[test]
fn a_parcel_pays_its_zones_row_for_its_billable_weight() {
    let card = card();
    assert_eq!(
        cost::carrier_price(&card, &parcel(100.0, 0.5, 0.0)),
        Some(5.0)
    );
    assert_eq!(
        cost::carrier_price(&card, &parcel(100.0, 1.0, 0.0)),
        Some(5.0),
        "a row includes its upper weight"
    );
    assert_eq!(
        cost::carrier_price(&card, &parcel(100.0, 1.5, 0.0)),
        Some(8.0)
    );
    assert_eq!(
        cost::carrier_price(&card, &parcel(900.0, 0.5, 0.0)),
        Some(12.0)
    );
    let bulky = parcel(100.0, 0.5, 20_000.0);
    assert_eq!(cost::billable_kg(&card, bulky.kg, bulky.cm3), 4.0);
    assert_eq!(
        cost::carrier_price(&card, &bulky),
        Some(8.0),
        "dimensional weight"
    );
    assert_eq!(cost::carrier_price(&card, &parcel(100.0, 11.0, 0.0)), None);
    assert_eq!(cost::carrier_price(&card, &parcel(2_500.0, 1.0, 0.0)), None);
    assert_eq!(
        cost::zone_transit_days(&card, &parcel(900.0, 1.0, 0.0)),
        Some(3)
    );
}

#[test]
fn a_prefix_rule_wins_over_the_distance_and_handling_is_the_nodes() {
    let card = card();
    let from_nyc = Parcel {
        node_id: "NYC",
        origin_postal: "10001",
        destination_postal: "11201",
        ..parcel(900.0, 0.5, 0.0)
    };
    assert_eq!(cost::zone(&card, &from_nyc), Some(1));
    assert_eq!(cost::carrier_price(&card, &from_nyc), Some(5.75));
}

#[test]
fn a_whole_card_passes_and_each_gap_is_named() {
    assert!(problems(&card()).is_empty(), "{:?}", problems(&card()));
    let mut gap = card();
    gap.rates.retain(|r| r.from_kg != 1.0);
    gap.rates.push(Rate {
        zone: 1,
        from_kg: 2.0,
        to_kg: 10.0,
        price: 9.0,
    });
    assert_eq!(problems(&gap), ["service_levels[0].rate_card.rates"]);
    let mut no_zone = card();
    no_zone.zone_bands.push((3_000.0, 3));
    assert_eq!(
        problems(&no_zone),
        [
            "service_levels[0].rate_card.rates",
            "service_levels[0].rate_card.transit"
        ]
    );
    let mut negative = card();
    negative.rates[0].price = -1.0;
    negative.handling[0].1 = -0.5;
    assert_eq!(
        problems(&negative),
        [
            "service_levels[0].rate_card.rates[0].price",
            "service_levels[0].rate_card.handling[0].cost"
        ]
    );
}

#[test]
fn a_negative_item_weight_is_named() {
    let item = ItemAttributes {
        weight_kg: -1.0,
        ..ItemAttributes::default()
    };
    let mut violations = Vec::new();
    item.check("items[2]", &mut violations);
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "items[2].weight");
}

#[test]
fn a_card_reads_back_as_written() {
    let mut w = Writer::default();
    card().encode(&mut w);
    let decoded = RateCard::decode(&mut Reader::new(&w.buf)).expect("decodes");
    assert_eq!(decoded, card());
}

#[test]
fn weights_and_volumes_add_up_by_quantity() {
    let item = ItemAttributes {
        weight_kg: 0.5,
        length_cm: 10.0,
        width_cm: 10.0,
        height_cm: 2.0,
    };
    assert_eq!(cost::contents([(item, 3), (item, 1)]), (2.0, 800.0));
}

//! Rate cards and item attributes between protobuf and the domain. The card's tables are
//! taken as sent; the network checks them whole when the service level is upserted.

use super::pb;
use crate::error::FieldViolation;
use crate::rate_card::{ItemAttributes, Rate, RateCard, ZoneRule};
use crate::spec::ItemSpec;

impl From<pb::RateCard> for RateCard {
    fn from(card: pb::RateCard) -> Self {
        RateCard {
            zone_rules: card
                .zone_rules
                .into_iter()
                .map(|r| ZoneRule {
                    origin_prefix: r.origin_prefix,
                    destination_prefix: r.destination_prefix,
                    zone: r.zone,
                })
                .collect(),
            zone_bands: card.zone_bands.iter().map(|b| (b.max_km, b.zone)).collect(),
            dim_divisor: card.dim_divisor,
            rates: card
                .rates
                .iter()
                .map(|r| Rate {
                    zone: r.zone,
                    from_kg: r.from_kg,
                    to_kg: r.to_kg,
                    price: r.price,
                })
                .collect(),
            transit: card.transit.iter().map(|t| (t.zone, t.days)).collect(),
            handling: card
                .handling
                .into_iter()
                .map(|h| (h.node_id, h.cost))
                .collect(),
        }
    }
}

/// An item in kilograms; an empty unit is kilograms.
impl TryFrom<pb::Item> for (String, ItemAttributes) {
    type Error = Vec<FieldViolation>;

    fn try_from(item: pb::Item) -> Result<Self, Self::Error> {
        let weight_unit = match item.weight_unit.as_str() {
            "" => "kg".to_owned(),
            _ => item.weight_unit,
        };
        ItemSpec {
            sku: item.sku,
            weight: item.weight,
            weight_unit,
            length_cm: item.length_cm,
            width_cm: item.width_cm,
            height_cm: item.height_cm,
        }
        .resolve()
    }
}

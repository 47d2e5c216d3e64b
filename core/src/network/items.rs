//! What each SKU weighs and measures, for carriers that price by weight.

use super::{check_id, check_unique, Network};
use crate::error::{Error, Result};
use crate::rate_card::ItemAttributes;

impl Network {
    /// A new network with `items` (SKU, attributes) created or replaced by SKU; every one is
    /// checked before any is taken.
    pub fn with_items(&self, items: Vec<(String, ItemAttributes)>) -> Result<Network> {
        let mut violations = Vec::new();
        let skus = items.iter().map(|(sku, _)| sku.as_str());
        check_unique("items", "sku", skus, &mut violations);
        for (i, (sku, item)) in items.iter().enumerate() {
            check_id(&format!("items[{i}].sku"), sku, &mut violations);
            item.check(&format!("items[{i}]"), &mut violations);
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let mut next = self.rebuilt()?;
        next.items.extend(items);
        Ok(next)
    }

    /// What `sku` weighs and measures; nothing for an item never described.
    pub fn item(&self, sku: &str) -> ItemAttributes {
        self.items.get(sku).copied().unwrap_or_default()
    }

    /// Every described item, by SKU.
    pub fn items(&self) -> impl Iterator<Item = (&str, &ItemAttributes)> {
        self.items.iter().map(|(sku, item)| (sku.as_str(), item))
    }
}

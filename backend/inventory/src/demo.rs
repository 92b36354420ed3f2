//! A demo catalogue for a fresh shop: enough products, across the kinds a
//! small tea shop sells, to try everything (pages, the cart, stock running
//! out). Loaded into an empty catalogue only, by `shop demo-catalogue` or an
//! admin's button on the empty home page (`LoadDemoCatalogue`).

use shop_storage::{Db, Page};

use crate::domain::{Description, NewProduct, ProductName};
use crate::{InventoryError, store};

/// Name, description, price in cents, stock.
pub const PRODUCTS: &[(&str, &str, i64, i64)] = &[
    ("Sencha green tea", "A bright, grassy Japanese green tea. 100 g loose leaf.", 890, 40),
    ("Gyokuro green tea", "Shade-grown, sweet and deep. 50 g loose leaf.", 1_890, 12),
    ("Genmaicha", "Green tea with toasted rice: nutty and mild. 100 g.", 750, 35),
    ("Jasmine pearls", "Green tea rolled by hand and scented with jasmine. 50 g.", 1_290, 20),
    ("Dragon Well (Longjing)", "A flat-leaf Chinese green tea, chestnut notes. 50 g.", 1_450, 18),
    ("Darjeeling first flush", "Light, floral black tea from the spring picking. 100 g.", 1_390, 25),
    ("Assam breakfast", "Malty, strong black tea that takes milk well. 250 g.", 990, 60),
    ("Earl Grey", "Black tea with bergamot oil. 100 g loose leaf.", 820, 45),
    ("Lapsang souchong", "Smoked over pine fires; a campfire in a cup. 100 g.", 1_090, 15),
    ("Keemun", "A Chinese black tea with notes of cocoa. 100 g.", 1_150, 22),
    ("Tieguanyin oolong", "Rolled oolong, orchid-like and creamy. 50 g.", 1_590, 14),
    ("Da Hong Pao", "A roasted rock oolong from the Wuyi mountains. 50 g.", 2_290, 8),
    ("Milk oolong", "Smooth Taiwanese oolong with a buttery finish. 50 g.", 1_350, 16),
    ("Silver Needle white tea", "Only the downy buds: delicate and sweet. 30 g.", 2_490, 6),
    ("White Peony (Bai Mu Dan)", "Buds and leaves; honeyed and light. 50 g.", 1_190, 20),
    ("Aged pu-erh cake", "A 357 g cake of fermented pu-erh, earthy and smooth.", 3_900, 5),
    ("Peppermint", "Whole peppermint leaves, caffeine-free. 50 g.", 590, 50),
    ("Chamomile flowers", "Whole chamomile flowers for the evening. 50 g.", 650, 40),
    ("Rooibos", "South African red bush, naturally sweet, no caffeine. 100 g.", 690, 38),
    ("Lemon verbena", "Fresh, citrusy leaves; caffeine-free. 30 g.", 720, 3),
    ("Cast iron teapot", "0.8 l tetsubin with a stainless steel infuser.", 4_900, 7),
    ("Glass teapot", "0.6 l borosilicate glass with a glass infuser.", 2_900, 10),
    ("Kyusu side-handle teapot", "0.3 l clay teapot with a fine built-in filter.", 3_450, 4),
    ("Gaiwan", "A 150 ml porcelain lidded bowl for brewing and drinking.", 1_990, 12),
    ("Tea cups, set of two", "Small porcelain cups, 80 ml each.", 1_490, 20),
    ("Stainless steel infuser", "A fine-mesh basket that fits most mugs.", 690, 30),
    ("Tea caddy", "An airtight tin that keeps 100 g of tea fresh.", 1_190, 25),
    ("Bamboo tea scoop", "Measures a teaspoon of leaves.", 390, 0),
    ("Matcha whisk (chasen)", "A 100-prong bamboo whisk for matcha.", 1_690, 9),
    ("Ceremonial matcha", "Stone-ground first-harvest matcha. 30 g tin.", 2_690, 11),
];

/// Loads [`PRODUCTS`] into an empty catalogue; returns how many were added
/// (none when there are products already).
pub async fn load(db: &Db) -> Result<u32, InventoryError> {
    let (_, existing) = store::list(db, Page { number: 1, size: 1 }).await?;
    if existing > 0 {
        return Ok(0);
    }
    let mut added = 0;
    // Last first: the catalogue lists the newest first, so it reads in this order.
    for (name, description, price_minor, stock) in PRODUCTS.iter().rev() {
        let product = NewProduct {
            name: ProductName::parse(name)?,
            description: Description::parse(description)?,
            price_minor: *price_minor,
            stock: *stock,
        };
        store::insert(db, &product).await?;
        added += 1;
    }
    Ok(added)
}

//! A demo catalogue for a fresh shop: enough products, across the kinds a
//! small tea shop sells, to try everything (pages, categories, search, the
//! cart, stock running out), each with a picture drawn by the shop itself
//! (`demo_pictures`) and stored through the same picture pipeline as an
//! upload. Loaded into an empty catalogue only, by `shop demo-catalogue` or
//! an admin's button on the empty home page (`LoadDemoCatalogue`).

use image::{DynamicImage, Rgb};
use shop_storage::Db;

use crate::categories::CategoryName;
use crate::demo_pictures::{self, Drawing};
use crate::domain::{Description, NewImage, NewProduct, ProductName};
use crate::{InventoryError, images, store};

/// The demo categories and the colour of their pictures' backgrounds.
pub const CATEGORIES: &[(&str, [u8; 3])] = &[
    ("Green tea", [120, 170, 90]),
    ("Black tea", [150, 80, 60]),
    ("Oolong", [200, 150, 70]),
    ("White & pu-erh", [180, 160, 140]),
    ("Herbal", [110, 160, 150]),
    ("Teaware", [90, 110, 140]),
    ("Matcha", [90, 150, 60]),
];

pub struct DemoProduct {
    pub name: &'static str,
    pub description: &'static str,
    /// In cents.
    pub price_minor: i64,
    pub stock: i64,
    /// Names from [`CATEGORIES`]; the first colours the picture.
    pub categories: &'static [&'static str],
    pub drawing: Drawing,
}

const fn product(
    name: &'static str,
    description: &'static str,
    price_minor: i64,
    stock: i64,
    categories: &'static [&'static str],
    drawing: Drawing,
) -> DemoProduct {
    DemoProduct { name, description, price_minor, stock, categories, drawing }
}

use Drawing::{Cup, Leaves, Teapot, Tin};

const GREEN: &[&str] = &["Green tea"];
const BLACK: &[&str] = &["Black tea"];
const OOLONG: &[&str] = &["Oolong"];
const WHITE: &[&str] = &["White & pu-erh"];
const HERBAL: &[&str] = &["Herbal"];
const TEAWARE: &[&str] = &["Teaware"];

pub const PRODUCTS: &[DemoProduct] = &[
    product("Sencha green tea", "A bright, grassy Japanese green tea. 100 g loose leaf.", 890, 40, GREEN, Tin),
    product("Gyokuro green tea", "Shade-grown, sweet and deep. 50 g loose leaf.", 1_890, 12, GREEN, Tin),
    product("Genmaicha", "Green tea with toasted rice: nutty and mild. 100 g.", 750, 35, GREEN, Leaves),
    product("Jasmine pearls", "Green tea rolled by hand and scented with jasmine. 50 g.", 1_290, 20, GREEN, Leaves),
    product("Dragon Well (Longjing)", "A flat-leaf Chinese green tea, chestnut notes. 50 g.", 1_450, 18, GREEN, Tin),
    product(
        "Darjeeling first flush",
        "Light, floral black tea from the spring picking. 100 g.",
        1_390,
        25,
        BLACK,
        Leaves,
    ),
    product("Assam breakfast", "Malty, strong black tea that takes milk well. 250 g.", 990, 60, BLACK, Tin),
    product("Earl Grey", "Black tea with bergamot oil. 100 g loose leaf.", 820, 45, BLACK, Tin),
    product("Lapsang souchong", "Smoked over pine fires; a campfire in a cup. 100 g.", 1_090, 15, BLACK, Leaves),
    product("Keemun", "A Chinese black tea with notes of cocoa. 100 g.", 1_150, 22, BLACK, Tin),
    product("Tieguanyin oolong", "Rolled oolong, orchid-like and creamy. 50 g.", 1_590, 14, OOLONG, Leaves),
    product("Da Hong Pao", "A roasted rock oolong from the Wuyi mountains. 50 g.", 2_290, 8, OOLONG, Tin),
    product("Milk oolong", "Smooth Taiwanese oolong with a buttery finish. 50 g.", 1_350, 16, OOLONG, Leaves),
    product("Silver Needle white tea", "Only the downy buds: delicate and sweet. 30 g.", 2_490, 6, WHITE, Leaves),
    product("White Peony (Bai Mu Dan)", "Buds and leaves; honeyed and light. 50 g.", 1_190, 20, WHITE, Tin),
    product("Aged pu-erh cake", "A 357 g cake of fermented pu-erh, earthy and smooth.", 3_900, 5, WHITE, Leaves),
    product("Peppermint", "Whole peppermint leaves, caffeine-free. 50 g.", 590, 50, HERBAL, Leaves),
    product("Chamomile flowers", "Whole chamomile flowers for the evening. 50 g.", 650, 40, HERBAL, Leaves),
    product("Rooibos", "South African red bush, naturally sweet, no caffeine. 100 g.", 690, 38, HERBAL, Tin),
    product("Lemon verbena", "Fresh, citrusy leaves; caffeine-free. 30 g.", 720, 3, HERBAL, Leaves),
    product("Cast iron teapot", "0.8 l tetsubin with a stainless steel infuser.", 4_900, 7, TEAWARE, Teapot),
    product("Glass teapot", "0.6 l borosilicate glass with a glass infuser.", 2_900, 10, TEAWARE, Teapot),
    product("Kyusu side-handle teapot", "0.3 l clay teapot with a fine built-in filter.", 3_450, 4, TEAWARE, Teapot),
    product("Gaiwan", "A 150 ml porcelain lidded bowl for brewing and drinking.", 1_990, 12, TEAWARE, Cup),
    product("Tea cups, set of two", "Small porcelain cups, 80 ml each.", 1_490, 20, TEAWARE, Cup),
    product("Stainless steel infuser", "A fine-mesh basket that fits most mugs.", 690, 30, TEAWARE, Cup),
    product("Tea caddy", "An airtight tin that keeps 100 g of tea fresh.", 1_190, 25, TEAWARE, Tin),
    product("Bamboo tea scoop", "Measures a teaspoon of leaves.", 390, 0, TEAWARE, Leaves),
    product("Matcha whisk (chasen)", "A 100-prong bamboo whisk for matcha.", 1_690, 9, &["Matcha", "Teaware"], Cup),
    product(
        "Ceremonial matcha",
        "Stone-ground first-harvest matcha. 30 g tin.",
        2_690,
        11,
        &["Matcha", "Green tea"],
        Tin,
    ),
];

/// The background colour of a category's pictures.
fn colour_of(category: &str) -> Rgb<u8> {
    CATEGORIES.iter().find(|(name, _)| *name == category).map_or(Rgb([150, 150, 150]), |(_, rgb)| Rgb(*rgb))
}

/// Draws a product's picture and makes its variants (CPU work).
fn picture_of(product: &DemoProduct) -> Result<NewImage, InventoryError> {
    let category = product.categories.first().copied().unwrap_or("Teaware");
    let drawing = demo_pictures::draw(product.drawing, colour_of(category), product.name);
    let variants = images::variants_of(&DynamicImage::ImageRgb8(drawing))?;
    let alt = format!("Illustration: a {} on a {} background", product.drawing.noun(), category.to_lowercase());
    Ok(NewImage { alt: alt.replace(" & ", " and "), variants })
}

/// Loads [`PRODUCTS`] into an empty catalogue, in their categories (made
/// when missing) and with their pictures; returns how many were added
/// (none when there are products already).
pub async fn load(db: &Db) -> Result<u32, InventoryError> {
    if !store::is_empty(db).await? {
        return Ok(0);
    }
    let mut category_ids = Vec::with_capacity(CATEGORIES.len());
    for (name, _) in CATEGORIES {
        let category = store::categories::get_or_create(db, &CategoryName::parse(name)?).await?;
        category_ids.push((*name, category.id));
    }
    // Drawn and encoded on the blocking pool (it is CPU work), in two
    // halves side by side.
    let (first, second) = PRODUCTS.split_at(PRODUCTS.len() / 2);
    let draw = |products: &'static [DemoProduct]| {
        tokio::task::spawn_blocking(move || products.iter().map(picture_of).collect::<Result<Vec<_>, _>>())
    };
    let (first, second) = tokio::join!(draw(first), draw(second));
    let failed = |error| InventoryError::Internal(format!("drawing the demo pictures failed: {error}"));
    let mut pictures = first.map_err(failed)??;
    pictures.extend(second.map_err(failed)??);
    let mut added = 0;
    // Last first: the catalogue lists the newest first, so it reads in this order.
    for (demo, picture) in PRODUCTS.iter().zip(&pictures).rev() {
        let product = NewProduct {
            name: ProductName::parse(demo.name)?,
            description: Description::parse(demo.description)?,
            price_minor: demo.price_minor,
            stock: demo.stock,
            category_ids: demo
                .categories
                .iter()
                .filter_map(|name| category_ids.iter().find(|(n, _)| n == name).map(|(_, id)| *id))
                .collect(),
        };
        store::insert(db, &product, Some(picture)).await?;
        added += 1;
    }
    Ok(added)
}

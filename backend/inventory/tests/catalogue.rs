//! Categories, search and pictures through a real tonic client, on SQLite
//! and PostgreSQL.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use shop_grpc::identity::{Caller, Signed};
use shop_grpc::rich_error::{self, ErrorReason};
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::inventory::v1::*;
use shop_storage::sqlx;
use shop_testkit::{
    Backend, Running, TestDb, admin, assert_refused, connect, identity, loopback, on_both_backends, sign_as,
};
use tonic::Code;
use tonic::codegen::tokio_stream;

struct Inventory {
    client: InventoryServiceClient<Signed>,
    url: String,
    db: TestDb,
    _server: Running,
}

async fn start(backend: Backend) -> Inventory {
    let db = TestDb::new(backend, &shop_inventory::MIGRATIONS).await;
    let (listener, url) = loopback().await;
    let service = shop_inventory::InventoryService::new(db.db.clone()).with_identity(identity()).into_server();
    let server = Running::spawn(|shutdown| async move {
        shop_grpc::serve(listener, service, shutdown).await.expect("the inventory service runs");
    });
    let client = InventoryServiceClient::with_interceptor(connect(&url).await, sign_as(admin()));
    Inventory { client, url, db, _server: server }
}

impl Inventory {
    async fn customer(&self) -> InventoryServiceClient<Signed> {
        InventoryServiceClient::with_interceptor(
            connect(&self.url).await,
            sign_as(Caller::User { id: 5, admin: false }),
        )
    }

    async fn count(&self, sql: &str) -> i64 {
        let (count,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&self.db.db.pool).await.expect("a count");
        count
    }

    async fn product(
        &mut self,
        name: &str,
        description: &str,
        price_minor: i64,
        stock: i64,
        categories: &[i64],
    ) -> Product {
        let request = CreateProductRequest {
            name: name.into(),
            description: description.into(),
            price_minor,
            stock,
            category_ids: categories.to_vec(),
        };
        self.client.create_product(request).await.expect("a product").into_inner().product.expect("a product")
    }

    async fn category(&mut self, name: &str) -> Category {
        let created = self.client.create_category(CreateCategoryRequest { name: name.into() }).await;
        created.expect("a category").into_inner().category.expect("a category")
    }

    async fn search(&mut self, request: ListProductsRequest) -> ListProductsResponse {
        self.client.list_products(request).await.expect("a page").into_inner()
    }

    async fn names(&mut self, request: ListProductsRequest) -> Vec<String> {
        self.search(request).await.products.into_iter().map(|p| p.name).collect()
    }
}

fn query(text: &str) -> ListProductsRequest {
    ListProductsRequest { query: text.into(), ..Default::default() }
}

async fn search_ranks_names_first_matches_prefixes_and_corrects_typos(backend: Backend) {
    let mut inventory = start(backend).await;
    inventory.product("Matcha bowl", "For whisking green powdered tea.", 2_000, 3, &[]).await;
    inventory.product("Sencha green tea", "Grassy and bright.", 890, 40, &[]).await;
    inventory.product("Earl Grey", "Black tea with bergamot.", 820, 45, &[]).await;
    inventory.product("Cast iron teapot", "Holds 0.8 l.", 4_900, 7, &[]).await;
    inventory.product("Glass teapot", "Shows the leaves unfurl.", 2_900, 0, &[]).await;

    let green = inventory.search(query("green")).await;
    let names: Vec<&str> = green.products.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Sencha green tea", "Matcha bowl"], "a word of the name before one of the description");
    assert_eq!((green.total, green.searched_for.as_str()), (2, ""));

    assert_eq!(inventory.names(query("sench")).await, ["Sencha green tea"], "a prefix matches");
    assert_eq!(inventory.names(query("GREEN Sen")).await, ["Sencha green tea"], "every word must match");
    let tea = inventory.names(query("tea")).await;
    assert_eq!(tea.first().map(String::as_str), Some("Sencha green tea"), "a whole word of the name first: {tea:?}");
    assert_eq!(tea.len(), 5, "'tea' begins 'teapot'");

    let earl = inventory.search(query("earl gery")).await;
    assert_eq!(earl.products.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["Earl Grey"]);
    assert_eq!(earl.searched_for, "earl grey");
    let teapots = inventory.search(query("tepot")).await;
    assert_eq!(teapots.total, 2);
    assert_eq!(teapots.searched_for, "teapot");
    assert!(teapots.products.iter().all(|p| p.name.ends_with("teapot")));

    let nothing = inventory.search(query("xylophone")).await;
    assert_eq!((nothing.total, nothing.products.len(), nothing.searched_for.as_str()), (0, 0, ""));
    let punctuation = inventory.search(query("\"earl\" (grey)* :* & | !")).await;
    assert_eq!(punctuation.total, 1, "query syntax is not passed through");

    for (request, field) in [
        (query(&"a".repeat(201)), "query"),
        (query("tea\u{7}"), "query"),
        (ListProductsRequest { min_price_minor: Some(-1), ..Default::default() }, "min_price_minor"),
        (ListProductsRequest { max_price_minor: Some(-1), ..Default::default() }, "max_price_minor"),
        (
            ListProductsRequest { min_price_minor: Some(5), max_price_minor: Some(4), ..Default::default() },
            "min_price_minor",
        ),
        (ListProductsRequest { sort: 99, ..Default::default() }, "sort"),
        (ListProductsRequest { category_id: -1, ..Default::default() }, "category_id"),
    ] {
        let refused = assert_refused(
            inventory.client.list_products(request).await,
            Code::InvalidArgument,
            ErrorReason::FieldInvalid,
        );
        let fields: Vec<String> = rich_error::field_violations(&refused).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, [field]);
    }
}

async fn filters_and_sorts_combine_with_paging_and_total(backend: Backend) {
    let mut inventory = start(backend).await;
    let cups = inventory.category("Cups").await;
    let mut ids = Vec::new();
    for n in 1..=12_i64 {
        let categories = if n % 2 == 0 { vec![cups.id] } else { Vec::new() };
        let name = format!("{} cup {n}", ["Blue", "Red", "Green"][usize::try_from(n % 3).expect("small")]);
        ids.push(inventory.product(&name, "A cup.", n * 100, n % 3, &categories).await.id);
    }
    let page = |page, page_size| ListProductsRequest { page, page_size, ..Default::default() };

    let in_stock = inventory.search(ListProductsRequest { in_stock_only: true, ..page(1, 100) }).await;
    assert_eq!(in_stock.total, 8);
    assert!(in_stock.products.iter().all(|p| p.stock > 0));
    let priced = ListProductsRequest { min_price_minor: Some(300), max_price_minor: Some(700), ..page(1, 100) };
    let priced = inventory.search(priced).await;
    assert_eq!(priced.total, 5);
    assert!(priced.products.iter().all(|p| (300..=700).contains(&p.price_minor)));
    let in_cups = inventory.search(ListProductsRequest { category_id: cups.id, ..page(1, 100) }).await;
    assert_eq!(in_cups.total, 6);
    assert!(in_cups.products.iter().all(|p| p.categories.iter().any(|c| c.id == cups.id)));
    let unknown = inventory.search(ListProductsRequest { category_id: 424_242, ..page(1, 100) }).await;
    assert_eq!((unknown.total, unknown.products.len()), (0, 0), "an unknown category: an empty page");
    let others = inventory.search(ListProductsRequest { exclude_product_id: ids[0], ..page(1, 100) }).await;
    assert_eq!(others.total, 11);
    assert!(others.products.iter().all(|p| p.id != ids[0]));

    let low_first = ListProductsRequest { sort: ProductSort::PriceLowFirst.into(), ..page(1, 3) };
    let prices: Vec<i64> = inventory.search(low_first).await.products.iter().map(|p| p.price_minor).collect();
    assert_eq!(prices, [100, 200, 300]);
    let high_first = ListProductsRequest { sort: ProductSort::PriceHighFirst.into(), ..page(2, 3) };
    let prices: Vec<i64> = inventory.search(high_first).await.products.iter().map(|p| p.price_minor).collect();
    assert_eq!(prices, [900, 800, 700]);
    let by_name = inventory.names(ListProductsRequest { sort: ProductSort::Name.into(), ..page(1, 3) }).await;
    assert_eq!(by_name, ["Blue cup 12", "Blue cup 3", "Blue cup 6"]);
    let newest = inventory.search(page(1, 2)).await;
    assert_eq!(newest.products.iter().map(|p| p.id).collect::<Vec<_>>(), [ids[11], ids[10]]);

    // All at once, paged: red cups, in stock, in the category, 200 to
    // 1200, cheapest first, two a page.
    let combined = |number| ListProductsRequest {
        query: "red".into(),
        category_id: cups.id,
        in_stock_only: true,
        min_price_minor: Some(200),
        max_price_minor: Some(1_200),
        sort: ProductSort::PriceLowFirst.into(),
        ..page(number, 2)
    };
    // Red: n % 3 == 1 (1, 4, 7, 10); in cups: even (4, 10); in stock: n % 3 != 0 (both).
    let first = inventory.search(combined(1)).await;
    assert_eq!(first.total, 2);
    assert_eq!(first.products.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["Red cup 4", "Red cup 10"]);
    let second = inventory.search(combined(2)).await;
    assert_eq!((second.total, second.products.len()), (2, 0));
    let search_paged = |number| ListProductsRequest { query: "cup".into(), ..page(number, 5) };
    let mut seen = Vec::new();
    for number in 1..=3 {
        let found = inventory.search(search_paged(number)).await;
        assert_eq!(found.total, 12);
        seen.extend(found.products.into_iter().map(|p| p.id));
    }
    seen.sort_unstable();
    assert_eq!(seen, ids, "relevance pages neither overlap nor skip");
}

async fn categories_are_named_uniquely_and_products_move_between_them(backend: Backend) {
    let mut inventory = start(backend).await;
    let green = inventory.category("  Green tea ").await;
    assert_eq!((green.name.as_str(), green.slug.as_str()), ("Green tea", "green-tea"));
    let vert = inventory.category("Thé vert").await;
    assert_eq!(vert.slug, "the-vert");
    let taken = inventory.client.create_category(CreateCategoryRequest { name: "GREEN TEA".into() }).await;
    let taken = assert_refused(taken, Code::AlreadyExists, ErrorReason::CategoryNameTaken);
    assert_eq!(rich_error::field_violations(&taken).first().map(|(f, _)| f.as_str()), Some("name"));
    let blank = inventory.client.create_category(CreateCategoryRequest { name: " ".into() }).await;
    assert_refused(blank, Code::InvalidArgument, ErrorReason::FieldInvalid);

    let sencha = inventory.product("Sencha", "", 890, 1, &[green.id, vert.id, green.id]).await;
    let names: Vec<&str> = sencha.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Green tea", "Thé vert"]);
    let unknown = CreateProductRequest { name: "Lost".into(), category_ids: vec![424_242], ..Default::default() };
    let unknown =
        assert_refused(inventory.client.create_product(unknown).await, Code::NotFound, ErrorReason::CategoryNotFound);
    assert_eq!(rich_error::metadata(&unknown, "category_id").as_deref(), Some("424242"));
    assert_eq!(inventory.count("SELECT COUNT(*) FROM products").await, 1, "nothing written");

    let renamed = UpdateCategoryRequest { id: vert.id, name: "Green teas of France".into() };
    let renamed = inventory.client.update_category(renamed).await.expect("renamed").into_inner().category.expect("c");
    assert_eq!((renamed.slug.as_str(), renamed.product_count), ("green-teas-of-france", 1));
    let clash = inventory.client.update_category(UpdateCategoryRequest { id: vert.id, name: "green TEA".into() }).await;
    assert_refused(clash, Code::AlreadyExists, ErrorReason::CategoryNameTaken);
    let missing = inventory.client.update_category(UpdateCategoryRequest { id: 424_242, name: "X".into() }).await;
    assert_refused(missing, Code::NotFound, ErrorReason::CategoryNotFound);

    let black = inventory.category("Black tea").await;
    let listed = inventory.client.list_categories(ListCategoriesRequest {}).await.expect("a list").into_inner();
    let listed: Vec<(&str, i64)> = listed.categories.iter().map(|c| (c.name.as_str(), c.product_count)).collect();
    assert_eq!(listed, [("Black tea", 0), ("Green tea", 1), ("Green teas of France", 1)]);

    let replace = |ids: Vec<i64>| UpdateProductRequest {
        id: sencha.id,
        categories: Some(CategoryIds { ids }),
        ..Default::default()
    };
    let replaced = inventory.client.update_product(replace(vec![black.id])).await.expect("replaced").into_inner();
    assert_eq!(
        replaced.product.map(|p| p.categories.into_iter().map(|c| c.id).collect::<Vec<_>>()),
        Some(vec![black.id])
    );
    let unchanged = UpdateProductRequest { id: sencha.id, price_minor: Some(900), ..Default::default() };
    let unchanged = inventory.client.update_product(unchanged).await.expect("updated").into_inner().product.expect("p");
    assert_eq!(unchanged.categories.len(), 1, "categories left alone when not set");
    let refused = inventory.client.update_product(replace(vec![black.id, 424_242])).await;
    assert_refused(refused, Code::NotFound, ErrorReason::CategoryNotFound);
    let cleared = inventory.client.update_product(replace(Vec::new())).await.expect("cleared").into_inner();
    assert_eq!(cleared.product.map(|p| p.categories.len()), Some(0));

    inventory.client.update_product(replace(vec![black.id, green.id])).await.expect("two again");
    inventory.client.delete_category(DeleteCategoryRequest { id: black.id }).await.expect("deleted");
    let read = inventory.client.get_product(GetProductRequest { id: sencha.id }).await.expect("read").into_inner();
    let left: Vec<i64> = read.product.expect("p").categories.into_iter().map(|c| c.id).collect();
    assert_eq!(left, [green.id], "the product stays, without the category");
    let again = inventory.client.delete_category(DeleteCategoryRequest { id: black.id }).await;
    assert_refused(again, Code::NotFound, ErrorReason::CategoryNotFound);

    let mut customer = inventory.customer().await;
    let denied = customer.create_category(CreateCategoryRequest { name: "Mine".into() }).await;
    assert_refused(denied, Code::PermissionDenied, ErrorReason::PermissionDenied);
    let denied = customer.delete_category(DeleteCategoryRequest { id: green.id }).await;
    assert_refused(denied, Code::PermissionDenied, ErrorReason::PermissionDenied);
    assert!(customer.list_categories(ListCategoriesRequest {}).await.is_ok(), "anyone lists them");
    // created ×4, renamed, deleted.
    assert_eq!(inventory.count("SELECT COUNT(*) FROM outbox WHERE kind = 'category.changed'").await, 5);
}

fn encoded(picture: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    picture.write_to(&mut Cursor::new(&mut bytes), format).expect("an encoded picture");
    bytes
}

fn upload_stream(
    product_id: i64,
    alt: &str,
    bytes: Vec<u8>,
) -> impl tokio_stream::Stream<Item = AddProductImageRequest> + use<> {
    let first = AddProductImageRequest {
        part: Some(add_product_image_request::Part::Upload(ImageUpload { product_id, alt: alt.into() })),
    };
    let chunks: Vec<AddProductImageRequest> = bytes
        .chunks(64 * 1024)
        .map(|chunk| AddProductImageRequest { part: Some(add_product_image_request::Part::Chunk(chunk.to_vec())) })
        .collect();
    tokio_stream::iter(std::iter::once(first).chain(chunks))
}

async fn upload(
    client: &mut InventoryServiceClient<Signed>,
    product_id: i64,
    alt: &str,
    bytes: Vec<u8>,
) -> Result<Product, tonic::Status> {
    let added = client.add_product_image(upload_stream(product_id, alt, bytes)).await?;
    Ok(added.into_inner().product.expect("a product"))
}

async fn pictures_are_stored_as_variants_named_by_their_hash(backend: Backend) {
    let mut inventory = start(backend).await;
    let pot = inventory.product("Teapot", "", 100, 1, &[]).await;
    let cup = inventory.product("Cup", "", 100, 1, &[]).await;
    let wide = encoded(
        DynamicImage::ImageRgb8(RgbImage::from_fn(1_600, 900, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 90]))),
        ImageFormat::Png,
    );

    let with_picture = upload(&mut inventory.client, pot.id, "A black teapot", wide.clone()).await.expect("added");
    let image = with_picture.images.first().expect("a picture").clone();
    assert_eq!(image.alt, "A black teapot");
    let (thumbnail, large) = (image.thumbnail.clone().expect("a thumbnail"), image.large.clone().expect("a large one"));
    assert_eq!((large.width, large.height, large.content_type.as_str()), (1_200, 675, "image/jpeg"));
    assert_eq!((thumbnail.width, thumbnail.height), (400, 225));
    let mut anonymous = InventoryServiceClient::new(connect(&inventory.url).await);
    for variant in [&thumbnail, &large] {
        let got =
            anonymous.get_image(GetImageRequest { hash: variant.hash.clone() }).await.expect("the bytes").into_inner();
        assert_eq!(got.content_type, "image/jpeg");
        assert_eq!(shop_inventory::images::sha256_hex(&got.data), variant.hash);
        let decoded = image::load_from_memory(&got.data).expect("a JPEG");
        assert_eq!((decoded.width(), decoded.height()), (variant.width, variant.height));
    }
    let read = inventory.client.get_product(GetProductRequest { id: pot.id }).await.expect("read").into_inner();
    assert_eq!(read.product.map(|p| p.images), Some(vec![image.clone()]));
    let listed = inventory.search(ListProductsRequest::default()).await;
    assert!(listed.products.iter().any(|p| p.images.len() == 1), "lists carry pictures too");

    // The same picture on another product: its variants are stored once.
    upload(&mut inventory.client, cup.id, "The same picture", wide).await.expect("added");
    assert_eq!(inventory.count("SELECT COUNT(*) FROM image_blobs").await, 2);
    assert_eq!(inventory.count("SELECT COUNT(*) FROM product_images").await, 2);

    // A small JPEG is never scaled up; both variants are the same bytes.
    let small = encoded(DynamicImage::ImageRgb8(RgbImage::from_pixel(300, 200, Rgb([200, 30, 30]))), ImageFormat::Jpeg);
    let added = upload(&mut inventory.client, cup.id, "A red square", small).await.expect("added");
    let second = added.images.get(1).expect("a second picture").clone();
    let (t, l) = (second.thumbnail.expect("t"), second.large.expect("l"));
    assert_eq!((l.width, l.height, t.width), (300, 200, 300));
    assert_eq!(t.hash, l.hash);
    // Transparency is kept: PNG.
    let mut clear = RgbaImage::from_pixel(64, 64, Rgba([0, 90, 0, 255]));
    clear.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
    let added =
        upload(&mut inventory.client, cup.id, "A leaf", encoded(DynamicImage::ImageRgba8(clear), ImageFormat::Png))
            .await;
    let leaf = added.expect("added").images.get(2).expect("a third picture").clone();
    let leaf_large = leaf.large.expect("l");
    assert_eq!(leaf_large.content_type, "image/png");
    let got = anonymous.get_image(GetImageRequest { hash: leaf_large.hash.clone() }).await.expect("bytes").into_inner();
    assert_eq!(got.content_type, "image/png");

    // Deleting a picture keeps variants another picture shares, and frees the rest.
    let blobs = inventory.count("SELECT COUNT(*) FROM image_blobs").await;
    let deleted = inventory
        .client
        .delete_product_image(DeleteProductImageRequest { product_id: pot.id, image_id: image.id })
        .await;
    assert_eq!(deleted.expect("deleted").into_inner().product.map(|p| p.images.len()), Some(0));
    assert_eq!(inventory.count("SELECT COUNT(*) FROM image_blobs").await, blobs, "the cup still uses them");
    let again = inventory
        .client
        .delete_product_image(DeleteProductImageRequest { product_id: pot.id, image_id: image.id })
        .await;
    assert_refused(again, Code::NotFound, ErrorReason::ImageNotFound);
    inventory.client.delete_product(DeleteProductRequest { id: cup.id }).await.expect("deleted");
    assert_eq!(inventory.count("SELECT COUNT(*) FROM image_blobs").await, 0, "no picture uses them");
    assert_eq!(inventory.count("SELECT COUNT(*) FROM product_images").await, 0);
    let gone = anonymous.get_image(GetImageRequest { hash: thumbnail.hash }).await;
    assert_refused(gone, Code::NotFound, ErrorReason::ImageNotFound);
    let bad = anonymous.get_image(GetImageRequest { hash: "../etc/passwd".into() }).await;
    assert_refused(bad, Code::InvalidArgument, ErrorReason::FieldInvalid);
    // Four pictures added, one deleted: each announced.
    assert_eq!(inventory.count("SELECT COUNT(*) FROM outbox WHERE payload LIKE '%\"images\"%'").await, 5);
}

fn problem_of(status: &tonic::Status) -> (Option<String>, Vec<(String, String)>) {
    (rich_error::metadata(status, "problem"), rich_error::field_violations(status))
}

async fn bad_pictures_are_refused_and_nothing_is_stored(backend: Backend) {
    let mut inventory = start(backend).await;
    let pot = inventory.product("Teapot", "", 100, 1, &[]).await;
    let stored = "SELECT (SELECT COUNT(*) FROM image_blobs) + (SELECT COUNT(*) FROM product_images)";

    let text =
        upload(&mut inventory.client, pot.id, "holiday.png", b"Dear diary, today I was not a PNG.".to_vec()).await;
    let text = assert_refused(text, Code::InvalidArgument, ErrorReason::ImageRefused);
    let (problem, violations) = problem_of(&text);
    assert_eq!(problem.as_deref(), Some("not_an_image"));
    assert_eq!(violations, [("image".to_owned(), "The file is not a PNG, JPEG, WebP or GIF picture.".to_owned())]);

    let wide = encoded(DynamicImage::ImageRgb8(RgbImage::new(20_000, 1)), ImageFormat::Png);
    let wide = assert_refused(
        upload(&mut inventory.client, pot.id, "A line", wide).await,
        Code::InvalidArgument,
        ErrorReason::ImageRefused,
    );
    let (problem, violations) = problem_of(&wide);
    assert_eq!(problem.as_deref(), Some("too_many_pixels"));
    assert!(violations[0].1.contains("20000 × 1 pixels"), "{violations:?}");

    // 50 MB offered in 64 KiB chunks: refused once past 10 MiB, without
    // the rest being asked for (HTTP/2 flow control bounds what is in flight).
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pulled);
    let header = AddProductImageRequest {
        part: Some(add_product_image_request::Part::Upload(ImageUpload { product_id: pot.id, alt: "Huge".into() })),
    };
    let chunks = (0..800).map(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        AddProductImageRequest { part: Some(add_product_image_request::Part::Chunk(vec![0x89; 64 * 1024])) }
    });
    let huge = inventory.client.add_product_image(tokio_stream::iter(std::iter::once(header).chain(chunks))).await;
    let huge = assert_refused(huge, Code::InvalidArgument, ErrorReason::ImageRefused);
    assert_eq!(problem_of(&huge).0.as_deref(), Some("too_large"));
    let sent_mib = pulled.load(Ordering::SeqCst) / 16;
    assert!(sent_mib < 30, "the client was stopped early, after {sent_mib} MiB of 50");

    let png = || encoded(DynamicImage::ImageRgb8(RgbImage::from_pixel(20, 20, Rgb([1, 2, 3]))), ImageFormat::Png);
    for alt in ["", "   ", "tab\there"] {
        let refused = upload(&mut inventory.client, pot.id, alt, png()).await;
        let refused = assert_refused(refused, Code::InvalidArgument, ErrorReason::FieldInvalid);
        assert_eq!(rich_error::field_violations(&refused)[0].0, "alt");
    }
    let long_alt = "a".repeat(301);
    assert_refused(
        upload(&mut inventory.client, pot.id, &long_alt, png()).await,
        Code::InvalidArgument,
        ErrorReason::FieldInvalid,
    );
    let missing = upload(&mut inventory.client, 424_242, "A pot", png()).await;
    assert_refused(missing, Code::NotFound, ErrorReason::ProductNotFound);
    let mut customer = inventory.customer().await;
    let denied = upload(&mut customer, pot.id, "Mine", png()).await;
    assert_refused(denied, Code::PermissionDenied, ErrorReason::PermissionDenied);
    let denied = customer.delete_product_image(DeleteProductImageRequest { product_id: pot.id, image_id: 1 }).await;
    assert_refused(denied, Code::PermissionDenied, ErrorReason::PermissionDenied);
    assert_eq!(inventory.count(stored).await, 0, "nothing stored for any refusal");

    for n in 0..8_u8 {
        let picture = encoded(DynamicImage::ImageRgb8(RgbImage::from_pixel(8, 8, Rgb([n, n, n]))), ImageFormat::Png);
        upload(&mut inventory.client, pot.id, &format!("Picture {n}"), picture).await.expect("one of eight");
    }
    let before = inventory.count(stored).await;
    let ninth = upload(&mut inventory.client, pot.id, "One too many", png()).await;
    let ninth = assert_refused(ninth, Code::InvalidArgument, ErrorReason::ImageRefused);
    assert_eq!(problem_of(&ninth).0.as_deref(), Some("too_many_images"));
    assert_eq!(inventory.count(stored).await, before);
}

async fn the_demo_catalogue_has_categories_and_pictures(backend: Backend) {
    let mut inventory = start(backend).await;
    let started = std::time::Instant::now();
    let loaded = inventory.client.load_demo_catalogue(LoadDemoCatalogueRequest {}).await.expect("loaded");
    let took = started.elapsed();
    eprintln!("the demo catalogue loaded in {took:?}");
    assert_eq!(usize::try_from(loaded.into_inner().added).ok(), Some(shop_inventory::demo::PRODUCTS.len()));
    let categories = inventory.client.list_categories(ListCategoriesRequest {}).await.expect("a list").into_inner();
    assert_eq!(categories.categories.len(), shop_inventory::demo::CATEGORIES.len());
    assert!(categories.categories.iter().all(|c| c.product_count > 0), "{categories:?}");
    let all = inventory.search(ListProductsRequest { page_size: 100, ..Default::default() }).await;
    for product in &all.products {
        assert!(!product.categories.is_empty(), "{} has a category", product.name);
        let image = product.images.first().unwrap_or_else(|| panic!("{} has a picture", product.name));
        assert!(image.alt.starts_with("Illustration: a "), "{}", image.alt);
        let thumbnail = image.thumbnail.as_ref().expect("a thumbnail");
        assert!(thumbnail.width <= 400 && thumbnail.content_type == "image/jpeg");
    }
    let first = all.products[0].images[0].large.clone().expect("a large picture");
    let got = inventory.client.get_image(GetImageRequest { hash: first.hash }).await.expect("bytes").into_inner();
    assert_eq!(got.content_type, "image/jpeg");
    assert_eq!(inventory.names(query("earl gery")).await, ["Earl Grey"]);
    assert_eq!(inventory.names(query("tepot")).await.len(), 3);
}

on_both_backends!(
    search_ranks_names_first_matches_prefixes_and_corrects_typos,
    filters_and_sorts_combine_with_paging_and_total,
    categories_are_named_uniquely_and_products_move_between_them,
    pictures_are_stored_as_variants_named_by_their_hash,
    bad_pictures_are_refused_and_nothing_is_stored,
    the_demo_catalogue_has_categories_and_pictures,
);

//! Product pictures: what the shop takes (PNG, JPEG, WebP or GIF, judged
//! by the bytes; at most 10 MiB and 8,000 px a side, 40 megapixels), and
//! the variants it stores (a thumbnail and a large picture, each named by
//! the SHA-256 of its bytes). Decoding and encoding are CPU work: callers
//! run [`variants_of_upload`] on the blocking pool.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use sha2::{Digest, Sha256};

use crate::InventoryError;

/// Largest file accepted.
pub const MAX_BYTES: usize = 10 * 1024 * 1024;
/// Largest side, in pixels.
pub const MAX_SIDE: u32 = 8_000;
/// Most pixels in all.
pub const MAX_PIXELS: u64 = 40_000_000;
/// Most pictures a product has.
pub const MAX_IMAGES: i64 = 8;
/// Longer side of the thumbnail, and of the large variant.
pub const THUMBNAIL_SIDE: u32 = 400;
pub const LARGE_SIDE: u32 = 1_200;
/// What the decoder may allocate: a 40-megapixel RGBA picture and some room.
const MAX_DECODE_ALLOC: u64 = 256 * 1024 * 1024;
const JPEG_QUALITY: u8 = 82;

/// Why a picture was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageProblem {
    NotAnImage,
    TooLarge,
    TooManyPixels { width: u32, height: u32 },
    TooManyImages,
}

impl ImageProblem {
    /// The `problem` metadata of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAnImage => "not_an_image",
            Self::TooLarge => "too_large",
            Self::TooManyPixels { .. } => "too_many_pixels",
            Self::TooManyImages => "too_many_images",
        }
    }

    /// What a shop admin reads.
    pub fn sentence(&self) -> String {
        match self {
            Self::NotAnImage => "The file is not a PNG, JPEG, WebP or GIF picture.".into(),
            Self::TooLarge => "The picture is larger than 10 MiB.".into(),
            Self::TooManyPixels { width, height } => {
                format!("The picture is {width} × {height} pixels; at most {MAX_SIDE} pixels a side and 40 megapixels.")
            }
            Self::TooManyImages => "The product has 8 pictures already; delete one first.".into(),
        }
    }
}

/// Alt text: trimmed, 1 to 300 characters, no control characters.
pub fn parse_alt(raw: &str) -> Result<String, InventoryError> {
    let alt = raw.trim();
    if alt.is_empty() {
        return Err(InventoryError::invalid("alt", "is required: say what the picture shows"));
    }
    if alt.chars().count() > 300 {
        return Err(InventoryError::invalid("alt", "must be at most 300 characters"));
    }
    if alt.chars().any(char::is_control) {
        return Err(InventoryError::invalid("alt", "must not contain control characters"));
    }
    Ok(alt.to_owned())
}

/// One stored variant: its bytes and what describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub hash: String,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// Both variants of a picture, in one content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variants {
    pub content_type: &'static str,
    pub thumbnail: Variant,
    pub large: Variant,
}

/// Sniffs, checks and decodes an uploaded file, then makes its variants.
/// The dimensions are read from the header before anything is decoded, and
/// the decoder runs under allocation limits as a second guard.
pub fn variants_of_upload(bytes: &[u8]) -> Result<Variants, InventoryError> {
    if bytes.len() > MAX_BYTES {
        return Err(InventoryError::ImageRefused(ImageProblem::TooLarge));
    }
    let not_an_image = || InventoryError::ImageRefused(ImageProblem::NotAnImage);
    let reader = || ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|_| not_an_image());
    let format = reader()?.format().ok_or_else(not_an_image)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Gif) {
        return Err(not_an_image());
    }
    let (width, height) = reader()?.into_dimensions().map_err(|_| not_an_image())?;
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(InventoryError::ImageRefused(ImageProblem::TooManyPixels { width, height }));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    let mut decoder = reader()?;
    decoder.limits(limits);
    let picture = decoder.decode().map_err(|error| match error {
        image::ImageError::Limits(_) => InventoryError::ImageRefused(ImageProblem::TooManyPixels { width, height }),
        _ => not_an_image(),
    })?;
    if picture.width() == 0 || picture.height() == 0 {
        return Err(not_an_image());
    }
    variants_of(&picture)
}

/// The thumbnail and large variants of a decoded picture: JPEG, or PNG when
/// it has transparency; never scaled up.
pub fn variants_of(picture: &DynamicImage) -> Result<Variants, InventoryError> {
    let transparent = has_transparency(picture);
    let large_picture = fit(picture, LARGE_SIDE);
    // From the large variant: less to read, and the same result.
    let thumbnail = fit(&large_picture, THUMBNAIL_SIDE);
    let (content_type, encode): (&'static str, Encoder) =
        if transparent { ("image/png", encode_png) } else { ("image/jpeg", encode_jpeg) };
    let large = variant(&large_picture, encode)?;
    // A picture already small enough is one variant under two names.
    let thumbnail = if (thumbnail.width(), thumbnail.height()) == (large.width, large.height) {
        large.clone()
    } else {
        variant(&thumbnail, encode)?
    };
    Ok(Variants { content_type, thumbnail, large })
}

/// Encodes a variant's bytes.
type Encoder = fn(&DynamicImage) -> Result<Vec<u8>, InventoryError>;

fn variant(picture: &DynamicImage, encode: Encoder) -> Result<Variant, InventoryError> {
    let bytes = encode(picture)?;
    Ok(Variant { hash: sha256_hex(&bytes), width: picture.width(), height: picture.height(), bytes })
}

/// The picture itself when its longer side is within `side`, otherwise
/// scaled down to fit (keeping its proportions).
fn fit(picture: &DynamicImage, side: u32) -> DynamicImage {
    if picture.width() <= side && picture.height() <= side {
        picture.clone()
    } else {
        // Area averaging: quick, and sharp enough when only scaling down.
        picture.thumbnail(side, side)
    }
}

fn has_transparency(picture: &DynamicImage) -> bool {
    if !picture.color().has_alpha() {
        return false;
    }
    match picture {
        DynamicImage::ImageRgba8(rgba) => rgba.pixels().any(|p| p.0[3] < u8::MAX),
        DynamicImage::ImageLumaA8(la) => la.pixels().any(|p| p.0[1] < u8::MAX),
        // Wider alpha channels are rare in shop pictures: keep PNG.
        _ => true,
    }
}

fn encode_jpeg(picture: &DynamicImage) -> Result<Vec<u8>, InventoryError> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY);
    DynamicImage::ImageRgb8(picture.to_rgb8()).write_with_encoder(encoder).map_err(encoding_failed)?;
    Ok(bytes)
}

fn encode_png(picture: &DynamicImage) -> Result<Vec<u8>, InventoryError> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
    DynamicImage::ImageRgba8(picture.to_rgba8()).write_with_encoder(encoder).map_err(encoding_failed)?;
    Ok(bytes)
}

fn encoding_failed(error: image::ImageError) -> InventoryError {
    InventoryError::Internal(format!("encoding a picture variant: {error}"))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

/// A variant's name as `GetImage` takes it: 64 lower-case hex digits.
pub fn parse_hash(raw: &str) -> Result<String, InventoryError> {
    if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(raw.to_owned())
    } else {
        Err(InventoryError::invalid("hash", "must be 64 lower-case hexadecimal digits"))
    }
}

#[cfg(test)]
mod tests {
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    use super::*;

    fn png(picture: DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        picture.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).expect("a PNG");
        bytes
    }

    fn problem(result: Result<Variants, InventoryError>) -> ImageProblem {
        match result {
            Err(InventoryError::ImageRefused(problem)) => problem,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_opaque_picture_becomes_jpeg_variants_never_scaled_up() {
        let wide = DynamicImage::ImageRgb8(RgbImage::from_pixel(1_600, 800, Rgb([10, 120, 40])));
        let variants = variants_of_upload(&png(wide)).expect("variants");
        assert_eq!(variants.content_type, "image/jpeg");
        assert_eq!((variants.large.width, variants.large.height), (1_200, 600));
        assert_eq!((variants.thumbnail.width, variants.thumbnail.height), (400, 200));
        assert_eq!(variants.large.hash, sha256_hex(&variants.large.bytes));

        let small = DynamicImage::ImageRgb8(RgbImage::from_pixel(300, 200, Rgb([1, 2, 3])));
        let variants = variants_of_upload(&png(small)).expect("variants");
        assert_eq!((variants.large.width, variants.thumbnail.width), (300, 300));
        assert_eq!(variants.large.hash, variants.thumbnail.hash, "the same bytes, one name");
    }

    #[test]
    fn a_transparent_picture_stays_png() {
        let mut picture = RgbaImage::from_pixel(50, 50, Rgba([200, 0, 0, 255]));
        picture.put_pixel(3, 3, Rgba([0, 0, 0, 0]));
        let variants = variants_of_upload(&png(DynamicImage::ImageRgba8(picture))).expect("variants");
        assert_eq!(variants.content_type, "image/png");
        let opaque = DynamicImage::ImageRgba8(RgbaImage::from_pixel(50, 50, Rgba([200, 0, 0, 255])));
        assert_eq!(variants_of_upload(&png(opaque)).expect("variants").content_type, "image/jpeg");
    }

    #[test]
    fn files_that_are_not_pictures_are_refused() {
        assert_eq!(problem(variants_of_upload(b"hello, I am not a PNG at all")), ImageProblem::NotAnImage);
        assert_eq!(problem(variants_of_upload(b"")), ImageProblem::NotAnImage);
        let mut truncated = png(DynamicImage::ImageRgb8(RgbImage::new(20, 20)));
        truncated.truncate(40);
        assert_eq!(problem(variants_of_upload(&truncated)), ImageProblem::NotAnImage);
        // A BMP is a picture, but not one the shop takes.
        let mut bmp = Vec::new();
        if DynamicImage::ImageRgb8(RgbImage::new(2, 2)).write_to(&mut Cursor::new(&mut bmp), ImageFormat::Bmp).is_err()
        {
            // Without the BMP encoder: its header is enough to be sniffed.
            bmp = b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0".to_vec();
        }
        assert_eq!(problem(variants_of_upload(&bmp)), ImageProblem::NotAnImage);
    }

    #[test]
    #[ignore = "a measurement: cargo nextest run -p shop-inventory --run-ignored all --no-capture timing"]
    fn timing_of_the_demo_pictures() {
        let started = std::time::Instant::now();
        let drawn = crate::demo_pictures::draw(crate::demo_pictures::Drawing::Teapot, Rgb([1, 2, 3]), "x");
        let drew = started.elapsed();
        let picture = DynamicImage::ImageRgb8(drawn);
        let large = fit(&picture, LARGE_SIDE);
        let thumbnail = fit(&large, THUMBNAIL_SIDE);
        let resized = started.elapsed();
        let _ = encode_jpeg(&large);
        let encoded_large = started.elapsed();
        let _ = encode_jpeg(&thumbnail);
        eprintln!("drew {drew:?}, resized {resized:?}, large {encoded_large:?}, all {:?}", started.elapsed());
    }

    #[test]
    fn hashes_are_lower_case_hex() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(parse_hash(&sha256_hex(b"x")).is_ok());
        assert!(parse_hash("ABC").is_err());
        assert!(parse_hash(&"G".repeat(64)).is_err());
    }
}

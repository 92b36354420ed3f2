//! The demo catalogue's pictures, drawn here (nothing downloaded, nobody
//! else's pictures): a background in the category's colour and a simple
//! tin, teapot, cup or pair of leaves, varied per product by a hash of its
//! name so no two look quite alike.

use image::{Rgb, RgbImage};

/// The side of a drawn picture: 800 px (a thumbnail and a large variant)
/// in the shop as it is run (`--release`); 400 px (one variant under both
/// names) in debug builds, where the image crate is unoptimised and tests
/// load the catalogue often: 30 pictures at 800 px take seconds there.
pub const SIDE: u32 = if cfg!(debug_assertions) { 400 } else { 800 };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drawing {
    Tin,
    Teapot,
    Cup,
    Leaves,
}

impl Drawing {
    /// What the alt text calls it.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Tin => "tea tin",
            Self::Teapot => "teapot",
            Self::Cup => "teacup",
            Self::Leaves => "pair of tea leaves",
        }
    }
}

/// A deterministic 64-bit hash of a name (FNV-1a): the same picture for the
/// same product on every load.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// A number in `0..range` from bits `shift..` of the seed.
fn pick(seed: u64, shift: u32, range: u32) -> i32 {
    i32::try_from((seed >> shift) as u32 % range.max(1)).unwrap_or(0)
}

fn mix(a: Rgb<u8>, b: Rgb<u8>, t: f32) -> Rgb<u8> {
    let channel = |x: u8, y: u8| (f32::from(x) + (f32::from(y) - f32::from(x)) * t).round().clamp(0.0, 255.0) as u8;
    Rgb([channel(a.0[0], b.0[0]), channel(a.0[1], b.0[1]), channel(a.0[2], b.0[2])])
}

/// Paints every pixel of the box `(x0, y0)..(x1, y1)` for which `inside`
/// holds (coordinates relative to the picture's centre).
fn fill(canvas: &mut RgbImage, bounds: (i32, i32, i32, i32), colour: Rgb<u8>, inside: impl Fn(f32, f32) -> bool) {
    let side = i32::try_from(canvas.width()).unwrap_or(0);
    let (x0, y0, x1, y1) = bounds;
    for y in y0.max(0)..y1.min(side) {
        for x in x0.max(0)..x1.min(side) {
            if inside(x as f32 + 0.5, y as f32 + 0.5) {
                canvas.put_pixel(x as u32, y as u32, colour);
            }
        }
    }
}

fn ellipse(canvas: &mut RgbImage, centre: (f32, f32), radii: (f32, f32), angle: f32, colour: Rgb<u8>) {
    let (cx, cy) = centre;
    let (rx, ry) = radii;
    let reach = rx.max(ry).ceil() as i32 + 1;
    let (sin, cos) = angle.sin_cos();
    let bounds = (cx as i32 - reach, cy as i32 - reach, cx as i32 + reach, cy as i32 + reach);
    fill(canvas, bounds, colour, |x, y| {
        let (dx, dy) = (x - cx, y - cy);
        let (u, v) = (dx * cos + dy * sin, -dx * sin + dy * cos);
        (u / rx).powi(2) + (v / ry).powi(2) <= 1.0
    });
}

fn rect(canvas: &mut RgbImage, (x0, y0): (f32, f32), (x1, y1): (f32, f32), colour: Rgb<u8>) {
    fill(canvas, (x0 as i32, y0 as i32, x1 as i32 + 1, y1 as i32 + 1), colour, |x, y| {
        x >= x0 && x <= x1 && y >= y0 && y <= y1
    });
}

/// A ring: an ellipse with its middle in the background colour drawn after.
fn ring(canvas: &mut RgbImage, centre: (f32, f32), radius: f32, width: f32, colour: Rgb<u8>) {
    let (cx, cy) = centre;
    let reach = radius.ceil() as i32 + 1;
    let bounds = (cx as i32 - reach, cy as i32 - reach, cx as i32 + reach, cy as i32 + reach);
    fill(canvas, bounds, colour, |x, y| {
        let distance = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
        distance <= radius && distance >= radius - width
    });
}

/// Draws `drawing` for the product `name` on the category's `background`.
pub fn draw(drawing: Drawing, background: Rgb<u8>, name: &str) -> RgbImage {
    let seed = seed_of(name);
    let side = SIDE as f32;
    let light = mix(background, Rgb([255, 255, 255]), 0.35);
    let mut canvas = RgbImage::from_fn(SIDE, SIDE, |_, y| mix(light, background, y as f32 / side));
    // The object's colour, its accent, and where it sits: from the name.
    let palette =
        [Rgb([245, 236, 214]), Rgb([60, 52, 48]), Rgb([196, 92, 60]), Rgb([232, 200, 120]), Rgb([90, 120, 150])];
    let body = palette[pick(seed, 0, 5) as usize];
    let accent = palette[(pick(seed, 0, 5) as usize + 1 + pick(seed, 8, 4) as usize) % 5];
    let scale = 0.85 + pick(seed, 16, 30) as f32 / 100.0;
    let (cx, cy) = (side / 2.0 + (pick(seed, 24, 41) - 20) as f32, side / 2.0 + (pick(seed, 32, 31) - 15) as f32);
    let s = |v: f32| v * scale * side / 480.0;
    // Scattered leaves in the background.
    for n in 0..(3 + pick(seed, 40, 4)) {
        let x = pick(seed.rotate_left(n as u32 * 7), 0, SIDE) as f32;
        let y = pick(seed.rotate_left(n as u32 * 11), 3, SIDE) as f32;
        ellipse(&mut canvas, (x, y), (s(14.0), s(6.0)), n as f32, mix(background, body, 0.25));
    }
    let shadow = mix(background, Rgb([0, 0, 0]), 0.25);
    ellipse(&mut canvas, (cx, cy + s(130.0)), (s(150.0), s(22.0)), 0.0, shadow);
    match drawing {
        Drawing::Tin => {
            rect(&mut canvas, (cx - s(95.0), cy - s(110.0)), (cx + s(95.0), cy + s(130.0)), body);
            rect(&mut canvas, (cx - s(102.0), cy - s(140.0)), (cx + s(102.0), cy - s(95.0)), accent);
            rect(&mut canvas, (cx - s(70.0), cy - s(40.0)), (cx + s(70.0), cy + s(70.0)), accent);
            ellipse(&mut canvas, (cx, cy + s(15.0)), (s(40.0), s(18.0)), -0.6, body);
        }
        Drawing::Teapot => {
            ring(&mut canvas, (cx + s(120.0), cy), s(62.0), s(18.0), accent);
            ellipse(&mut canvas, (cx - s(135.0), cy - s(20.0)), (s(70.0), s(16.0)), -0.7, body);
            ellipse(&mut canvas, (cx, cy + s(20.0)), (s(130.0), s(110.0)), 0.0, body);
            ellipse(&mut canvas, (cx, cy - s(85.0)), (s(70.0), s(20.0)), 0.0, accent);
            ellipse(&mut canvas, (cx, cy - s(112.0)), (s(18.0), s(14.0)), 0.0, accent);
        }
        Drawing::Cup => {
            ellipse(&mut canvas, (cx, cy + s(115.0)), (s(160.0), s(30.0)), 0.0, accent);
            ring(&mut canvas, (cx + s(105.0), cy), s(50.0), s(16.0), body);
            ellipse(&mut canvas, (cx, cy + s(40.0)), (s(110.0), s(75.0)), 0.0, body);
            rect(&mut canvas, (cx - s(110.0), cy - s(70.0)), (cx + s(110.0), cy + s(40.0)), body);
            ellipse(&mut canvas, (cx, cy - s(70.0)), (s(110.0), s(22.0)), 0.0, mix(accent, body, 0.4));
        }
        Drawing::Leaves => {
            let green = mix(Rgb([70, 130, 60]), body, 0.2);
            ellipse(&mut canvas, (cx - s(55.0), cy), (s(130.0), s(52.0)), -0.8, green);
            ellipse(&mut canvas, (cx + s(60.0), cy + s(10.0)), (s(120.0), s(46.0)), 0.7, mix(green, accent, 0.3));
            ellipse(&mut canvas, (cx, cy + s(95.0)), (s(60.0), s(5.0)), 1.45, mix(green, Rgb([0, 0, 0]), 0.4));
        }
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_product_gets_its_own_picture_and_the_same_one_each_time() {
        let green = Rgb([120, 170, 90]);
        let sencha = draw(Drawing::Tin, green, "Sencha green tea");
        assert_eq!(sencha, draw(Drawing::Tin, green, "Sencha green tea"));
        assert_ne!(sencha, draw(Drawing::Tin, green, "Gyokuro green tea"));
        assert_eq!(sencha.dimensions(), (SIDE, SIDE));
    }
}

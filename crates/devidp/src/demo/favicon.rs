//! The demo page's icon, drawn here rather than committed as a binary: a white keyhole on an
//! indigo disc, as a 16×16, 32-bit ICO (one BMP image).

/// Side of the square icon, in pixels.
const SIZE: usize = 16;
/// The demo page's brand colour (`--brand` in `demo.css`), as BGRA.
const INDIGO: [u8; 4] = [0xe5, 0x46, 0x4f, 0xff];
const WHITE: [u8; 4] = [0xff, 0xff, 0xff, 0xff];
const CLEAR: [u8; 4] = [0, 0, 0, 0];

/// The colour of pixel (`x`, `y`), `y` counted from the top.
fn pixel(x: usize, y: usize) -> [u8; 4] {
    // Distances are compared squared, in half pixels, from pixel centres.
    let (cx, cy) = (2 * x + 1, 2 * y + 1);
    let within = |ox: usize, oy: usize, r: usize| {
        let (dx, dy) = (cx.abs_diff(ox), cy.abs_diff(oy));
        dx * dx + dy * dy <= r * r
    };
    if !within(16, 16, 16) {
        return CLEAR;
    }
    let keyhole_head = within(16, 12, 5);
    let keyhole_stem = (7..=8).contains(&x) && (6..=11).contains(&y);
    if keyhole_head || keyhole_stem {
        WHITE
    } else {
        INDIGO
    }
}

/// The icon as the bytes of an `.ico` file.
pub(super) fn ico() -> Vec<u8> {
    const HEADER: usize = 6 + 16;
    const BITMAP_HEADER: usize = 40;
    const PIXELS: usize = SIZE * SIZE * 4;
    // One bit per pixel, rows padded to 32 bits; all zero: the alpha channel decides.
    const MASK: usize = SIZE * 4;
    let image = BITMAP_HEADER + PIXELS + MASK;
    let mut out = Vec::with_capacity(HEADER + image);
    let u16le = |out: &mut Vec<u8>, v: u16| out.extend_from_slice(&v.to_le_bytes());
    let u32le = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
    // ICONDIR: reserved, type 1 (icon), one image.
    u16le(&mut out, 0);
    u16le(&mut out, 1);
    u16le(&mut out, 1);
    // ICONDIRENTRY: 16×16, no palette, 1 plane, 32 bits, size and offset of the image.
    out.extend_from_slice(&[16, 16, 0, 0]);
    u16le(&mut out, 1);
    u16le(&mut out, 32);
    u32le(&mut out, 1_128);
    u32le(&mut out, 22);
    // BITMAPINFOHEADER: the height counts the colour rows and the mask rows.
    u32le(&mut out, 40);
    u32le(&mut out, 16);
    u32le(&mut out, 32);
    u16le(&mut out, 1);
    u16le(&mut out, 32);
    u32le(&mut out, 0); // BI_RGB
    u32le(&mut out, 1_088); // pixels and mask
    out.extend_from_slice(&[0; 16]); // resolution and palette: unused
    // Rows bottom-up, as BMP stores them.
    for y in (0..SIZE).rev() {
        for x in 0..SIZE {
            out.extend_from_slice(&pixel(x, y));
        }
    }
    out.resize(out.len() + MASK, 0);
    debug_assert_eq!(out.len(), HEADER + image);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_icon_is_a_well_formed_16_pixel_ico() {
        let ico = ico();
        assert_eq!(ico.len(), 6 + 16 + 40 + 16 * 16 * 4 + 16 * 4);
        assert_eq!(&ico[..6], &[0, 0, 1, 0, 1, 0]);
        let size = u32::from_le_bytes([ico[14], ico[15], ico[16], ico[17]]);
        let offset = u32::from_le_bytes([ico[18], ico[19], ico[20], ico[21]]);
        assert_eq!(usize::try_from(size + offset).unwrap(), ico.len());
        // Transparent corners, a white keyhole in the middle, indigo around it.
        assert_eq!(pixel(0, 0), CLEAR);
        assert_eq!(pixel(8, 6), WHITE);
        assert_eq!(pixel(3, 8), INDIGO);
    }
}

//! Writes the capture benchmark's inputs into DIR: COUNT photos of 12
//! megapixels (4000×3000 JPEG, quality 90, with phone-style EXIF incl. GPS)
//! and a VIDEO_MB megabyte MP4-shaped file.
//! `cargo run --release -p medseal-capture --features fixtures --example bench_media -- DIR [COUNT] [VIDEO_MB]`
use std::io::Write;

use image::ImageEncoder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .ok_or("usage: bench_media DIR [COUNT] [VIDEO_MB]")?,
    );
    let count: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);
    let video_mb: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    std::fs::create_dir_all(&dir)?;
    let (w, h) = (4000u32, 3000u32);
    for i in 0..count {
        // Skin-like tones with texture, so the JPEG compresses like a photo.
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let n = ((x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) ^ i as u32) >> 27) as u8;
            image::Rgb([
                (180 + (x / 40) % 40) as u8 + n,
                (120 + (y / 30) % 50) as u8 + n,
                (100 + ((x + y) / 50) % 30) as u8 + n,
            ])
        });
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).write_image(
            &img,
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )?;
        // Insert phone EXIF (GPS, make, model) after SOI.
        let exif = medseal_capture::fixtures::exif_block(1);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&exif);
        out.extend_from_slice(&jpeg[2..]);
        std::fs::write(dir.join(format!("photo-{i:02}.jpg")), out)?;
    }
    let mut video = std::fs::File::create(dir.join("video.mp4"))?;
    video.write_all(b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2")?;
    let mut block = vec![0u8; 1 << 20];
    let mut state = 0x9E3779B97F4A7C15u64;
    for _ in 0..video_mb {
        for b in block.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        video.write_all(&block)?;
    }
    Ok(())
}

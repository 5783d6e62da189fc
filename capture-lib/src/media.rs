//! Media intake: photos sanitised, audio and video kept exactly as captured.
//!
//! **Photos** (JPEG, PNG) lose *all* metadata — EXIF with its GPS position,
//! device make, model and serial, embedded thumbnails, XMP, IPTC, comments,
//! PNG text chunks — and have their EXIF orientation applied, so the picture
//! looks right without the tag that said how to turn it. Pixels are
//! re-encoded only when orientation requires it; otherwise metadata segments
//! are dropped and the compressed image data is kept bit for bit. The ICC
//! colour profile is kept: it describes colour, not the patient or the
//! device, and clinical colour (skin, wounds) depends on it. So is a JPEG's
//! Adobe marker, rewritten to its canonical twelve bytes with only its
//! colour transform kept: it says how the samples are stored (RGB or
//! YCbCr; CMYK inverted, as Photoshop and most CMYK writers store it), and
//! without it a decoder shows such a photo in the wrong colours. A JPEG
//! ends at its first end-of-image marker: what phones append after it (a
//! second picture with its own EXIF, a depth map, a "motion photo" video)
//! is dropped, as is every segment that is not part of the picture, before
//! or between the scans of a progressive JPEG.
//!
//! **HEIC/HEIF** photos (an iPhone's default) are decoded by libheif (with
//! the `heic` feature, on by default) with the file's rotation and mirroring
//! applied, and taken in as a new JPEG (quality 92) made from the pixels
//! alone: no EXIF, XMP, depth map, thumbnail or colour profile survives;
//! only the capture time is read first. Without the feature they are
//! refused with a clear error.
//!
//! **Audio and video** are hashed and kept byte for byte: a recording is
//! evidence, and re-muxing could change it. Phones may store a location in
//! MP4/MOV metadata; it stays inside the sealed report with the recording.

use std::io::{Cursor, Read};

use bytes::Bytes;
use image::ImageEncoder;
use sha2::{Digest, Sha256};

/// What can go wrong taking in media.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A format this build cannot take in.
    #[error("{0}")]
    Unsupported(String),
    /// The file is damaged or not what it claims to be.
    #[error("{0}")]
    Invalid(String),
    /// Reading failed.
    #[error("cannot read the media: {0}")]
    Io(#[from] std::io::Error),
}

/// Photo formats taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoFormat {
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
}

impl PhotoFormat {
    /// MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            PhotoFormat::Jpeg => "image/jpeg",
            PhotoFormat::Png => "image/png",
        }
    }

    /// File extension.
    pub fn ext(self) -> &'static str {
        match self {
            PhotoFormat::Jpeg => "jpg",
            PhotoFormat::Png => "png",
        }
    }
}

/// A photo ready for a report.
#[derive(Debug, Clone)]
pub struct Photo {
    /// The sanitised bytes.
    pub bytes: Vec<u8>,
    /// Its format.
    pub format: PhotoFormat,
    /// Width after orientation.
    pub width: u32,
    /// Height after orientation.
    pub height: u32,
    /// Whether pixels were re-encoded (only to apply orientation).
    pub reencoded: bool,
    /// When it was taken, from EXIF `DateTimeOriginal` before the EXIF was
    /// removed (`YYYY-MM-DDTHH:MM:SS`, camera local time, no zone).
    pub captured_at: Option<String>,
    /// How its samples are read, for the PDF, which embeds a JPEG as it is
    /// and must name its colour space (a PNG is drawn from RGB pixels).
    pub samples: Samples,
}

/// The colour model of a photo's samples as embedded in the PDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Samples {
    /// One component.
    Grey,
    /// Three components (YCbCr or RGB: the JPEG decoder converts).
    Rgb,
    /// Four components. `inverted`: an Adobe marker is present, the
    /// convention (Photoshop's, and what PDF readers follow) that the
    /// samples are stored as 255 minus the ink.
    Cmyk {
        /// Whether the samples are stored inverted.
        inverted: bool,
    },
}

/// Whether these first bytes are a HEIF container (HEIC photo).
pub fn is_heif(head: &[u8]) -> bool {
    head.len() >= 12
        && &head[4..8] == b"ftyp"
        && matches!(
            &head[8..12],
            b"heic" | b"heix" | b"heim" | b"heis" | b"mif1" | b"msf1" | b"hevc"
        )
}

/// Recognises a photo by its first bytes: the format it is kept in (a
/// HEIC photo becomes a JPEG).
pub fn sniff_photo(head: &[u8]) -> Result<PhotoFormat, MediaError> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(PhotoFormat::Jpeg)
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(PhotoFormat::Png)
    } else if is_heif(head) {
        if cfg!(feature = "heic") {
            Ok(PhotoFormat::Jpeg)
        } else {
            Err(MediaError::Unsupported(
                "HEIC photos are not supported by this build; export the photo as JPEG".into(),
            ))
        }
    } else {
        Err(MediaError::Unsupported(
            "not a JPEG, PNG or HEIC photo".into(),
        ))
    }
}

/// A HEIC photo as a clean JPEG: decoded with its transformations applied,
/// re-encoded from the pixels alone; and when it was taken, from its EXIF.
#[cfg(feature = "heic")]
fn heic_to_jpeg(bytes: &[u8]) -> Result<(Vec<u8>, Option<String>), MediaError> {
    use libheif_rs::{ColorSpace, HeifContext, LibHeif, RgbChroma};
    let bad = |e: libheif_rs::HeifError| {
        MediaError::Invalid(format!("cannot decode the HEIC photo: {e}"))
    };
    let lib = LibHeif::new();
    let ctx = HeifContext::read_from_bytes(bytes).map_err(bad)?;
    let handle = ctx.primary_image_handle().map_err(bad)?;
    // Decoded whole into RGB: bounded like any other photo (a phone's is
    // 12 to 48 megapixels).
    if u64::from(handle.width()) * u64::from(handle.height()) > MAX_HEIC_PIXELS {
        return Err(MediaError::Invalid(format!(
            "the HEIC photo is {} x {} pixels, more than this accepts",
            handle.width(),
            handle.height()
        )));
    }
    // The colour profile (an iPhone's Display P3) is kept, as for JPEG and
    // PNG: clinical colour depends on it.
    let icc = handle.color_profile_raw().filter(|p| {
        use libheif_rs::{ColorProfile, color_profile_types as t};
        [t::PROF, t::R_ICC].contains(&p.profile_type())
    });
    // EXIF in HEIF: a 4-byte offset to the TIFF header, then the TIFF data.
    let mut ids = [0; 1];
    let captured_at = (handle.metadata_block_ids(&mut ids, b"Exif") == 1)
        .then(|| handle.metadata(ids[0]).ok())
        .flatten()
        .and_then(|exif| {
            let skip = u32::from_be_bytes(exif.get(..4)?.try_into().ok()?) as usize;
            exif_time(exif.get(4 + skip..)?)
        });
    let image = lib
        .decode(&handle, ColorSpace::Rgb(RgbChroma::Rgb), None)
        .map_err(bad)?;
    let plane = image
        .planes()
        .interleaved
        .ok_or_else(|| MediaError::Invalid("the HEIC photo has no RGB image".into()))?;
    let (w, h) = (plane.width, plane.height);
    let row = w as usize * 3;
    let mut rgb = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        let start = y * plane.stride;
        let line = plane
            .data
            .get(start..start + row)
            .ok_or_else(|| MediaError::Invalid("the HEIC photo is damaged".into()))?;
        rgb.extend_from_slice(line);
    }
    let mut out = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92);
    if let Some(p) = icc {
        // An encoder that cannot embed it makes an untagged JPEG (sRGB).
        let _ = encoder.set_icc_profile(p.data);
    }
    encoder
        .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| MediaError::Invalid(format!("cannot encode: {e}")))?;
    Ok((out, captured_at))
}

/// `DateTimeOriginal` from raw TIFF-structured EXIF.
#[cfg(feature = "heic")]
fn exif_time(tiff: &[u8]) -> Option<String> {
    let exif = exif::Reader::new().read_raw(tiff.to_vec()).ok()?;
    date_time_original(&exif)
}

fn date_time_original(exif: &exif::Exif) -> Option<String> {
    exif.get_field(exif::Tag::DateTimeOriginal, exif::In::PRIMARY)
        .and_then(|f| match &f.value {
            exif::Value::Ascii(v) => v.first().and_then(|b| exif::DateTime::from_ascii(b).ok()),
            _ => None,
        })
        .map(|d| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                d.year, d.month, d.day, d.hour, d.minute, d.second
            )
        })
}

/// The two EXIF facts worth keeping, read before the EXIF goes: the
/// orientation (1–8, default 1) and when the photo was taken.
fn exif_facts(bytes: &[u8]) -> (u8, Option<String>) {
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return (1, None);
    };
    let orientation = exif
        .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .and_then(|v| u8::try_from(v).ok())
        .filter(|v| (1..=8).contains(v))
        .unwrap_or(1);
    (orientation, date_time_original(&exif))
}

/// PNG chunks kept: the image itself and how to show its colours.
/// Largest photo accepted: photos are decoded whole, and a clinical photo
/// (even a camera RAW export) is far smaller. Also the bound for a path that
/// names a device.
pub const MAX_PHOTO_BYTES: u64 = 256 << 20;

/// Largest HEIC photo decoded, in pixels (three bytes each once decoded).
#[cfg(feature = "heic")]
const MAX_HEIC_PIXELS: u64 = 120_000_000;

const PNG_KEEP: &[&[u8; 4]] = &[
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
    b"pHYs",
];

/// The Adobe marker's identifier (APP14), which only says how samples are
/// stored.
const ADOBE: &[u8] = b"Adobe";

/// The Adobe marker with nothing kept but its colour transform (its last
/// byte): version 100, no flags.
fn canonical_adobe(contents: &[u8]) -> Option<Bytes> {
    let transform = *contents.get(11)?;
    let mut c = b"Adobe\x00\x64\x00\x00\x00\x00".to_vec();
    c.push(transform);
    Some(Bytes::from(c))
}

/// Whether a segment is part of the picture: frame and scan headers,
/// Huffman, arithmetic and quantisation tables, restart interval, line
/// count, hierarchical progression. Anything else (application data,
/// comments, reserved and extension markers) may carry what it likes and
/// is dropped.
fn is_image_segment(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF | 0xDA..=0xDF) && marker != 0xC8
}

/// Whether a marker is followed by a two-byte length and that many bytes
/// less two (all but SOI, EOI, RST0–7 and TEM).
fn has_length(marker: u8) -> bool {
    !matches!(marker, 0x01 | 0xD0..=0xD9)
}

/// The entropy-coded data of a JPEG from after its first scan header to
/// the end of the file, as img-parts leaves it: the first scan, then any
/// further tables and scans (a progressive JPEG), the end-of-image marker
/// and whatever follows it. Answers the same up to and including the end
/// of image, with only picture segments ([`is_image_segment`]) between
/// scans and nothing after; a file that stops before its end-of-image marker is
/// given one.
fn clean_scans(data: &[u8]) -> Result<Vec<u8>, MediaError> {
    let damaged = || MediaError::Invalid("damaged JPEG: a segment runs past the end".into());
    let mut out = Vec::with_capacity(data.len());
    let mut at = 0;
    while let Some(ff) = data[at..].iter().position(|&b| b == 0xFF).map(|i| at + i) {
        // Fill bytes (0xFF repeated) may precede a marker.
        let mut m = ff + 1;
        while data.get(m) == Some(&0xFF) {
            m += 1;
        }
        let Some(&marker) = data.get(m) else {
            // A marker cut off at the end of the file: not kept.
            out.extend_from_slice(&data[at..ff]);
            at = data.len();
            break;
        };
        if marker == 0x00 || (0xD0..=0xD7).contains(&marker) {
            // A stuffed 0xFF or a restart marker: still the scan's data.
            out.extend_from_slice(&data[at..=m]);
            at = m + 1;
            continue;
        }
        out.extend_from_slice(&data[at..ff]);
        if marker == 0xD9 {
            out.extend_from_slice(&[0xFF, 0xD9]);
            return Ok(out);
        }
        if !has_length(marker) {
            out.extend_from_slice(&[0xFF, marker]);
            at = m + 1;
            continue;
        }
        let len = data
            .get(m + 1..m + 3)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            .filter(|&l| l >= 2)
            .ok_or_else(damaged)?;
        let end = m + 1 + len;
        let segment = data.get(m + 1..end).ok_or_else(damaged)?;
        if is_image_segment(marker) {
            out.extend_from_slice(&[0xFF, marker]);
            out.extend_from_slice(segment);
        }
        at = end;
    }
    out.extend_from_slice(&data[at..]);
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

/// Drops every metadata segment; answers the bytes left and how their
/// samples are read.
fn strip_jpeg(bytes: Vec<u8>) -> Result<(Vec<u8>, Samples), MediaError> {
    use img_parts::jpeg::JpegSegment;
    let all = Bytes::from(bytes);
    let mut jpeg = img_parts::jpeg::Jpeg::from_bytes(all.clone())
        .map_err(|e| MediaError::Invalid(format!("damaged JPEG: {e}")))?;
    let segments = std::mem::take(jpeg.segments_mut());
    for s in segments {
        let m = s.marker();
        let c = s.contents();
        let kept = if m == 0xEE && c.starts_with(ADOBE) {
            canonical_adobe(c).map(|c| JpegSegment::new_with_contents(m, c))
        } else if s.has_entropy() {
            // The first scan's data is the rest of the file.
            let rest = s.len_with_entropy() - s.len();
            let scans = clean_scans(&all[all.len() - rest..])?;
            Some(JpegSegment::new_with_entropy(
                m,
                c.clone(),
                Bytes::from(scans),
            ))
        } else if is_image_segment(m)
            || (m == 0xE0 && c.starts_with(b"JFIF\0"))
            || (m == 0xE2 && c.starts_with(b"ICC_PROFILE\0"))
        {
            // The picture, JFIF and the colour profile.
            Some(s)
        } else {
            None
        };
        jpeg.segments_mut().extend(kept);
    }
    let samples = jpeg_samples(jpeg.segments())?;
    let mut out = Vec::new();
    jpeg.encoder().write_to(&mut out)?;
    Ok((out, samples))
}

/// How a JPEG's samples are read: the component count in its frame header
/// (SOF0–SOF15, which are every marker from 0xC0 to 0xCF but DHT, JPG and
/// DAC), and for four, whether an Adobe marker is present.
fn jpeg_samples(segments: &[img_parts::jpeg::JpegSegment]) -> Result<Samples, MediaError> {
    let frame = segments
        .iter()
        .find(|s| (0xC0..=0xCF).contains(&s.marker()) && ![0xC4, 0xC8, 0xCC].contains(&s.marker()))
        .ok_or_else(|| MediaError::Invalid("damaged JPEG: no frame header".into()))?;
    let (Some(&precision), Some(&components)) = (frame.contents().first(), frame.contents().get(5))
    else {
        return Err(MediaError::Invalid(
            "damaged JPEG: a short frame header".into(),
        ));
    };
    // Baseline, extended and progressive Huffman coding of 8-bit samples:
    // what cameras write, and what a PDF reader's DCTDecode reads.
    if !matches!(frame.marker(), 0xC0..=0xC2) || precision != 8 {
        return Err(MediaError::Unsupported(format!(
            "a JPEG coded as SOF{} with {precision}-bit samples is not supported (only baseline or progressive 8-bit)",
            frame.marker() - 0xC0
        )));
    }
    match components {
        1 => Ok(Samples::Grey),
        3 => Ok(Samples::Rgb),
        4 => Ok(Samples::Cmyk {
            inverted: segments
                .iter()
                .any(|s| s.marker() == 0xEE && s.contents().starts_with(ADOBE)),
        }),
        n => Err(MediaError::Unsupported(format!(
            "a JPEG of {n} colour components is not supported (only grey, colour and CMYK)"
        ))),
    }
}

fn strip_png(bytes: Vec<u8>) -> Result<Vec<u8>, MediaError> {
    let mut png = img_parts::png::Png::from_bytes(Bytes::from(bytes))
        .map_err(|e| MediaError::Invalid(format!("damaged PNG: {e}")))?;
    png.chunks_mut().retain(|c| PNG_KEEP.contains(&&c.kind()));
    let mut out = Vec::new();
    png.encoder().write_to(&mut out)?;
    Ok(out)
}

/// Re-encodes with orientation applied; encoders here write no metadata.
fn reorient(bytes: &[u8], format: PhotoFormat, orientation: u8) -> Result<Vec<u8>, MediaError> {
    let mut img = image::load_from_memory(bytes)
        .map_err(|e| MediaError::Invalid(format!("cannot decode the photo: {e}")))?;
    if let Some(o) = image::metadata::Orientation::from_exif(orientation) {
        img.apply_orientation(o);
    }
    let mut out = Vec::new();
    let enc_err = |e: image::ImageError| MediaError::Invalid(format!("cannot encode: {e}"));
    match format {
        PhotoFormat::Jpeg => {
            let rgb = img.to_rgb8();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
                .write_image(
                    &rgb,
                    rgb.width(),
                    rgb.height(),
                    image::ExtendedColorType::Rgb8,
                )
                .map_err(enc_err)?;
        }
        PhotoFormat::Png => {
            let rgba = img.to_rgba8();
            image::codecs::png::PngEncoder::new(&mut out)
                .write_image(
                    &rgba,
                    rgba.width(),
                    rgba.height(),
                    image::ExtendedColorType::Rgba8,
                )
                .map_err(enc_err)?;
        }
    }
    Ok(out)
}

/// Takes in a photo: orientation applied, every metadata segment removed.
pub fn sanitise_photo(bytes: Vec<u8>) -> Result<Photo, MediaError> {
    let format = sniff_photo(&bytes)?;
    #[cfg(feature = "heic")]
    if is_heif(&bytes) {
        let (jpeg, captured_at) = heic_to_jpeg(&bytes)?;
        drop(bytes);
        let mut photo = sanitise_photo(jpeg)?;
        photo.captured_at = captured_at;
        photo.reencoded = true;
        return Ok(photo);
    }
    let (orientation, captured_at) = exif_facts(&bytes);
    let reencoded = orientation != 1;
    // Re-encoded from the original when turned, then stripped of what the
    // encoder kept.
    let source = if reencoded {
        reorient(&bytes, format, orientation)?
    } else {
        bytes
    };
    let (clean, samples) = match format {
        PhotoFormat::Jpeg => strip_jpeg(source)?,
        PhotoFormat::Png => (strip_png(source)?, Samples::Rgb),
    };
    let (width, height) = image::ImageReader::new(Cursor::new(&clean))
        .with_guessed_format()?
        .into_dimensions()
        .map_err(|e| MediaError::Invalid(format!("cannot read the photo's size: {e}")))?;
    Ok(Photo {
        bytes: clean,
        format,
        width,
        height,
        reencoded,
        captured_at,
        samples,
    })
}

/// Audio and video container types recognised.
pub fn sniff_av(head: &[u8]) -> Option<&'static str> {
    if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        return Some("audio/wav");
    }
    if head.starts_with(b"ID3") || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0) {
        return Some("audio/mpeg");
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Some(match &head[8..12] {
            b"M4A " | b"M4B " => "audio/mp4",
            b"qt  " => "video/quicktime",
            _ => "video/mp4",
        });
    }
    // What browsers' MediaRecorder makes: WebM (Chromium; audio or video,
    // like MP4, so named as video until the caller says which) and Ogg
    // (Firefox's audio).
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some("video/webm");
    }
    if head.starts_with(b"OggS") {
        return Some("audio/ogg");
    }
    None
}

/// Duration in seconds of a WAV, MP4/M4A or MOV file, read from its
/// headers (`None` if they do not say, e.g. an MP3 without a header).
#[cfg(feature = "native")]
pub fn av_duration(path: &std::path::Path) -> Option<f64> {
    let f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    duration_in(f, len)
}

/// [`av_duration`] of a recording in memory. A browser's WebM or Ogg
/// recording says nothing (its recorder writes no duration): `None`.
pub fn av_duration_of(bytes: &[u8]) -> Option<f64> {
    duration_in(Cursor::new(bytes), bytes.len() as u64)
}

fn duration_in<R: Read + std::io::Seek>(mut f: R, len: u64) -> Option<f64> {
    use std::io::SeekFrom;
    let mut head = [0u8; 44];
    f.read_exact(&mut head).ok()?;
    if &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        // Canonical header: byte rate at 28, data size at 40.
        let byte_rate = u32::from_le_bytes(head[28..32].try_into().ok()?);
        let data = u32::from_le_bytes(head[40..44].try_into().ok()?);
        return (byte_rate > 0 && &head[36..40] == b"data").then(|| data as f64 / byte_rate as f64);
    }
    // ISO base media: walk top-level boxes to `moov`, then find `mvhd`.
    let mut pos = 0u64;
    while pos + 8 <= len {
        f.seek(SeekFrom::Start(pos)).ok()?;
        let mut h = [0u8; 16];
        f.read_exact(&mut h[..8]).ok()?;
        let mut size = u32::from_be_bytes(h[0..4].try_into().ok()?) as u64;
        let kind = [h[4], h[5], h[6], h[7]];
        let mut header = 8;
        if size == 1 {
            f.read_exact(&mut h[8..16]).ok()?;
            size = u64::from_be_bytes(h[8..16].try_into().ok()?);
            header = 16;
        } else if size == 0 {
            size = len - pos;
        }
        if size < header {
            return None;
        }
        if &kind == b"moov" {
            let body = size.checked_sub(header)?.min(64 << 20) as usize;
            let mut moov = vec![0u8; body];
            f.read_exact(&mut moov).ok()?;
            let at = moov.windows(4).position(|w| w == b"mvhd")? + 4;
            let version = *moov.get(at)?;
            let (scale_at, dur_at, dur_len) = if version == 1 {
                (at + 20, at + 24, 8)
            } else {
                (at + 12, at + 16, 4)
            };
            let scale = u32::from_be_bytes(moov.get(scale_at..scale_at + 4)?.try_into().ok()?);
            let dur = if dur_len == 8 {
                u64::from_be_bytes(moov.get(dur_at..dur_at + 8)?.try_into().ok()?)
            } else {
                u32::from_be_bytes(moov.get(dur_at..dur_at + 4)?.try_into().ok()?) as u64
            };
            return (scale > 0).then(|| dur as f64 / scale as f64);
        }
        pos = pos.checked_add(size)?;
    }
    None
}

/// SHA-256 and size of a stream, read in constant memory.
pub fn hash_stream(mut r: impl Read) -> Result<(String, u64), MediaError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    pub(crate) use crate::fixtures::{exif_block, phone_jpeg};

    fn has_exif(bytes: &[u8]) -> bool {
        exif::Reader::new()
            .read_from_container(&mut Cursor::new(bytes))
            .is_ok()
    }

    #[test]
    fn gps_and_device_metadata_are_removed_losslessly() {
        let photo = phone_jpeg(1);
        assert!(has_exif(&photo), "the fixture carries EXIF");
        let exif = exif::Reader::new()
            .read_from_container(&mut Cursor::new(&photo))
            .unwrap();
        assert!(
            exif.get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY)
                .is_some()
        );
        let clean = sanitise_photo(photo.clone()).unwrap();
        assert!(!clean.reencoded);
        assert!(!has_exif(&clean.bytes));
        for needle in [&b"PhoneCo"[..], b"serial 12345", b"J. Doe", b"Exif"] {
            assert!(!clean.bytes.windows(needle.len()).any(|w| w == needle));
        }
        assert_eq!((clean.width, clean.height), (40, 20));
        // The compressed image data is untouched: same pixels when decoded.
        let a = image::load_from_memory(&photo).unwrap().to_rgb8();
        let b = image::load_from_memory(&clean.bytes).unwrap().to_rgb8();
        assert_eq!(a, b);
    }

    /// `jpeg` with `extra` put just before its end-of-image marker.
    fn before_eoi(jpeg: &[u8], extra: &[u8]) -> Vec<u8> {
        let end = jpeg.len() - 2;
        assert_eq!(jpeg[end..], [0xFF, 0xD9]);
        [&jpeg[..end], extra, &jpeg[end..]].concat()
    }

    /// A segment: marker, length, contents.
    fn segment(marker: u8, contents: &[u8]) -> Vec<u8> {
        let len = u16::try_from(contents.len() + 2).unwrap().to_be_bytes();
        [&[0xFF, marker][..], &len, contents].concat()
    }

    #[test]
    fn what_follows_the_image_or_hides_between_scans_is_removed() {
        let photo = phone_jpeg(1);
        let pixels = image::load_from_memory(&photo).unwrap().to_rgb8();
        // Metadata after the first scan (where a progressive JPEG has its
        // next tables and scans), a restart marker and stuffed bytes in
        // the scan, and after the end of the image a second picture with
        // its own EXIF and a "motion photo" video, as phones append them.
        let mut with = before_eoi(
            &photo,
            &[
                segment(0xE1, b"Exif\0\0GPS 51.5N SECRET-SERIAL"),
                segment(0xFE, b"J. Doe's ward"),
                segment(0xC4, &[0x00; 17]),
            ]
            .concat(),
        );
        with.extend_from_slice(&phone_jpeg(1));
        with.extend_from_slice(b"\0\0\0\x18ftypmp42 MotionPhoto_Data GPS");
        let clean = sanitise_photo(with).unwrap();
        for needle in [
            &b"SECRET-SERIAL"[..],
            b"J. Doe",
            b"Exif",
            b"ftyp",
            b"MotionPhoto",
        ] {
            assert!(
                !clean.bytes.windows(needle.len()).any(|w| w == needle),
                "{}",
                String::from_utf8_lossy(needle)
            );
        }
        assert_eq!(
            clean
                .bytes
                .windows(2)
                .filter(|w| w == &[0xFF, 0xD8])
                .count(),
            1
        );
        assert!(clean.bytes.ends_with(&[0xFF, 0xD9]));
        // A table between scans is image data, and stays.
        assert!(
            clean
                .bytes
                .windows(5)
                .any(|w| w == [0xFF, 0xC4, 0x00, 0x13, 0x00])
        );
        // A file cut before its end-of-image marker is given one.
        let cut = sanitise_photo(photo[..photo.len() - 2].to_vec()).unwrap();
        assert!(cut.bytes.ends_with(&[0xFF, 0xD9]));
        assert_eq!(
            image::load_from_memory(&cut.bytes).unwrap().to_rgb8(),
            pixels
        );
        // A segment whose length runs past the end is refused.
        let short = before_eoi(&photo, &[0xFF, 0xE1, 0x40, 0x00, b'E']);
        let short = &short[..short.len() - 2];
        let err = sanitise_photo(short.to_vec()).unwrap_err().to_string();
        assert!(err.contains("damaged JPEG"), "{err}");
    }

    #[test]
    fn the_adobe_marker_keeps_its_transform_alone() {
        // Version, flags and any bytes past the twelve are not kept.
        let mut adobe = b"Adobe\x00\x65\x12\x34\x56\x78\x00EXTRA".to_vec();
        let at = CMYK_RED.windows(5).position(|w| w == b"Adobe").unwrap() - 4;
        let end = at + 4 + 12;
        let long = [&CMYK_RED[..at], &segment(0xEE, &adobe), &CMYK_RED[end..]].concat();
        let clean = sanitise_photo(long).unwrap();
        assert_eq!(clean.samples, Samples::Cmyk { inverted: true });
        let kept = clean.bytes.windows(5).position(|w| w == b"Adobe").unwrap();
        assert_eq!(clean.bytes[kept - 4..kept - 2], [0xFF, 0xEE]);
        assert_eq!(clean.bytes[kept - 2..kept], [0, 14]);
        assert_eq!(
            clean.bytes[kept..kept + 12],
            *b"Adobe\x00\x64\x00\x00\x00\x00\x00"
        );
        assert!(!clean.bytes.windows(5).any(|w| w == b"EXTRA"));
        // One too short to hold a transform is dropped.
        adobe.truncate(8);
        let short = [&CMYK_RED[..at], &segment(0xEE, &adobe), &CMYK_RED[end..]].concat();
        assert!(
            !sanitise_photo(short)
                .unwrap()
                .bytes
                .windows(5)
                .any(|w| w == b"Adobe")
        );
    }

    #[test]
    fn orientation_is_applied_then_dropped() {
        let clean = sanitise_photo(phone_jpeg(6)).unwrap();
        assert!(clean.reencoded);
        assert_eq!((clean.width, clean.height), (20, 40), "rotated 90°");
        assert!(!has_exif(&clean.bytes));
        assert!(!clean.bytes.windows(7).any(|w| w == b"PhoneCo"));
    }

    #[test]
    fn png_text_chunks_are_removed() {
        let img = image::RgbaImage::from_pixel(3, 3, image::Rgba([1, 2, 3, 255]));
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&img, 3, 3, image::ExtendedColorType::Rgba8)
            .unwrap();
        let mut p = img_parts::png::Png::from_bytes(Bytes::from(png)).unwrap();
        let n = p.chunks().len();
        p.chunks_mut().insert(
            n - 1,
            img_parts::png::PngChunk::new(*b"tEXt", Bytes::from_static(b"Comment\0GPS 51.5N")),
        );
        p.chunks_mut().insert(
            n - 1,
            img_parts::png::PngChunk::new(*b"eXIf", Bytes::from(exif_block(1)[6..].to_vec())),
        );
        let mut with_meta = Vec::new();
        p.encoder().write_to(&mut with_meta).unwrap();
        let clean = sanitise_photo(with_meta).unwrap();
        assert!(!clean.bytes.windows(3).any(|w| w == b"GPS"));
        assert!(!clean.bytes.windows(4).any(|w| w == b"eXIf"));
        assert_eq!(clean.format, PhotoFormat::Png);
    }

    #[test]
    fn unsupported_and_damaged_inputs_are_clear_errors() {
        let mut heic = vec![0, 0, 0, 24];
        heic.extend_from_slice(b"ftypheic\0\0\0\0");
        assert!(
            sanitise_photo(heic)
                .unwrap_err()
                .to_string()
                .contains("HEIC")
        );
        assert!(sanitise_photo(b"GIF89a".to_vec()).is_err());
        assert!(sanitise_photo(vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4]).is_err());
        assert!(sanitise_photo(Vec::new()).is_err());
    }

    /// A 32 x 16 CMYK JPEG of red ink (no cyan, full magenta and yellow,
    /// no black) with an Adobe marker, samples stored inverted.
    pub(crate) const CMYK_RED: &[u8] = include_bytes!("../testdata/cmyk-adobe.jpg");

    #[test]
    fn the_colour_model_is_read_and_the_adobe_marker_kept() {
        let photo = sanitise_photo(CMYK_RED.to_vec()).unwrap();
        assert_eq!(photo.samples, Samples::Cmyk { inverted: true });
        assert!(!photo.reencoded);
        // Without the marker a decoder would read the ink the wrong way round.
        assert!(photo.bytes.windows(5).any(|w| w == b"Adobe"));
        assert_eq!((photo.width, photo.height), (32, 16));

        assert_eq!(sanitise_photo(phone_jpeg(1)).unwrap().samples, Samples::Rgb);
        let grey = image::GrayImage::from_pixel(8, 8, image::Luma([90]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .write_image(&grey, 8, 8, image::ExtendedColorType::L8)
            .unwrap();
        assert_eq!(sanitise_photo(jpeg).unwrap().samples, Samples::Grey);

        // A frame header that names two components is refused, not guessed;
        // so are codings a PDF reader cannot show (lossless, 12-bit).
        let sof = CMYK_RED.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        for (at, value, said) in [
            (9, 2, "2 colour components"),
            (1, 0xC3, "SOF3"),
            (4, 12, "12-bit"),
        ] {
            let mut odd = CMYK_RED.to_vec();
            odd[sof + at] = value;
            let err = sanitise_photo(odd).unwrap_err().to_string();
            assert!(err.contains(said), "{err}");
        }
    }

    #[test]
    fn durations_from_headers() {
        let dir = tempfile::tempdir().unwrap();
        // WAV: 8000 bytes/s, 12000 bytes of data.
        let mut wav = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0".to_vec();
        wav.extend_from_slice(&8000u32.to_le_bytes());
        wav.extend_from_slice(&8000u32.to_le_bytes());
        wav.extend_from_slice(&[1, 0, 8, 0]);
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&12000u32.to_le_bytes());
        wav.extend_from_slice(&[0u8; 12000]);
        let p = dir.path().join("a.wav");
        std::fs::write(&p, &wav).unwrap();
        assert_eq!(av_duration(&p), Some(1.5));
        // MP4 with mdat before moov; mvhd v0: timescale 1000, duration 2500.
        let mut mp4 = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
        mp4.extend_from_slice(&(8u32 + 100).to_be_bytes());
        mp4.extend_from_slice(b"mdat");
        mp4.extend_from_slice(&[7u8; 100]);
        let mut mvhd = b"mvhd\0\0\0\0".to_vec();
        mvhd.extend_from_slice(&[0u8; 8]);
        mvhd.extend_from_slice(&1000u32.to_be_bytes());
        mvhd.extend_from_slice(&2500u32.to_be_bytes());
        mp4.extend_from_slice(&(8u32 + 4 + mvhd.len() as u32).to_be_bytes());
        mp4.extend_from_slice(b"moov");
        mp4.extend_from_slice(&(4 + mvhd.len() as u32).to_be_bytes());
        mp4.extend_from_slice(&mvhd);
        let p = dir.path().join("v.mp4");
        std::fs::write(&p, &mp4).unwrap();
        assert_eq!(av_duration(&p), Some(2.5));
        // Damaged or unknown: no duration, no panic.
        for bad in [
            &mp4[..30],
            b"\0\0\0\x01moov",
            b"ID3\x04 nothing here at all, long enough",
        ] {
            std::fs::write(&p, bad).unwrap();
            assert_eq!(av_duration(&p), None);
        }
    }

    #[test]
    fn av_types_and_hashes() {
        assert_eq!(sniff_av(b"RIFF\0\0\0\0WAVEfmt "), Some("audio/wav"));
        assert_eq!(sniff_av(b"\0\0\0\x20ftypqt  \0\0"), Some("video/quicktime"));
        assert_eq!(sniff_av(b"\0\0\0\x20ftypisom\0\0"), Some("video/mp4"));
        assert_eq!(sniff_av(b"\0\0\0\x20ftypM4A \0\0"), Some("audio/mp4"));
        assert_eq!(sniff_av(b"ID3\x04"), Some("audio/mpeg"));
        assert_eq!(sniff_av(b"hello world!"), None);
        let (h, n) = hash_stream(&b"abc"[..]).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

//! Reading a whole input into memory with an upper bound.
//!
//! Small inputs named by users (password and key files, configuration, PEM
//! files, photos) are read whole. A path can name a device that never ends
//! (`/dev/zero`) or a file far larger than its kind can be, so every such
//! read in medseal goes through here and fails cleanly at the bound instead
//! of exhausting memory. Pipes still work (`--password-file <(…)`).

use std::io::{self, Read};

/// Reads `r` to its end, failing with [`io::ErrorKind::FileTooLarge`] if it
/// holds more than `limit` bytes. At most `limit + 1` bytes are read.
pub fn read_bounded<R: Read>(r: R, limit: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(buf)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_bounded_string<R: Read>(r: R, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(r, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_bound() {
        assert_eq!(read_bounded(&b"abc"[..], 3).unwrap(), b"abc");
        let e = read_bounded(io::repeat(0), 1024).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(read_bounded_string(&[0xff][..], 8).is_err());
    }
}

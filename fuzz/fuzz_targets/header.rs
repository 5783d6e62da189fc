//! The header parser on arbitrary bytes, both as given and with the checksum
//! repaired (so that the fuzzer reaches the field parsers behind it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use medseal_format::Header;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let _ = Header::parse(data);
    let _ = Header::read_from(&mut &data[..]);
    if data.len() > 32 {
        let mut fixed = data.to_vec();
        let n = fixed.len();
        let sum = Sha256::digest(&fixed[..n - 32]);
        fixed[n - 32..].copy_from_slice(&sum);
        if let Ok(h) = Header::parse(&fixed) {
            // A parsed header re-serialises to the same bytes.
            assert_eq!(h.as_bytes(), &fixed[..]);
        }
    }
});

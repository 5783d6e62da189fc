//! Photo intake on arbitrary bytes: a JPEG or PNG from a phone or a file is
//! stripped of its metadata, or refused with an error, never a panic. What
//! comes out is taken in again unchanged: nothing is left to strip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medseal_capture::media::sanitise_photo;

fuzz_target!(|data: &[u8]| {
    let Ok(photo) = sanitise_photo(data.to_vec()) else {
        return;
    };
    if !photo.reencoded {
        let again = sanitise_photo(photo.bytes.clone()).expect("a sanitised photo is taken in again");
        assert_eq!(again.bytes, photo.bytes);
    }
});

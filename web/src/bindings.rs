//! The viewer exported to JavaScript. The worker passes two callbacks:
//! `read(n)` answers a `Uint8Array` of at most `n` bytes of the sealed file
//! (empty at its end; in a worker, `FileReaderSync` over `file.slice`), and
//! `write(bytes)` takes each verified piece of plaintext (the worker keeps
//! them as `Blob` parts). Errors come back as `{class, message}`.

use std::io::{self, Read, Write};

use wasm_bindgen::prelude::*;

use crate::viewer::{self, Contents, Unlock, ViewError};

struct JsReader(js_sys::Function);

impl Read for JsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = self
            .0
            .call1(&JsValue::NULL, &JsValue::from(buf.len() as u32))
            .map_err(|_| io::Error::other("reading the file failed"))?;
        let bytes = js_sys::Uint8Array::new(&got);
        let n = (bytes.length() as usize).min(buf.len());
        bytes.subarray(0, n as u32).copy_to(&mut buf[..n]);
        Ok(n)
    }
}

pub(crate) struct JsWriter(pub(crate) js_sys::Function);

impl Write for JsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let piece = js_sys::Uint8Array::from(buf);
        self.0
            .call1(&JsValue::NULL, &piece)
            .map_err(|_| io::Error::other("keeping the plaintext failed"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) fn js_error(e: ViewError) -> JsValue {
    let o = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&o, &"class".into(), &e.class.into());
    let _ = js_sys::Reflect::set(&o, &"message".into(), &e.message.into());
    o.into()
}

/// The header as JSON text; `read` as for [`open_with_key`].
#[wasm_bindgen]
pub fn describe(read: js_sys::Function, sealed_len: f64) -> Result<String, JsValue> {
    viewer::describe(JsReader(read), sealed_len as u64).map_err(js_error)
}

/// Opens with a base64 key (from the key server, or an organisation key).
#[wasm_bindgen(js_name = openWithKey)]
pub fn open_with_key(
    read: js_sys::Function,
    key_base64: &str,
    write: js_sys::Function,
) -> Result<f64, JsValue> {
    viewer::open(
        JsReader(read),
        Unlock::KeyBase64(key_base64),
        JsWriter(write),
    )
    .map(|n| n as f64)
    .map_err(js_error)
}

/// Opens with a password.
#[wasm_bindgen(js_name = openWithPassword)]
pub fn open_with_password(
    read: js_sys::Function,
    password: &str,
    write: js_sys::Function,
) -> Result<f64, JsValue> {
    viewer::open(JsReader(read), Unlock::Password(password), JsWriter(write))
        .map(|n| n as f64)
        .map_err(js_error)
}

/// Reads an opened file again (`read` over the plaintext): for a report,
/// calls `piece(path, bytes)` for each file's bytes in order and answers
/// the manifest as JSON text once every file matched it; for anything else,
/// answers `null` (a plain file, to be saved as it is).
#[wasm_bindgen(js_name = readReport)]
pub fn read_report(read: js_sys::Function, piece: js_sys::Function) -> Result<JsValue, JsValue> {
    // Each call back into JavaScript may read a Blob through the browser:
    // ask for a megabyte at a time, not the tar reader's 512 bytes.
    let reader = std::io::BufReader::with_capacity(1 << 20, JsReader(read));
    let contents = viewer::read_report(reader, |path, bytes| {
        piece
            .call2(
                &JsValue::NULL,
                &JsValue::from_str(path),
                &js_sys::Uint8Array::from(bytes),
            )
            .map(|_| ())
            .map_err(|_| ViewError {
                class: "environment",
                message: "keeping the report's files failed".into(),
            })
    })
    .map_err(js_error)?;
    Ok(match contents {
        Contents::Report(json) => JsValue::from_str(&json),
        Contents::Plain => JsValue::NULL,
    })
}

/// A sealed file planned for opening with WebCrypto doing the bulk work
/// (see `medseal_format::offload`): the worker asks it where each frame is
/// and what its tag covers, has WebCrypto compute the tag and decrypt, and
/// releases a frame's plaintext only after [`Plan::verify`] accepted it.
#[wasm_bindgen]
pub struct Plan(medseal_format::offload::Offload);

pub(crate) fn format_error(e: medseal_format::Error) -> JsValue {
    js_error(ViewError::from(e))
}

/// Plans opening with a base64 key; `read` reads the file from its start.
#[wasm_bindgen(js_name = planWithKey)]
pub fn plan_with_key(
    read: js_sys::Function,
    key_base64: &str,
    sealed_len: f64,
) -> Result<Plan, JsValue> {
    viewer::plan(
        JsReader(read),
        Unlock::KeyBase64(key_base64),
        sealed_len as u64,
    )
    .map(Plan)
    .map_err(js_error)
}

/// Plans opening with a password.
#[wasm_bindgen(js_name = planWithPassword)]
pub fn plan_with_password(
    read: js_sys::Function,
    password: &str,
    sealed_len: f64,
) -> Result<Plan, JsValue> {
    viewer::plan(
        JsReader(read),
        Unlock::Password(password),
        sealed_len as u64,
    )
    .map(Plan)
    .map_err(js_error)
}

#[wasm_bindgen]
impl Plan {
    /// How many frames the file holds.
    pub fn frames(&self) -> f64 {
        self.0.frames() as f64
    }

    /// Frame `index`: `[offset, length, last (1 or 0)]`.
    pub fn frame(&self, index: f64) -> Result<Vec<f64>, JsValue> {
        let s = self.0.frame(index as u64).map_err(format_error)?;
        Ok(vec![
            s.offset as f64,
            s.len as f64,
            f64::from(u8::from(s.last)),
        ])
    }

    /// What frame `index`'s tag covers before its IV and ciphertext.
    #[wasm_bindgen(js_name = macPrefix)]
    pub fn mac_prefix(&self, index: f64) -> Result<Vec<u8>, JsValue> {
        self.0.mac_prefix(index as u64).map_err(format_error)
    }

    /// Accepts frame `index` if `computed` (the tag WebCrypto computed)
    /// equals `stored` (the frame's last 32 bytes).
    pub fn verify(&self, index: f64, computed: &[u8], stored: &[u8]) -> Result<(), JsValue> {
        self.0
            .verify(index as u64, computed, stored)
            .map_err(format_error)
    }

    /// Why frame `index` (its bytes) failed: truncated, extended, tampered.
    pub fn diagnose(&self, index: f64, frame: &[u8]) -> JsValue {
        format_error(self.0.diagnose(index as u64, frame))
    }

    /// Checks the length of frame `index`'s decrypted plaintext.
    #[wasm_bindgen(js_name = checkPlaintext)]
    pub fn check_plaintext(&self, index: f64, len: f64) -> Result<(), JsValue> {
        self.0
            .check_plaintext(index as u64, len as usize)
            .map_err(format_error)
    }

    /// The encryption key then the chunk-MAC key (64 bytes) for WebCrypto
    /// to import as non-extractable keys; the caller wipes the array.
    #[wasm_bindgen(js_name = exportKeys)]
    pub fn export_keys(&self) -> js_sys::Uint8Array {
        let (enc, mac) = self.0.keys();
        keys_for_engine(&enc, &mac)
    }
}

/// The encryption key then the chunk-MAC key, copied straight into one
/// JavaScript array (which the caller wipes); this side's copies are wiped
/// when the caller drops them.
pub(crate) fn keys_for_engine(enc: &[u8; 32], mac: &[u8; 32]) -> js_sys::Uint8Array {
    let both = js_sys::Uint8Array::new_with_length(64);
    both.subarray(0, 32).copy_from(enc);
    both.subarray(32, 64).copy_from(mac);
    both
}

/// Whether `first` (the first 512 bytes of an opened file) starts a report
/// bundle rather than a plain file.
#[wasm_bindgen(js_name = looksLikeReport)]
pub fn looks_like_report(first: &[u8]) -> bool {
    medseal_format::bundle::looks_like_report(first)
}

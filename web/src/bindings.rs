//! The viewer exported to JavaScript. The worker passes two callbacks:
//! `read(n)` answers a `Uint8Array` of at most `n` bytes of the sealed file
//! (empty at its end; in a worker, `FileReaderSync` over `file.slice`), and
//! `write(bytes)` takes each verified piece of plaintext (the worker keeps
//! them as `Blob` parts). Errors come back as `{class, message}`.

use std::io::{self, Read, Write};

use wasm_bindgen::prelude::*;

use medseal_format::bundle::BundleReader;

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

struct JsWriter(js_sys::Function);

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

fn js_error(e: ViewError) -> JsValue {
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

fn format_error(e: medseal_format::Error) -> JsValue {
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
fn keys_for_engine(enc: &[u8; 32], mac: &[u8; 32]) -> js_sys::Uint8Array {
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

/// A report being captured (see `capture`): `new Capture(formJson,
/// reportId, createdAt, utcOffsetSeconds)`, then `add(kind, name, bytes)`
/// for each file, `build()` (the manifest as JSON, or a refusal), and
/// `sealPlan(origin, keyId, keyBase64)` with the key server's key, for
/// WebCrypto to seal under its control — or, where the page has no
/// WebCrypto, `seal(origin, keyId, keyBase64, write)` in WebAssembly.
#[wasm_bindgen(js_name = Capture)]
pub struct JsCapture(crate::capture::Capture);

#[wasm_bindgen(js_class = Capture)]
impl JsCapture {
    /// A new capture of the form's answers.
    #[wasm_bindgen(constructor)]
    pub fn new(
        form_json: &str,
        report_id: &str,
        created_at: &str,
        utc_offset_seconds: i32,
    ) -> Result<JsCapture, JsValue> {
        crate::capture::Capture::new(form_json, report_id, created_at, utc_offset_seconds)
            .map(JsCapture)
            .map_err(js_error)
    }

    /// Hands over one file; its bytes are copied in and the page may drop
    /// its own copy.
    pub fn add(&mut self, kind: &str, name: &str, bytes: Vec<u8>) -> Result<(), JsValue> {
        self.0.add(kind, name, bytes).map_err(js_error)
    }

    /// Builds the report; answers its manifest as JSON.
    pub fn build(&mut self) -> Result<String, JsValue> {
        self.0.build().map_err(js_error)
    }

    /// Hands the report over to be sealed by WebCrypto under the returned
    /// plan's control; the capture keeps nothing.
    #[wasm_bindgen(js_name = sealPlan)]
    pub fn seal_plan(
        &mut self,
        origin: &str,
        key_id: &str,
        key_base64: &str,
    ) -> Result<SealPlan, JsValue> {
        self.0
            .seal_offload(origin, key_id, key_base64)
            .map(SealPlan)
            .map_err(js_error)
    }

    /// Seals it, handing the sealed file to `write` a frame at a time.
    pub fn seal(
        &mut self,
        origin: &str,
        key_id: &str,
        key_base64: &str,
        write: js_sys::Function,
    ) -> Result<f64, JsValue> {
        self.0
            .seal(origin, key_id, key_base64, JsWriter(write))
            .map(|n| n as f64)
            .map_err(js_error)
    }
}

/// A report being sealed with WebCrypto doing the bulk work (see
/// `medseal_format::offload`): the worker writes `header()`, then for each
/// frame `next()` gives — its plaintext cut, its IV drawn and its `last`
/// flag decided here — encrypts, computes the tag over `macPrefix ‖ IV ‖
/// ciphertext`, has the lengths checked (`check`) and writes
/// `IV ‖ ciphertext ‖ tag`, in order.
#[wasm_bindgen]
pub struct SealPlan(medseal_format::offload::SealOffload<BundleReader<'static>>);

#[wasm_bindgen]
impl SealPlan {
    /// The sealed file's first bytes.
    pub fn header(&self) -> Vec<u8> {
        self.0.header().to_vec()
    }

    /// The encryption key then the chunk-MAC key (64 bytes) for WebCrypto
    /// to import as non-extractable keys; the caller wipes the array.
    #[wasm_bindgen(js_name = exportKeys)]
    pub fn export_keys(&self) -> js_sys::Uint8Array {
        let (enc, mac) = self.0.keys();
        keys_for_engine(&enc, &mac)
    }

    /// The next frame to seal, or `undefined` after the last.
    pub fn next(&mut self) -> Result<Option<SealFrame>, JsValue> {
        self.0
            .next_frame()
            .map(|f| f.map(SealFrame))
            .map_err(format_error)
    }

    /// The sealed file's length once every frame given is written.
    #[wasm_bindgen(js_name = sealedLength)]
    pub fn sealed_length(&self) -> f64 {
        self.0.summary().sealed_len as f64
    }
}

/// One frame of a [`SealPlan`].
#[wasm_bindgen]
pub struct SealFrame(medseal_format::offload::SealFrame);

#[wasm_bindgen]
impl SealFrame {
    /// Whether it is the last frame: its ciphertext keeps WebCrypto's
    /// padding; every other frame's drops its final block.
    #[wasm_bindgen(getter)]
    pub fn last(&self) -> bool {
        self.0.last
    }

    /// Its IV.
    pub fn iv(&self) -> Vec<u8> {
        self.0.iv.to_vec()
    }

    /// What its tag covers before the IV.
    #[wasm_bindgen(js_name = macPrefix)]
    pub fn mac_prefix(&self) -> Vec<u8> {
        self.0.mac_prefix.clone()
    }

    /// Its plaintext, handed over once (this side's copy is wiped).
    #[wasm_bindgen(js_name = takePlaintext)]
    pub fn take_plaintext(&mut self) -> js_sys::Uint8Array {
        let plain = std::mem::take(&mut self.0.plaintext);
        js_sys::Uint8Array::from(&plain[..])
    }

    /// Checks the lengths of the ciphertext and tag WebCrypto made.
    pub fn check(&self, ciphertext_len: f64, tag_len: f64) -> Result<(), JsValue> {
        self.0
            .check(ciphertext_len as usize, tag_len as usize)
            .map_err(format_error)
    }
}

/// A fresh report id, as `medseal capture` makes them.
#[wasm_bindgen(js_name = newReportId)]
pub fn new_report_id() -> Result<String, JsValue> {
    crate::capture::new_report_id().map_err(js_error)
}

//! The capture exported to JavaScript (the `capture` feature: a WebAssembly
//! module of its own, `medseal_capture_bg.wasm`, loaded only by the capture
//! worker, so that the viewer's stays small).

use medseal_format::bundle::BundleReader;
use wasm_bindgen::prelude::*;

use crate::bindings::{JsWriter, format_error, js_error, keys_for_engine};

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
/// ciphertext`, has the result accepted (`accept`: the lengths, the IV, the
/// first and final blocks decrypted here, and the last frame opened here
/// whole) and writes `IV ‖ ciphertext ‖ tag`, in order; `finish()` then
/// answers the sealed length, or refuses a file a frame of which was not
/// sealed or not accepted.
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

    /// Accepts what WebCrypto made of `frame`: `body` is `IV ‖ ciphertext`,
    /// `tag` the tag. Of a frame that is not audited only the 64 bytes its
    /// `ends` name are copied in; an audited frame is copied whole.
    pub fn accept(
        &mut self,
        frame: &mut SealFrame,
        body: &js_sys::Uint8Array,
        tag: &js_sys::Uint8Array,
    ) -> Result<(), JsValue> {
        let len = body.length() as usize;
        let ct_len = len.saturating_sub(16);
        let seen = frame.0.gather(
            len,
            |r| body.subarray(r.start as u32, r.end as u32).to_vec(),
            &tag.to_vec(),
        );
        self.0
            .accept(&mut frame.0, ct_len, tag.length() as usize, &seen)
            .map_err(format_error)
    }

    /// The sealed file's length, once every frame was sealed and accepted.
    pub fn finish(&self) -> Result<f64, JsValue> {
        self.0
            .finish()
            .map(|s| s.sealed_len as f64)
            .map_err(format_error)
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

    /// Its plaintext, handed over once (this side keeps a copy only to
    /// check the last frame against, wiped with the frame).
    #[wasm_bindgen(js_name = takePlaintext)]
    pub fn take_plaintext(&mut self) -> js_sys::Uint8Array {
        js_sys::Uint8Array::from(&self.0.take_plaintext()[..])
    }
}

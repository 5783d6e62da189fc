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
    let contents = viewer::read_report(JsReader(read), |path, bytes| {
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

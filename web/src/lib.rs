//! # medseal-web
//!
//! The sealed-report format in the browser. This crate is `medseal-format`
//! compiled to WebAssembly with a thin binding for the web app: the browser
//! opens a report with the very code the command line uses, not a second
//! implementation in JavaScript. It runs in a Web Worker, reads the sealed
//! file a frame at a time from the `File` the user chose (nothing is sent
//! anywhere), verifies each chunk before releasing its plaintext, and hands
//! the plaintext back in pieces so that a 200 MB video never sits in one
//! array.
//!
//! Map of the crate:
//! - [`viewer`]: what the worker does, over `Read` and `Write`, so that it is
//!   tested natively like any Rust code: describe a header, open a file with
//!   a key or a password, all or nothing.
//! - [`capture`] (feature `capture`): building and sealing a report in the
//!   browser with `medseal-capture`, the code of `medseal capture`.
//! - `bindings` (wasm32 only): the viewer, exported with `wasm-bindgen`, with
//!   JavaScript callbacks as the reader and the writer; `capture_bindings`
//!   the capture.
//!
//! The key server's build compiles this crate twice for wasm32: without
//! the `capture` feature for the viewer's module (`medseal_web_bg.wasm`,
//! small, as every recipient downloads it), and with it for the capture
//! worker's (`medseal_capture_bg.wasm`, which carries the PDF writer and the
//! image code). The feature is on by default so that native builds and
//! tests cover both.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "capture")]
pub mod capture;
pub mod viewer;

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(all(target_arch = "wasm32", feature = "capture"))]
mod capture_bindings;

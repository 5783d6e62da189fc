//! # medseal-capture
//!
//! Building a report and sealing it with a key from the right source.
//!
//! | module        | owns                                                          |
//! |---------------|---------------------------------------------------------------|
//! | [`form`]      | what the clinician fills in, and the consent rules it must meet |
//! | [`keyclient`] | the key server client: log in, create a report key, fetch one (`native`) |
//! | [`extract`]   | unpacking an opened report, verified against its manifest (`native`) |
//! | [`identifiers`] | patient identifiers: check digits, and as people write them |
//! | [`media`]     | photo sanitising (metadata out, orientation in), A/V hashing   |
//! | [`pdf`]       | the human-readable summary PDF, photos embedded as they are    |
//! | [`report`]    | building a report and sealing it in one stream                 |
//!
//! Report assembly (consent, media intake, PDF, manifest) builds on these.
//!
//! Without the default `native` feature (file system, network, threads) the
//! crate builds for `wasm32-unknown-unknown`: the web app builds and seals a
//! report in the browser with this same code.

#![forbid(unsafe_code)]

#[cfg(feature = "native")]
pub mod extract;
#[cfg(any(test, feature = "fixtures"))]
#[doc(hidden)]
pub mod fixtures;
pub mod form;
pub mod identifiers;
#[cfg(feature = "native")]
pub mod keyclient;
pub mod media;
pub mod pdf;
pub mod report;

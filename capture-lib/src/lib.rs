//! # medseal-capture
//!
//! Building a report and sealing it with a key from the right source.
//!
//! | module        | owns                                                          |
//! |---------------|---------------------------------------------------------------|
//! | [`keyclient`] | the key server client: log in, create a report key, fetch one |
//! | [`extract`]   | unpacking an opened report, verified against its manifest     |
//! | [`identifiers`] | patient identifiers: check digits, and as people write them |
//! | [`media`]     | photo sanitising (metadata out, orientation in), A/V hashing   |
//! | [`pdf`]       | the human-readable summary PDF, photos embedded as they are    |
//! | [`report`]    | building a report and sealing it in one stream                 |
//!
//! Report assembly (consent, media intake, PDF, manifest) builds on these.

#![forbid(unsafe_code)]

pub mod extract;
#[cfg(any(test, feature = "fixtures"))]
#[doc(hidden)]
pub mod fixtures;
pub mod identifiers;
pub mod keyclient;
pub mod media;
pub mod pdf;
pub mod report;

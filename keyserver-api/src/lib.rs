//! # medseal-keyserver-api
//!
//! The key server's wire contract, in a crate that any client can depend on
//! (the command line, the receiving endpoint, the browser app compiled to
//! wasm32) without pulling in the server.
//!
//! | module          | owns                                                          |
//! |-----------------|---------------------------------------------------------------|
//! | [`merkle`]      | RFC 9162 Merkle tree hashing and proof verification           |
//! | [`transparency`]| audit events as leaves, signed checkpoints, receipts; checking them offline with the server's public key |
//! | [`v1`]          | the v1 HTTP API's request and response bodies, and the error body |
//! | `client`        | a blocking client of the API (feature `blocking`): typed errors, sessions, keys, the audit log's public calls |
//!
//! Without the `blocking` feature nothing here touches a network, a file or
//! a clock: a witness or an auditor can check what a server signed with this
//! crate alone, and the browser app uses the same types compiled to wasm32.

#![forbid(unsafe_code)]

#[cfg(feature = "blocking")]
pub mod client;
pub mod merkle;
pub mod transparency;
pub mod v1;

pub use transparency::{Checkpoint, Receipt, ReceiptEvent, VerifyError};

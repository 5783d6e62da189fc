//! Signing in without a password.
//!
//! | module     | owns                                                         |
//! |------------|--------------------------------------------------------------|
//! | [`codes`]  | single-use e-mailed codes: making, storing (as MACs), redeeming |
//! | [`guests`] | who an organisation lets in as a guest, sealed               |
//! | [`mail`]   | the key server's SMTP client and the code mail               |
//! | [`sso`]    | OpenID Connect: provider settings, flows, grants              |
//!
//! Every path ends in the same place as a password sign-in: a sealed,
//! device-bound session made by [`crate::ops::start_session`] in the
//! transaction that records it.

pub mod codes;
pub mod guests;
pub mod mail;
pub mod sso;

//! # medseal-keyserver
//!
//! The key server an organisation runs so that every opening of a sealed
//! report is authorised and recorded. It issues a fresh 256-bit data key per
//! report, releases it only to the report's creator and listed recipients,
//! and writes a tamper-evident audit trail of every security-relevant action.
//!
//! ## Map of the crate
//!
//! | module       | owns                                                              |
//! |--------------|-------------------------------------------------------------------|
//! | [`store`]    | resolving the data directory, database and keyring               |
//! | [`db`]       | the SQLite / PostgreSQL connection, pool, migrations, schema      |
//! | [`keyring`]  | versioned master keys; wrapping data keys; the audit chain key    |
//! | [`hsm`]      | master keys kept on a PKCS#11 token instead of in a file          |
//! | [`accounts`] | organisations, users, argon2id passwords, sessions, lockout       |
//! | [`passwords`]| what a new password must be: length and a common-password list    |
//! | [`signin`]   | e-mailed codes, guests, OpenID Connect single sign-on             |
//! | [`policy`]   | who may do what with a key (pure rules)                           |
//! | [`recipients`] | whom an organisation's reports may be addressed to (sealed setting) |
//! | [`org_endpoint`] | the organisation's receiving endpoint for the web app's capture (sealed setting) |
//! | [`reports`]  | an organisation's reports and keys as its console lists them      |
//! | [`keys`]     | new data keys, looking one up as a caller sees it, releasing it   |
//! | [`ops`]      | every change to access-control state, committed with its event   |
//! | [`drops`]    | share links: sealed bytes held for download, their lifetime, purge |
//! | [`integrity`]| keyed MACs binding keys, users and sessions to the keyring        |
//! | [`audit`]    | the log: one transaction per change, hash chain, Merkle tree, signed checkpoints, verify, export |
//! | [`http`]     | the actix-web API, request limits, TLS, OpenAPI                   |
//! | [`metrics`]  | Prometheus metrics                                                |
//! | [`admin`]    | the admin command line's operations                               |
//! | [`backup`]   | consistent, sealed backups of a store, and restoring them         |
//! | [`dump`]     | a logical copy of the tables, for PostgreSQL stores               |
//! | [`server`]   | putting it together: `serve`                                      |
//!
//! The HTTP API and deployment are described in `docs/keyserver.md`.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod backup;
pub mod db;
pub mod drops;
pub mod dump;
pub mod error;
pub mod hsm;
pub mod http;
pub mod integrity;
pub mod keyring;
pub mod keys;
pub mod metrics;
pub mod ops;
pub mod org_endpoint;
pub mod passwords;
pub mod policy;
pub mod recipients;
pub mod reports;
pub mod server;
pub mod signin;
pub mod store;
pub mod time;

pub use accounts::Role;
pub use error::{Error, Result};
pub use server::{ServeConfig, serve};
pub use store::Store;

//! The durable outbox: a report handed to `medseal send` is on disk and in
//! the queue before any network I/O, and leaves the queue only with a
//! receipt.
//!
//! - [`store`]: the SQLite database and the queued sealed files; the state
//!   of every delivery (`pending → sending → delivered | pending | failed`).
//! - [`backoff`]: when to try again.
//! - [`runner`]: the delivery loop used by `send`, `outbox flush` and
//!   `outbox retry`.
//!
//! Crash safety: a delivery is marked `sending` (and its attempt counted)
//! in a committed transaction before the request starts. A process killed
//! mid-upload leaves it `sending`; the next process to take the outbox lock
//! knows no one else is delivering and puts it back to `pending`. The retry
//! carries the same idempotency key, and every destination recognises a
//! report it already has, so nothing is lost and nothing is filed twice.

pub mod backoff;
pub mod runner;
pub mod store;

pub use runner::{Observer, RunSummary, Unsealer, run};
pub use store::{
    DeliveryRow, NewReceipt, Outbox, OutboxError, OutboxLock, ReceiptRow, Staged, State,
};

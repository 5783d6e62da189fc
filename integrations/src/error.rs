//! Why a delivery failed, and whether trying again can help.
//!
//! The outbox decides from [`Failure`] alone: transient failures are retried
//! with backoff, permanent ones wait for a person (`medseal outbox retry`).
//! Messages are one line and never carry a credential or patient data: they
//! name the destination's error code, not its echoed request.

use std::time::Duration;

/// Whether a failed delivery is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The network, a 5xx, a 429 or a timeout: try again later.
    Transient,
    /// The destination refused the report (4xx, bad configuration,
    /// conflicting file): retrying the same request cannot succeed.
    Permanent,
    /// The destination needs the report's contents and no key was given.
    NeedsKey,
}

/// A failed delivery.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Retry or not.
    pub failure: Failure,
    /// One line for the person reading `outbox list`.
    pub message: String,
    /// The destination asked to wait at least this long (HTTP Retry-After).
    pub retry_after: Option<Duration>,
}

impl DeliveryError {
    /// A failure worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            failure: Failure::Transient,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            failure: Failure::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The report must be opened and no key is at hand.
    pub fn needs_key(message: impl Into<String>) -> Self {
        Self {
            failure: Failure::NeedsKey,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds the destination's requested wait.
    pub fn retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// Whether the outbox should try again by itself.
    pub fn is_transient(&self) -> bool {
        self.failure == Failure::Transient
    }
}

impl From<std::io::Error> for DeliveryError {
    fn from(e: std::io::Error) -> Self {
        DeliveryError::transient(format!("I/O error: {e}"))
    }
}

//! One error type for the key server, and how each variant answers over HTTP.
//!
//! Every HTTP error is `{"error": code, "message": text}` with the matching
//! status. Internal failures are logged with their cause and answered with a
//! generic message, so that database details never reach a client.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

/// Everything that can go wrong in the key server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or a value is out of range.
    #[error("{0}")]
    Invalid(String),
    /// Missing, unknown, expired or misused credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No such object.
    #[error("{0}")]
    NotFound(String),
    /// The object existed but is revoked or expired.
    #[error("{0}")]
    Gone(String),
    /// The request body is larger than the server accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The object already exists.
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts; retry after the given number of seconds.
    #[error("{message}")]
    RateLimited {
        /// Human explanation.
        message: String,
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// The audit event could not be made durable, so the action was not done.
    #[error("the audit log is unavailable: {0}")]
    Audit(String),
    /// Cannot reach or open the database.
    #[error("cannot open the database: {0}")]
    Connect(String),
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The master keyring is missing, unreadable or inconsistent.
    #[error("master keyring: {0}")]
    Keyring(String),
    /// A query failed.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
    /// No pooled connection was available.
    #[error("database pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// A row's state does not match its keyed MAC, or the log's stored
    /// tree does not match its events: someone edited the database.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// The store names a master-key version this process has not loaded
    /// yet (another process rotated): reload the keyring and try again.
    #[error("master keyring: no version {0} loaded")]
    StaleKeyring(u32),
    /// A service the request depends on (the mail server, an
    /// organisation's OpenID Provider) failed or is not set up.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else that is the server's fault.
    #[error("{0}")]
    Internal(String),
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) use medseal_keyserver_api::v1::ErrorBody;

impl Error {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "bad_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Gone(_) => "gone",
            Error::Conflict(_) => "conflict",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::RateLimited { .. } => "rate_limited",
            Error::Audit(_) => "audit_unavailable",
            Error::Integrity(_) => "integrity_failure",
            Error::Unavailable(_) => "unavailable",
            Error::StaleKeyring(_)
            | Error::Connect(_)
            | Error::Migration(_)
            | Error::Keyring(_)
            | Error::Db(_)
            | Error::Pool(_)
            | Error::Internal(_) => "internal",
        }
    }

    /// True for failures that are the server's, not the client's.
    pub fn is_internal(&self) -> bool {
        self.status_code().is_server_error()
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Gone(_) => StatusCode::GONE,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Audit(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Integrity(_) => StatusCode::CONFLICT,
            Error::Unavailable(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = if self.is_internal() {
            tracing::error!(error = %self, "request failed");
            match self {
                Error::Audit(_) => "the audit log is unavailable; nothing was done".to_owned(),
                // Says which service failed, never a secret.
                Error::Unavailable(m) => m.clone(),
                _ => "internal server error".to_owned(),
            }
        } else {
            self.to_string()
        };
        let mut resp = HttpResponse::build(self.status_code());
        if let Error::RateLimited { retry_after, .. } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            resp.insert_header((header::RETRY_AFTER, v));
        }
        if let Error::Unauthorized(_) = self {
            resp.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        resp.json(ErrorBody {
            error: self.code().to_owned(),
            message,
        })
    }
}

//! Errors of the endpoint: each is an HTTP status and a one-line JSON body
//! `{"error": code, "message": text}`, the same shape as the key server's.
//! Messages never carry a token, a key or anything from inside a report.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The sender's session is missing or not valid at the key server.
    #[error("{0}")]
    Unauthorized(String),
    /// The sender's session is valid but may not send here.
    #[error("{0}")]
    Forbidden(String),
    /// The sender has as much waiting here as its quota allows.
    #[error("{0}")]
    QuotaExceeded(String),
    /// No such receipt.
    #[error("no such report")]
    NotFound,
    /// The upload is larger than the endpoint accepts.
    #[error("{0}")]
    TooLarge(String),
    /// The file is not a report this endpoint can open.
    #[error("{0}")]
    Unprocessable(String),
    /// The key server could not be asked (the sender may try again).
    #[error("{0}")]
    Unavailable(String),
    /// The endpoint's own fault; details in its log only.
    #[error("{0}")]
    Internal(String),
    /// The endpoint cannot start.
    #[error("{0}")]
    Startup(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
}

impl Error {
    fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::NotFound => "not_found",
            Error::Forbidden(_) => "forbidden",
            Error::QuotaExceeded(_) => "quota_exceeded",
            Error::TooLarge(_) => "payload_too_large",
            Error::Unprocessable(_) => "unprocessable",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) | Error::Startup(_) => "internal",
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) | Error::Startup(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            Error::Internal(detail) => {
                eprintln!("medseal endpoint: internal error: {detail}");
                "the endpoint failed; see its log".to_owned()
            }
            other => other.to_string(),
        };
        let mut answer = HttpResponse::build(self.status_code());
        if matches!(self, Error::QuotaExceeded(_)) {
            // Reports waiting here drain as destinations take them.
            answer.insert_header(("Retry-After", "60"));
        }
        answer.json(Body {
            error: self.code(),
            message,
        })
    }
}

impl From<medseal_integrations::outbox::OutboxError> for Error {
    fn from(e: medseal_integrations::outbox::OutboxError) -> Self {
        Error::Internal(e.to_string())
    }
}

//! OAuth 2.0 refresh-token flow (RFC 6749 §6), shared by Box and Dropbox.
//!
//! The access token lives only in memory. On a 401 the destination asks for
//! a new one with the refresh token and repeats the request once. Box
//! rotates refresh tokens (each is single-use): the new one is written back
//! to its file atomically before it is used, so a crash cannot strand the
//! integration with a spent token.

use std::sync::Mutex;

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::DeliveryError;
use crate::http;
use crate::secret::SecretRef;

/// Credentials of an OAuth app (`[destinations.NAME.oauth]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSettings {
    /// The app's client id (Dropbox: the app key).
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: SecretRef,
    /// The long-lived refresh token. Use a file for Box, which replaces it
    /// at every refresh.
    pub refresh_token: SecretRef,
}

impl OAuthSettings {
    pub(crate) fn resolve(&mut self, base: &std::path::Path) {
        self.client_secret.resolve(base);
        self.refresh_token.resolve(base);
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// An access token source for one destination.
pub struct OAuth {
    token_url: String,
    settings: OAuthSettings,
    access: Mutex<Option<Zeroizing<String>>>,
    /// A rotated refresh token that could not be written back (the
    /// original came from an environment variable).
    rotated: Mutex<Option<Zeroizing<String>>>,
}

impl OAuth {
    /// A token source that refreshes at `token_url`.
    pub fn new(token_url: String, settings: OAuthSettings) -> Self {
        Self {
            token_url,
            settings,
            access: Mutex::new(None),
            rotated: Mutex::new(None),
        }
    }

    fn cached(&self) -> Option<Zeroizing<String>> {
        self.access.lock().ok().and_then(|g| g.clone())
    }

    /// Gets a new access token with the refresh token.
    pub fn refresh(&self, http: &Client) -> Result<Zeroizing<String>, DeliveryError> {
        let secret_err = |e: crate::secret::SecretError| DeliveryError::permanent(e.to_string());
        let refresh = match self.rotated.lock().ok().and_then(|g| g.clone()) {
            Some(r) => r,
            None => self.settings.refresh_token.read().map_err(secret_err)?,
        };
        let client_secret = self.settings.client_secret.read().map_err(secret_err)?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", client_secret.as_str()),
        ];
        let resp = http
            .post(&self.token_url)
            .form(&form)
            .send()
            .map_err(|e| http::unreachable("token refresh", &e))?;
        if resp.status() == StatusCode::BAD_REQUEST || resp.status() == StatusCode::UNAUTHORIZED {
            let code = http::error_code(&resp.text().unwrap_or_default()).unwrap_or_default();
            return Err(DeliveryError::permanent(format!(
                "token refresh refused ({code}): authorise medseal with the service again and store the new refresh token"
            )));
        }
        let resp = http::check("token refresh", resp)?;
        let t: TokenResponse = resp.json().map_err(|e| {
            DeliveryError::transient(format!("token refresh: unreadable answer: {e}"))
        })?;
        if let Some(new_refresh) = t.refresh_token.filter(|r| r.as_str() != refresh.as_str()) {
            let written = self
                .settings
                .refresh_token
                .store(&new_refresh)
                .map_err(|e| {
                    DeliveryError::permanent(format!("cannot save the rotated refresh token: {e}"))
                })?;
            if !written {
                tracing::warn!(
                    "the refresh token was rotated but comes from an environment variable; it is kept for this process only"
                );
                if let Ok(mut g) = self.rotated.lock() {
                    *g = Some(Zeroizing::new(new_refresh));
                }
            }
        }
        let token = Zeroizing::new(t.access_token);
        if let Ok(mut g) = self.access.lock() {
            *g = Some(token.clone());
        }
        Ok(token)
    }

    /// Sends the request made by `build` with a bearer token; on 401 gets a
    /// new token and sends a freshly built request once more.
    pub fn send(
        &self,
        http: &Client,
        what: &str,
        build: impl Fn() -> Result<RequestBuilder, DeliveryError>,
    ) -> Result<Response, DeliveryError> {
        let token = match self.cached() {
            Some(t) => t,
            None => self.refresh(http)?,
        };
        let send = |token: &str| {
            build()?
                .bearer_auth(token)
                .send()
                .map_err(|e| http::unreachable(what, &e))
        };
        let resp = send(&token)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        send(&self.refresh(http)?)
    }
}

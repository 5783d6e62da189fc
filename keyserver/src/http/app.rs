//! The web app at `/app/`: the files `build.rs` made (HTML, CSS, the
//! JavaScript around the viewer, the WebAssembly of `medseal-web`), served
//! from the binary with headers that keep the page to itself: a strict
//! Content Security Policy (no inline script, nothing from another origin
//! but the organisations' receiving endpoints, which the capture page posts
//! reports to; WebAssembly compilation allowed and nothing else
//! `eval`-like), no framing, no referrer, no caching that outlives a
//! release.

use std::collections::BTreeSet;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError, web};

use super::AppState;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// The app's Content Security Policy, with only `'self'` to connect to.
/// `blob:` is for the opened report's photos, recordings and PDF, which
/// exist only as Blobs in the page; `manifest-src` for the web app
/// manifest that makes the capture page installable.
pub const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    worker-src 'self'; connect-src 'self'; img-src 'self' blob:; media-src 'self' blob:; \
    style-src 'self'; frame-src blob:; manifest-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";

/// The policy with `connect-src` `'self'` plus `origins` (each already an
/// origin re-serialised from a parsed URL: [`crate::org_endpoint::origin_of`]).
pub fn csp_with(origins: &BTreeSet<String>) -> String {
    let mut connect = String::from("connect-src 'self'");
    for o in origins {
        connect.push(' ');
        connect.push_str(o);
    }
    CSP.replacen("connect-src 'self'", &connect, 1)
}

/// How long the endpoints' origins read from the store are used before
/// they are read again: an `org set --endpoint-url` reaches the app's
/// pages within this time, on every server of a pool.
const CSP_REFRESH: Duration = Duration::from_secs(10);

/// The app's CSP header, with the organisations' receiving endpoints in
/// `connect-src`, read from the store at most every [`CSP_REFRESH`]. The
/// read runs on the blocking pool, one request at a time; the others wait
/// for it (without holding a thread) rather than read too.
#[derive(Default)]
pub struct CspCache {
    current: RwLock<Option<(Instant, HeaderValue)>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl CspCache {
    fn fresh(&self) -> Option<HeaderValue> {
        let g = self.current.read().ok()?;
        g.as_ref()
            .filter(|(at, _)| at.elapsed() < CSP_REFRESH)
            .map(|(_, v)| v.clone())
    }

    fn last(&self) -> Option<HeaderValue> {
        self.current
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|(_, v)| v.clone()))
    }

    /// The header to send now.
    pub async fn header(&self, state: &AppState) -> HeaderValue {
        if let Some(v) = self.fresh() {
            return v;
        }
        let _one_reader = self.refreshing.lock().await;
        if let Some(v) = self.fresh() {
            return v;
        }
        let ring = state.keyring.get();
        let read = super::handlers::with_conn(state, move |c| {
            crate::org_endpoint::all_origins(c, ring.state_key())
        })
        .await;
        let value = match read.map(|o| HeaderValue::from_str(&csp_with(&o))) {
            Ok(Ok(v)) => v,
            // Kept as it was (or with 'self' alone) until the next try:
            // a database hiccup must not take the app down.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "an endpoint origin does not fit in the CSP header");
                self.last().unwrap_or_else(|| HeaderValue::from_static(CSP))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the endpoints for the app's CSP yet");
                self.last().unwrap_or_else(|| HeaderValue::from_static(CSP))
            }
        };
        if let Ok(mut g) = self.current.write() {
            *g = Some((Instant::now(), value.clone()));
        }
        value
    }
}

/// One of the app's files, by name.
pub fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    assets::ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, b)| (*t, *b))
}

/// Every file's name (for tests and the bundle-size benchmark).
pub fn names() -> impl Iterator<Item = &'static str> {
    assets::ASSETS.iter().map(|(n, _, _)| *n)
}

async fn serve(state: &AppState, name: &str) -> HttpResponse {
    let Some((ctype, body)) = asset(name) else {
        return crate::error::Error::NotFound("no such file in the app".into()).error_response();
    };
    let csp = state.csp.header(state).await;
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(ctype)))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .insert_header(("Cross-Origin-Opener-Policy", "same-origin"))
        // With the opener policy, this makes the app cross-origin isolated:
        // its two viewer workers share a SharedArrayBuffer. Everything the
        // app loads is its own.
        .insert_header(("Cross-Origin-Embedder-Policy", "require-corp"))
        .insert_header(("Cross-Origin-Resource-Policy", "same-origin"))
        .insert_header((
            "Permissions-Policy",
            "camera=(self), microphone=(self), geolocation=(), payment=(), usb=()",
        ))
        // Revalidated every time: a new release is picked up at once, and
        // the HTML's integrity hashes always match the files served with it.
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .body(body)
}

/// `GET /app`: to `/app/`, so that relative URLs resolve inside the app.
pub async fn root() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/app/"))
        .finish()
}

/// `GET /app/`.
pub async fn index(state: web::Data<AppState>) -> HttpResponse {
    serve(&state, "index.html").await
}

/// `GET /app/{file}`.
pub async fn file(state: web::Data<AppState>, name: web::Path<String>) -> HttpResponse {
    serve(&state, &name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_origins_join_connect_src_and_nothing_else() {
        let none = csp_with(&BTreeSet::new());
        assert_eq!(none, CSP);
        let two: BTreeSet<String> = ["https://b.example", "http://127.0.0.1:8700"]
            .map(str::to_owned)
            .into();
        let csp = csp_with(&two);
        assert!(
            csp.contains("; connect-src 'self' http://127.0.0.1:8700 https://b.example; "),
            "{csp}"
        );
        assert_eq!(
            csp.replace(" http://127.0.0.1:8700 https://b.example", ""),
            CSP
        );
        assert!(HeaderValue::from_str(&csp).is_ok());
    }
}

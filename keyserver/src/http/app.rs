//! The web app at `/app/`: the files `build.rs` made (HTML, CSS, the
//! JavaScript around the viewer, the WebAssembly of `medseal-web`), served
//! from the binary with headers that keep the page to itself: a strict
//! Content Security Policy (no inline script, nothing from another origin,
//! WebAssembly compilation allowed and nothing else `eval`-like), no
//! framing, no referrer, no caching that outlives a release.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError, web};

mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// The app's Content Security Policy. `blob:` is for the opened report's
/// photos, recordings and PDF, which exist only as Blobs in the page.
pub const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    worker-src 'self'; connect-src 'self'; img-src 'self' blob:; media-src 'self' blob:; \
    style-src 'self'; frame-src blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

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

fn serve(name: &str) -> HttpResponse {
    let Some((ctype, body)) = asset(name) else {
        return crate::error::Error::NotFound("no such file in the app".into()).error_response();
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(ctype)))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
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
pub async fn index() -> HttpResponse {
    serve("index.html")
}

/// `GET /app/{file}`.
pub async fn file(name: web::Path<String>) -> HttpResponse {
    serve(&name)
}

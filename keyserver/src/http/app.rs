//! The web app at `/app/`: the files `build.rs` made (HTML, CSS, the
//! JavaScript around the viewer, the WebAssembly of `medseal-web`), served
//! from the binary with headers that keep the page to itself: a strict
//! Content Security Policy (no inline script, nothing from another origin
//! but the organisations' receiving endpoints, which the capture page posts
//! reports to; WebAssembly compilation allowed and nothing else
//! `eval`-like), no framing, no referrer, no caching that outlives a
//! release. Each file has an entity tag, so that a browser (and the app's
//! service worker, which asks the network first) revalidates what it holds
//! for a 304 instead of downloading it again, and the files that compress
//! are sent gzipped, compressed once at build time, to a browser that
//! accepts it.

use std::collections::BTreeSet;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use super::AppState;

/// One of the app's files, as `build.rs` made it.
pub struct Asset {
    /// Its name under `/app/`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The file as it is.
    pub plain: Body,
    /// The file gzipped, where that is smaller by a tenth or more.
    pub gzip: Option<Body>,
}

/// One representation of a file: its bytes and their entity tag (quoted;
/// a digest of the file, with `-gz` for the gzipped bytes, since a strong
/// tag names the bytes sent).
pub struct Body {
    /// What is sent.
    pub bytes: &'static [u8],
    /// Its entity tag.
    pub etag: &'static str,
}

mod assets {
    // The generated list names the types it uses.
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
pub fn asset(name: &str) -> Option<&'static Asset> {
    assets::ASSETS.iter().find(|a| a.name == name)
}

/// Every file's name (for tests and the bundle-size benchmark).
pub fn names() -> impl Iterator<Item = &'static str> {
    assets::ASSETS.iter().map(|a| a.name)
}

/// Whether `If-None-Match` names `etag` (or is `*`): the browser holds
/// these bytes already. Entity tags are compared weakly (RFC 9110 13.1.2),
/// as a `W/` prefix only says the holder may have changed the encoding.
fn holds(req: &HttpRequest, etag: &str) -> bool {
    super::caller::header_list(req, header::IF_NONE_MATCH)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// Whether `Accept-Encoding` takes gzip: gzip's own weight if it is
/// listed, else `*`'s, and not zero (RFC 9110 12.5.3: `*` stands only for
/// codings not listed). `x-gzip` is gzip.
fn takes_gzip(req: &HttpRequest) -> bool {
    let (mut gzip, mut any) = (None, None);
    for coding in super::caller::header_list(req, header::ACCEPT_ENCODING) {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let weight = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok());
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = weight;
        } else if name == "*" {
            any = weight;
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

async fn serve(state: &AppState, req: &HttpRequest, name: &str) -> HttpResponse {
    let Some(asset) = asset(name) else {
        return crate::error::Error::NotFound("no such file in the app".into()).error_response();
    };
    let csp = state.csp.header(state).await;
    let gzip = asset.gzip.as_ref().filter(|_| takes_gzip(req));
    let body = gzip.unwrap_or(&asset.plain);
    let held = holds(req, body.etag);
    let mut res = if held {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    if gzip.is_some() && !held {
        res.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
    }
    if asset.gzip.is_some() {
        res.insert_header((header::VARY, HeaderValue::from_static("Accept-Encoding")));
    }
    res.insert_header((header::ETAG, HeaderValue::from_static(body.etag)))
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ))
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
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")));
    if held {
        res.finish()
    } else {
        res.body(body.bytes)
    }
}

/// `GET /app`: to `/app/`, so that relative URLs resolve inside the app.
pub async fn root() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/app/"))
        .finish()
}

/// `GET /app/`.
pub async fn index(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    serve(&state, &req, "index.html").await
}

/// `GET /app/{file}`.
pub async fn file(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    serve(&state, &req, &name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> HttpRequest {
        let mut r = actix_web::test::TestRequest::default();
        for (k, v) in headers {
            r = r.append_header((*k, *v));
        }
        r.to_http_request()
    }

    #[test]
    fn gzip_only_where_accepted() {
        for (accept, yes) in [
            ("gzip", true),
            ("br, GZIP;q=0.5", true),
            ("*", true),
            ("gzip;q=0", false),
            ("gzip; q=0.0, identity", false),
            ("br, deflate", false),
            ("x-gzip-not", false),
            ("gzip;q=0, *", false),
            ("gzip;Q=0", false),
            ("x-gzip", true),
            ("*;q=0, gzip", true),
            ("deflate, *;q=0.1", true),
        ] {
            assert_eq!(
                takes_gzip(&request(&[("accept-encoding", accept)])),
                yes,
                "{accept}"
            );
        }
        assert!(!takes_gzip(&request(&[])));
    }

    #[test]
    fn if_none_match_names_the_tag_sent() {
        let tag = "\"ab12\"";
        for (given, yes) in [
            ("\"ab12\"", true),
            ("W/\"ab12\"", true),
            ("\"x\", \"ab12\"", true),
            ("*", true),
            ("\"ab12-gz\"", false),
            ("ab12", false),
            ("", false),
        ] {
            assert_eq!(
                holds(&request(&[("if-none-match", given)]), tag),
                yes,
                "{given}"
            );
        }
        // Spread over two headers.
        assert!(holds(
            &request(&[("if-none-match", "\"x\""), ("if-none-match", tag)]),
            tag
        ));
        assert!(!holds(&request(&[]), tag));
    }

    #[test]
    fn every_file_has_a_tag_and_gzip_only_where_smaller() {
        for name in names() {
            let a = asset(name).unwrap();
            assert!(
                a.plain.etag.starts_with('"') && a.plain.etag.len() == 34,
                "{name}"
            );
            if let Some(gz) = &a.gzip {
                assert!(gz.bytes.len() < a.plain.bytes.len(), "{name}");
                assert_ne!(gz.etag, a.plain.etag, "{name}");
            }
        }
    }

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

//! Cross-origin requests from the web app (`endpoint serve --allow-origin
//! URL`): the key server's app sends sealed reports from the browser, so
//! the browser must be told that the app's origin may post here and read
//! the answer.
//!
//! Only the calls a sender makes are opened: `POST /v1/reports` and the
//! status poll `GET /v1/reports/{id}`, and only to the exact origins given.
//! An allowed origin's preflight is answered 204 with the method and
//! headers that call needs; its requests' answers carry
//! `Access-Control-Allow-Origin` and `Vary: Origin`. Credentials (cookies)
//! are never allowed: a sender proves itself with a send ticket in the
//! form (or `Authorization` on the status call), not with anything the
//! browser adds on its own. Any other origin gets no CORS header at all,
//! and its preflight a 403 with the usual JSON error. Without
//! `--allow-origin` nothing here applies.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};
use medseal_integrations::endpoint::REPORTS_PATH;

use crate::error::Error;

/// How long a browser may reuse a preflight's answer (seconds).
const MAX_AGE: &str = "600";

/// The origins allowed to call the sender's routes from a browser,
/// normalised by [`parse_origin`].
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// Checks and normalises each of `raw` (`--allow-origin`, repeatable).
    pub fn parse(raw: &[String]) -> Result<Self, Error> {
        let mut out: Vec<String> = Vec::with_capacity(raw.len());
        for r in raw {
            let o = parse_origin(r)?;
            if !out.contains(&o) {
                out.push(o);
            }
        }
        Ok(AllowedOrigins(out))
    }

    /// The origins, as a browser sends them in `Origin`.
    pub fn list(&self) -> &[String] {
        &self.0
    }

    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o == origin)
    }
}

fn loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An origin as given to `--allow-origin`: `https://host[:port]`, or
/// `http://` only on a loopback host; nothing after the host but an
/// optional `/`. Answered as a browser serialises it in `Origin`
/// (lower-case, default port left out, an IDN host in punycode).
pub fn parse_origin(raw: &str) -> Result<String, Error> {
    let raw = raw.trim();
    let shown: String = raw.chars().filter(|c| !c.is_control()).take(200).collect();
    let bad = |why: &str| Error::Startup(format!("--allow-origin {shown}: {why}"));
    let url = url::Url::parse(raw).map_err(|e| bad(&format!("not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if loopback(&url) => {}
        "http" => return Err(bad("must be https:// (http:// only on a loopback host)")),
        _ => return Err(bad("must be an https:// origin")),
    }
    if url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || !matches!(url.path(), "" | "/")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(bad(
            "give an origin only: scheme://host[:port], no path, user or query",
        ));
    }
    Ok(url.origin().ascii_serialization())
}

/// The sender's routes, and what a preflight for each may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `POST /v1/reports`: a multipart form (the token is a form field).
    Upload,
    /// `GET /v1/reports/{id}`: the session in `Authorization` and
    /// `X-Device-Id`.
    Status,
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        if path == REPORTS_PATH {
            return Some(Route::Upload);
        }
        let id = path.strip_prefix(REPORTS_PATH)?.strip_prefix('/')?;
        (!id.is_empty() && !id.contains('/')).then_some(Route::Status)
    }

    fn method(self) -> Method {
        match self {
            Route::Upload => Method::POST,
            Route::Status => Method::GET,
        }
    }

    fn headers(self) -> &'static str {
        match self {
            Route::Upload => "content-type",
            Route::Status => "authorization, x-device-id",
        }
    }
}

/// The middleware: see the module's documentation.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let allowed = req
        .app_data::<web::Data<AllowedOrigins>>()
        .filter(|a| !a.0.is_empty())
        .cloned();
    let route = Route::of(req.path());
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (Some(allowed), Some(route), Some(origin)) = (allowed, route, origin) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let ok = allowed.allows(&origin);
    let asked = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .map(|m| m.as_bytes().to_owned());
    if req.method() == Method::OPTIONS
        && let Some(asked) = asked
    {
        let answer = if !ok {
            Error::Forbidden("this origin may not send reports here".into()).error_response()
        } else if asked != route.method().as_str().as_bytes() {
            Error::Forbidden(format!(
                "{} is answered to {} only",
                req.path(),
                route.method()
            ))
            .error_response()
        } else {
            let mut r = HttpResponse::NoContent();
            r.insert_header((
                header::ACCESS_CONTROL_ALLOW_METHODS,
                route.method().as_str(),
            ))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, route.headers()))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE));
            with_origin(r.finish(), &origin)
        };
        let (req, _) = req.into_parts();
        return Ok(ServiceResponse::new(req, answer).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    if ok && let Ok(v) = HeaderValue::from_str(&origin) {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(res.map_into_left_body())
}

/// `r` with `Access-Control-Allow-Origin: origin` and `Vary: Origin`.
fn with_origin(mut r: HttpResponse, origin: &str) -> HttpResponse {
    if let Ok(v) = HeaderValue::from_str(origin) {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::App;
    use actix_web::test as web_test;

    #[test]
    fn origins_are_https_or_loopback_and_nothing_more() {
        assert_eq!(
            parse_origin("https://Keys.St.Example/").unwrap(),
            "https://keys.st.example"
        );
        assert_eq!(
            parse_origin("https://keys.st.example:443").unwrap(),
            "https://keys.st.example"
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:8600").unwrap(),
            "http://127.0.0.1:8600"
        );
        assert_eq!(
            parse_origin("http://localhost:8600").unwrap(),
            "http://localhost:8600"
        );
        for bad in [
            "http://keys.st.example",
            "https://keys.st.example/app/",
            "https://u@keys.st.example",
            "https://keys.st.example/?x",
            "null",
            "*",
            "keys.st.example",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        let a = AllowedOrigins::parse(&["https://a.example".into(), "https://A.example/".into()])
            .unwrap();
        assert_eq!(a.list(), ["https://a.example"]);
    }

    #[test]
    fn only_the_senders_routes_are_opened() {
        assert_eq!(Route::of("/v1/reports"), Some(Route::Upload));
        assert_eq!(Route::of("/v1/reports/rcpt_1"), Some(Route::Status));
        for other in [
            "/healthz",
            "/v1/reports/",
            "/v1/reports/a/b",
            "/v1/reportsx",
        ] {
            assert_eq!(Route::of(other), None, "{other}");
        }
    }

    #[actix_web::test]
    async fn without_allowed_origins_nothing_changes() {
        let app = web_test::init_service(
            App::new()
                .app_data(web::Data::new(AllowedOrigins::default()))
                .wrap(actix_web::middleware::from_fn(cors))
                .route(REPORTS_PATH, web::post().to(ok)),
        )
        .await;
        let r = web_test::call_service(
            &app,
            web_test::TestRequest::post()
                .uri(REPORTS_PATH)
                .insert_header((header::ORIGIN, "https://keys.example"))
                .to_request(),
        )
        .await;
        assert_eq!(r.status(), 202);
        assert!(
            r.headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
        let r = web_test::call_service(
            &app,
            web_test::TestRequest::default()
                .method(Method::OPTIONS)
                .uri(REPORTS_PATH)
                .insert_header((header::ORIGIN, "https://keys.example"))
                .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "POST"))
                .to_request(),
        )
        .await;
        assert_ne!(r.status(), 204);
        assert_ne!(r.status(), 403, "no refusal of ours either");
        assert!(
            r.headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
    }

    async fn ok() -> HttpResponse {
        HttpResponse::Accepted().finish()
    }

    #[actix_web::test]
    async fn preflights_and_answers_name_only_allowed_origins() {
        let allowed = AllowedOrigins::parse(&["https://keys.example".into()]).unwrap();
        let app = web_test::init_service(
            App::new()
                .app_data(web::Data::new(allowed))
                .wrap(actix_web::middleware::from_fn(cors))
                .route(REPORTS_PATH, web::post().to(ok)),
        )
        .await;
        let preflight = |origin: &str, method: &str| {
            web_test::TestRequest::default()
                .method(Method::OPTIONS)
                .uri(REPORTS_PATH)
                .insert_header((header::ORIGIN, origin.to_owned()))
                .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, method.to_owned()))
                .insert_header((header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type"))
                .to_request()
        };
        let r = web_test::call_service(&app, preflight("https://keys.example", "POST")).await;
        assert_eq!(r.status(), 204);
        let h = r.headers();
        assert_eq!(
            h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "https://keys.example"
        );
        assert_eq!(h.get(header::ACCESS_CONTROL_ALLOW_METHODS).unwrap(), "POST");
        assert_eq!(
            h.get(header::ACCESS_CONTROL_ALLOW_HEADERS).unwrap(),
            "content-type"
        );
        assert_eq!(h.get(header::ACCESS_CONTROL_MAX_AGE).unwrap(), MAX_AGE);
        assert_eq!(h.get(header::VARY).unwrap(), "Origin");
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));

        for (origin, method) in [
            ("https://evil.example", "POST"),
            ("https://keys.example", "PUT"),
        ] {
            let r = web_test::call_service(&app, preflight(origin, method)).await;
            assert_eq!(r.status(), 403);
            assert!(
                !r.headers()
                    .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            );
            let body: serde_json::Value = web_test::read_body_json(r).await;
            assert_eq!(body["error"], "forbidden");
        }

        let post = |origin: &str| {
            web_test::TestRequest::post()
                .uri(REPORTS_PATH)
                .insert_header((header::ORIGIN, origin.to_owned()))
                .to_request()
        };
        let r = web_test::call_service(&app, post("https://keys.example")).await;
        assert_eq!(r.status(), 202);
        assert_eq!(
            r.headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .unwrap(),
            "https://keys.example"
        );
        let r = web_test::call_service(&app, post("https://evil.example")).await;
        assert_eq!(r.status(), 202);
        assert!(
            !r.headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
        assert!(!r.headers().contains_key(header::VARY));
    }
}

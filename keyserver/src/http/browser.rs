//! Sessions of the web app: the token travels in an HttpOnly cookie that
//! no page script can read, never in the page or a URL, and every request
//! made with it must echo a CSRF token in a header — which a page of
//! another origin cannot set — besides the device id, as for any session.
//!
//! The CSRF token is derived from the session token with a key derived
//! from the keyring's state key (HMAC-SHA256, domain-separated), so the
//! server keeps nothing more and a token from another session never fits.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use base64::Engine;
use hmac::Mac;

/// The cookie's name.
pub const COOKIE: &str = "medseal_session";

/// The header that must echo the CSRF token.
pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// The CSRF token of the session `token`.
pub fn csrf_token(state_key: &[u8; 32], token: &str) -> String {
    let mut mac = crate::integrity::mac(state_key);
    mac.update(b"medseal web csrf v1\0");
    mac.update(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The session cookie: HttpOnly, Secure, SameSite=Strict, for the API only,
/// living no longer than the session.
pub fn session_cookie(token: &str, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build(COOKIE, token.to_owned())
        .path("/v1")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .max_age(CookieDuration::seconds(max_age_secs.max(0)))
        .finish()
}

/// A cookie that removes the session cookie.
pub fn cleared_cookie() -> Cookie<'static> {
    let mut c = session_cookie("", 0);
    c.make_removal();
    c
}

/// The session token of a cookie request whose CSRF header matches, or
/// why not. `None` when the request carries no session cookie at all.
pub fn cookie_token(
    req: &HttpRequest,
    state_key: &[u8; 32],
) -> Option<Result<String, &'static str>> {
    let cookie = req.cookie(COOKIE)?;
    let token = cookie.value().to_owned();
    let given = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let want = csrf_token(state_key, &token);
    let same: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), want.as_bytes()).into();
    Some(if same {
        Ok(token)
    } else {
        Err("a session cookie needs its X-CSRF-Token header")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_out_of_reach_of_scripts_and_other_sites() {
        let c = session_cookie("tok", 3600).to_string();
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/v1",
            "Max-Age=3600",
        ] {
            assert!(c.contains(part), "{c}");
        }
        let k = [7u8; 32];
        assert_ne!(csrf_token(&k, "a"), csrf_token(&k, "b"));
        assert_ne!(csrf_token(&k, "a"), csrf_token(&[8u8; 32], "a"));
    }
}

//! An organisation's receiving endpoint: the `medseal endpoint serve` its
//! web app's capture page sends sealed reports to (`org set
//! --endpoint-url`), shown to members by `GET /v1/org`, and whose origin the
//! app's Content-Security-Policy lets the browser connect to
//! ([`crate::http::app`]).
//!
//! Where a clinician's reports go, and which foreign origin the app's pages
//! may talk to, is access-control state: the value counts only with its seal
//! (label `medseal org endpoint v1`), so a write to the database cannot send
//! the capture page — or open the CSP — to another server. A value whose
//! seal fails reads as none (the page then has nowhere to send, rather than
//! somewhere wrong). `audit verify` compares the stored value with the last
//! `org.updated` event that set it ([`crate::audit::state`]).

use std::collections::BTreeSet;

use diesel::prelude::*;

use crate::audit::{Action, Actor, Outcome, Tx};
use crate::db::Conn;
use crate::db::schema::orgs;
use crate::error::{Error, Result};
use crate::integrity::{self, Field};

/// What `--endpoint-url` takes to clear the setting, and what the audit
/// event says then.
pub const NONE: &str = "none";

/// The prefix of the detail of the `org.updated` event that sets it (read
/// back by `audit verify`).
pub const EVENT_PREFIX: &str = "receiving endpoint: ";

/// Longest endpoint URL accepted.
const MAX_URL: usize = 2048;

/// The seal's domain-separation label.
const LABEL: &str = "medseal org endpoint v1";

/// Whether `url` is on a loopback host: `localhost`, `127.0.0.0/8`, `::1`.
fn loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses a web address a browser will be sent to: `https://…`, or
/// `http://` only on a loopback host (a test or a single machine), with a
/// host, no user name or password, no fragment.
fn parse_web_url(raw: &str, what: &str) -> Result<url::Url> {
    let raw = raw.trim();
    let shown = crate::audit::ledger::clean(raw, 200);
    let bad = |why: &str| Error::Invalid(format!("{what} '{shown}' {why}"));
    if raw.len() > MAX_URL {
        return Err(bad(&format!("is longer than {MAX_URL} characters")));
    }
    let url = url::Url::parse(raw).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if loopback(&url) => {}
        "http" => return Err(bad("must be https:// (http:// only on a loopback host)")),
        _ => return Err(bad("must be an https:// URL")),
    }
    if url.host().is_none() {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    if url.fragment().is_some() || url.query().is_some() {
        return Err(bad("must not have a query or a fragment"));
    }
    Ok(url)
}

/// A receiving endpoint's base URL as stored: re-serialised from the parsed
/// URL (so nothing the admin typed reaches a page or a header as typed),
/// without a trailing `/`. The capture page posts to `{url}/v1/reports`.
pub fn normalise(raw: &str) -> Result<String> {
    let url = parse_web_url(raw, "the endpoint URL")?;
    let s = url.as_str();
    Ok(s.strip_suffix('/').unwrap_or(s).to_owned())
}

/// `scheme://host[:port]` of a stored endpoint URL, re-serialised from the
/// parsed URL; `None` if it is not one [`normalise`] would accept. Only
/// ASCII letters, digits and `:/.-[]` can come out (an IDN host is
/// punycode), so the origin is safe to put into a header.
pub fn origin_of(stored: &str) -> Option<String> {
    let url = parse_web_url(stored, "the endpoint URL").ok()?;
    let origin = url.origin().ascii_serialization();
    origin
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":/.-[]".contains(&b))
        .then_some(origin)
}

fn seal(key: &[u8; 32], id: i64, name: &str, url: &str) -> [u8; 32] {
    integrity::seal(
        key,
        LABEL,
        &[
            Field::Int(id),
            Field::Bytes(name.as_bytes()),
            Field::Bytes(url.as_bytes()),
        ],
    )
}

/// A stored endpoint URL checked against its seal: `None` when there is
/// none or when it fails its seal.
fn sealed(
    key: &[u8; 32],
    id: i64,
    name: &str,
    url: Option<&str>,
    mac: Option<&[u8]>,
) -> Option<String> {
    let url = url?;
    integrity::matches(mac, &seal(key, id, name, url)).then(|| url.to_owned())
}

/// Organisation `org_id`'s receiving endpoint URL, as the keyring sealed it.
pub fn endpoint_of(conn: &mut Conn, org_id: i64, state_key: &[u8; 32]) -> Result<Option<String>> {
    let (name, url, mac): (String, Option<String>, Option<Vec<u8>>) = orgs::table
        .find(org_id)
        .select((orgs::name, orgs::endpoint_url, orgs::endpoint_mac))
        .first(conn)?;
    Ok(sealed(
        state_key,
        org_id,
        &name,
        url.as_deref(),
        mac.as_deref(),
    ))
}

/// The origins of every organisation's sealed endpoint URL, deduplicated
/// and sorted: what the web app's CSP adds to `connect-src`.
pub fn all_origins(conn: &mut Conn, state_key: &[u8; 32]) -> Result<BTreeSet<String>> {
    type Row = (i64, String, Option<String>, Option<Vec<u8>>);
    let rows: Vec<Row> = orgs::table
        .filter(orgs::endpoint_url.is_not_null())
        .select((orgs::id, orgs::name, orgs::endpoint_url, orgs::endpoint_mac))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, name, url, mac)| {
            sealed(state_key, id, &name, url.as_deref(), mac.as_deref())
        })
        .filter_map(|url| origin_of(&url))
        .collect())
}

/// Sets (`Some`, normalised by [`normalise`]) or clears (`None`) an
/// organisation's receiving endpoint, sealed, with `org.updated`
/// ("receiving endpoint: URL" or "receiving endpoint: none", which `audit
/// verify` replays).
pub fn set_endpoint(
    actor: Actor,
    org: String,
    url: Option<String>,
) -> impl Fn(&mut Tx<'_>) -> Result<()> + Send + Sync + 'static {
    move |tx| {
        let id: i64 = crate::accounts::org_id(tx.conn, &org)?;
        let mac = url
            .as_deref()
            .map(|u| seal(tx.state_key(), id, &org, u).to_vec());
        diesel::update(orgs::table.find(id))
            .set((
                orgs::endpoint_url.eq(url.as_deref()),
                orgs::endpoint_mac.eq(mac),
            ))
            .execute(tx.conn)?;
        tx.record(
            actor
                .event(&org, Action::OrgUpdated, Outcome::Success)
                .detail(format!("{EVENT_PREFIX}{}", url.as_deref().unwrap_or(NONE))),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_are_https_or_loopback_and_re_serialised() {
        assert_eq!(
            normalise(" https://GW.St.Example/ ").unwrap(),
            "https://gw.st.example"
        );
        assert_eq!(
            normalise("https://gw.st.example:8443/medseal/").unwrap(),
            "https://gw.st.example:8443/medseal"
        );
        assert_eq!(
            normalise("http://127.0.0.1:8700").unwrap(),
            "http://127.0.0.1:8700"
        );
        assert_eq!(
            normalise("http://localhost:8700").unwrap(),
            "http://localhost:8700"
        );
        assert_eq!(normalise("http://[::1]:8700").unwrap(), "http://[::1]:8700");
        for bad in [
            "http://gw.st.example",
            "http://10.0.0.1",
            "ftp://gw.st.example",
            "javascript:alert(1)",
            "https://user:pw@gw.st.example",
            "https://gw.st.example/#x",
            "https://gw.st.example/?a=b",
            "gw.st.example",
            "none",
            "",
        ] {
            assert!(normalise(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_cannot_carry_anything_into_a_header() {
        assert_eq!(
            origin_of("https://gw.st.example:8443/medseal").as_deref(),
            Some("https://gw.st.example:8443")
        );
        assert_eq!(
            origin_of("https://gw.st.example:443").as_deref(),
            Some("https://gw.st.example")
        );
        // An IDN host comes out as punycode.
        assert_eq!(
            origin_of("https://bücher.example").as_deref(),
            Some("https://xn--bcher-kva.example")
        );
        // Whatever an insider stores, nothing but an origin comes out.
        for hostile in [
            "https://a.example; script-src *",
            "https://a.example\r\nX-Evil: 1",
            "https://a.example'",
            "http://evil.example",
        ] {
            if let Some(o) = origin_of(hostile) {
                assert!(
                    !o.contains([';', ' ', '\r', '\n', '\'', ',']),
                    "{hostile} → {o}"
                );
            }
        }
    }

    #[test]
    fn a_url_counts_only_with_its_seal() {
        let k = [9u8; 32];
        let url = "https://gw.st.example";
        let mac = seal(&k, 1, "St Elsewhere", url);
        assert_eq!(
            sealed(&k, 1, "St Elsewhere", Some(url), Some(&mac)).as_deref(),
            Some(url)
        );
        assert_eq!(sealed(&k, 1, "St Elsewhere", Some(url), None), None);
        assert_eq!(
            sealed(
                &k,
                1,
                "St Elsewhere",
                Some("https://evil.example"),
                Some(&mac)
            ),
            None
        );
        assert_eq!(sealed(&k, 2, "St Elsewhere", Some(url), Some(&mac)), None);
        assert_eq!(sealed(&k, 1, "St Elsewhere", None, Some(&mac)), None);
    }
}

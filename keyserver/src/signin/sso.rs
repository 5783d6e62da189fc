//! Single sign-on through an organisation's OpenID Provider.
//!
//! The key server is an OpenID Connect relying party, one client per
//! organisation (`keyserver org sso set`): authorization code flow with
//! PKCE (S256), `state` and `nonce`; the client authenticates to the token
//! endpoint with `client_secret_basic`; the id_token is checked by the
//! `openidconnect` crate against the provider's published keys (signature,
//! issuer, audience, expiry) and the flow's nonce. Its e-mail claim (which
//! must be `email_verified` when it is `email`) names a user of that
//! organisation, or — only where provisioning is on, and only in the
//! allowed domain — a new clinician.
//!
//! The provider's yes does not become a session in the browser that came
//! back from the provider. It becomes a **grant**, good for a minute and
//! once, that only the app or command line which started the sign-in can
//! exchange ([`redeem_grant`]): it holds the verifier of the challenge it
//! sent at the start (RFC 7636's idea, between the key server and its own
//! clients). So a callback URL that leaks, is replayed, or is planted in
//! someone else's browser opens nothing; and the session token never
//! appears in a URL.
//!
//! Access-control state is sealed as elsewhere ([`crate::integrity`]): the
//! provider settings (pointing an organisation at another provider would
//! let whoever runs it sign in as anyone there), the flows and the grants.
//! The client secret is encrypted (AES-256-GCM) under a key derived from
//! the keyring.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce as GcmNonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use diesel::prelude::*;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::guests::check_domain;
use crate::accounts::{self, Role};
use crate::audit::{Action, Actor, Outcome, Tx};
use crate::db::Conn;
use crate::db::schema::{orgs, sso_configs, sso_flows, sso_grants, users};
use crate::error::{Error, Result};
use crate::integrity::{self, Field};
use crate::ops::{self, NewSessionRow, Refusable};

/// How long a sign-in at the provider may take.
pub const FLOW_TTL_MS: i64 = 10 * 60 * 1000;

/// How long a grant waits to be exchanged.
pub const GRANT_TTL_MS: i64 = 60 * 1000;

/// Whether users unknown to the key server are made on first sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provision {
    /// As clinicians, in the allowed domain only.
    Clinician,
    /// Never: an admin adds each user first.
    None,
}

impl Provision {
    fn as_str(self) -> &'static str {
        match self {
            Provision::Clinician => "clinician",
            Provision::None => "none",
        }
    }
}

impl std::str::FromStr for Provision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "clinician" => Ok(Provision::Clinician),
            "none" => Ok(Provision::None),
            _ => Err(Error::Invalid(format!(
                "--provision is clinician or none, not '{}'",
                crate::audit::ledger::clean(s, 40)
            ))),
        }
    }
}

/// An organisation's provider settings, as an admin gives them.
#[derive(Clone)]
pub struct SsoSettings {
    /// The issuer URL (discovery is at `/.well-known/openid-configuration`).
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Zeroizing<String>,
    /// The claim that carries the e-mail address.
    pub email_claim: String,
    /// Only addresses in this domain sign in (and may be provisioned).
    pub allowed_domain: Option<String>,
    /// Just-in-time provisioning.
    pub provision: Provision,
}

impl std::fmt::Debug for SsoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("email_claim", &self.email_claim)
            .field("allowed_domain", &self.allowed_domain)
            .field("provision", &self.provision)
            .finish_non_exhaustive()
    }
}

/// What `org sso show` prints: everything but the secret.
#[derive(Debug, Clone, Serialize)]
pub struct SsoView {
    /// The organisation.
    pub org: String,
    /// The issuer.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// The e-mail claim.
    pub email_claim: String,
    /// The allowed domain.
    pub allowed_domain: Option<String>,
    /// Provisioning.
    pub provision: Provision,
    /// The callback to register at the provider.
    pub redirect_uri: String,
    /// Whether the stored settings match their seal.
    pub intact: bool,
}

/// Checks an issuer URL: HTTPS, or plain HTTP on a loopback address only.
pub fn check_issuer(issuer: &str) -> Result<()> {
    let u = url::Url::parse(issuer)
        .map_err(|e| Error::Invalid(format!("--issuer is not a URL: {e}")))?;
    let loopback = match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(Error::Invalid(
            "--issuer must be https:// (plain http:// only on a loopback address)".into(),
        )),
    }
}

fn check_claim(c: &str) -> Result<()> {
    let ok = !c.is_empty()
        && c.len() <= 64
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(
            "--email-claim is a claim name such as email".into(),
        ))
    }
}

fn secret_cipher(state_key: &[u8; 32]) -> Result<Aes256Gcm> {
    let key = integrity::subkey(state_key, "medseal sso client secret key v1");
    Aes256Gcm::new_from_slice(key.as_ref()).map_err(|e| Error::Internal(e.to_string()))
}

fn seal_secret(state_key: &[u8; 32], org_id: i64, secret: &str) -> Result<Vec<u8>> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let ct = secret_cipher(state_key)?
        .encrypt(
            &GcmNonce::from(nonce),
            Payload {
                msg: secret.as_bytes(),
                aad: &org_id.to_be_bytes(),
            },
        )
        .map_err(|_| Error::Internal("cannot encrypt the client secret".into()))?;
    Ok([&nonce[..], &ct].concat())
}

fn open_secret(state_key: &[u8; 32], org_id: i64, sealed: &[u8]) -> Result<Zeroizing<String>> {
    let bad = || Error::Integrity("the stored client secret does not decrypt".into());
    if sealed.len() < 12 {
        return Err(bad());
    }
    let (nonce, ct) = sealed.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| bad())?;
    let pt = Zeroizing::new(
        secret_cipher(state_key)?
            .decrypt(
                &GcmNonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: &org_id.to_be_bytes(),
                },
            )
            .map_err(|_| bad())?,
    );
    String::from_utf8(pt.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| bad())
}

#[allow(clippy::too_many_arguments)]
fn config_mac(
    key: &[u8; 32],
    org_id: i64,
    issuer: &str,
    client_id: &str,
    sealed_secret: &[u8],
    email_claim: &str,
    allowed_domain: Option<&str>,
    provision: &str,
) -> [u8; 32] {
    integrity::seal(
        key,
        "medseal sso config v1",
        &[
            Field::Int(org_id),
            Field::Bytes(issuer.as_bytes()),
            Field::Bytes(client_id.as_bytes()),
            Field::Bytes(sealed_secret),
            Field::Bytes(email_claim.as_bytes()),
            Field::Bytes(allowed_domain.unwrap_or("").as_bytes()),
            Field::Bytes(provision.as_bytes()),
        ],
    )
}

fn org_id(conn: &mut Conn, org: &str) -> Result<i64> {
    orgs::table
        .filter(orgs::name.eq(org))
        .select(orgs::id)
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no organisation '{org}'")))
}

/// Sets (or replaces) an organisation's provider, with `org.updated`.
pub fn set(
    actor: Actor,
    org: String,
    s: SsoSettings,
) -> impl Fn(&mut Tx<'_>) -> Result<()> + Send + Sync + 'static {
    move |tx| {
        check_issuer(&s.issuer)?;
        check_claim(&s.email_claim)?;
        if s.client_id.is_empty() || s.client_id.len() > 255 {
            return Err(Error::Invalid("--client-id is 1 to 255 characters".into()));
        }
        if s.client_secret.is_empty() {
            return Err(Error::Invalid("the client secret file is empty".into()));
        }
        if let Some(d) = &s.allowed_domain {
            check_domain(d)?;
        }
        if s.provision == Provision::Clinician && s.allowed_domain.is_none() {
            return Err(Error::Invalid(
                "--provision clinician needs --allowed-domain: only addresses in it are provisioned"
                    .into(),
            ));
        }
        let id = org_id(tx.conn, &org)?;
        let state_key = *tx.state_key();
        let sealed = seal_secret(&state_key, id, &s.client_secret)?;
        let mac = config_mac(
            &state_key,
            id,
            &s.issuer,
            &s.client_id,
            &sealed,
            &s.email_claim,
            s.allowed_domain.as_deref(),
            s.provision.as_str(),
        );
        diesel::delete(sso_configs::table.find(id)).execute(tx.conn)?;
        diesel::insert_into(sso_configs::table)
            .values((
                sso_configs::org_id.eq(id),
                sso_configs::issuer.eq(&s.issuer),
                sso_configs::client_id.eq(&s.client_id),
                sso_configs::client_secret.eq(&sealed),
                sso_configs::email_claim.eq(&s.email_claim),
                sso_configs::allowed_domain.eq(&s.allowed_domain),
                sso_configs::provision.eq(s.provision.as_str()),
                sso_configs::updated_at.eq(tx.now),
                sso_configs::state_mac.eq(mac.to_vec()),
            ))
            .execute(tx.conn)?;
        tx.record(
            actor
                .event(&org, Action::OrgUpdated, Outcome::Success)
                .detail(format!(
                    "sso: issuer {}, client {}, claim {}, domain {}, provision {}",
                    s.issuer,
                    s.client_id,
                    s.email_claim,
                    s.allowed_domain.as_deref().unwrap_or("any"),
                    s.provision.as_str()
                )),
        );
        Ok(())
    }
}

/// Removes an organisation's provider, with `org.updated`.
pub fn remove(
    actor: Actor,
    org: String,
) -> impl Fn(&mut Tx<'_>) -> Result<()> + Send + Sync + 'static {
    move |tx| {
        let id = org_id(tx.conn, &org)?;
        let n = diesel::delete(sso_configs::table.find(id)).execute(tx.conn)?;
        if n == 0 {
            return Err(Error::NotFound(format!(
                "'{org}' has no single sign-on set up"
            )));
        }
        tx.record(
            actor
                .event(&org, Action::OrgUpdated, Outcome::Success)
                .detail("sso: removed"),
        );
        Ok(())
    }
}

type ConfigRow = (
    String,
    String,
    Vec<u8>,
    String,
    Option<String>,
    String,
    Vec<u8>,
);

/// A provider's settings as stored, checked against their seal.
struct Loaded {
    org: String,
    settings: SsoSettings,
}

fn load(conn: &mut Conn, org_id: i64, state_key: &[u8; 32]) -> Result<Option<(Loaded, bool)>> {
    let row: Option<(String, ConfigRow)> = sso_configs::table
        .inner_join(orgs::table)
        .filter(sso_configs::org_id.eq(org_id))
        .select((
            orgs::name,
            (
                sso_configs::issuer,
                sso_configs::client_id,
                sso_configs::client_secret,
                sso_configs::email_claim,
                sso_configs::allowed_domain,
                sso_configs::provision,
                sso_configs::state_mac,
            ),
        ))
        .first(conn)
        .optional()?;
    let Some((org, (issuer, client_id, sealed, email_claim, allowed_domain, provision, mac))) = row
    else {
        return Ok(None);
    };
    let intact = integrity::matches(
        Some(&mac),
        &config_mac(
            state_key,
            org_id,
            &issuer,
            &client_id,
            &sealed,
            &email_claim,
            allowed_domain.as_deref(),
            &provision,
        ),
    );
    let client_secret = if intact {
        open_secret(state_key, org_id, &sealed)?
    } else {
        Zeroizing::new(String::new())
    };
    Ok(Some((
        Loaded {
            org,
            settings: SsoSettings {
                issuer,
                client_id,
                client_secret,
                email_claim,
                allowed_domain,
                provision: provision.parse().unwrap_or(Provision::None),
            },
        },
        intact,
    )))
}

/// An organisation's provider settings, for `org sso show`.
pub fn show(
    conn: &mut Conn,
    org: &str,
    state_key: &[u8; 32],
    public_url: &str,
) -> Result<Option<SsoView>> {
    let id = org_id(conn, org)?;
    Ok(load(conn, id, state_key)?.map(|(l, intact)| SsoView {
        org: l.org,
        issuer: l.settings.issuer,
        client_id: l.settings.client_id,
        email_claim: l.settings.email_claim,
        allowed_domain: l.settings.allowed_domain,
        provision: l.settings.provision,
        redirect_uri: redirect_uri(public_url),
        intact,
    }))
}

/// The callback URL to register at the provider.
pub fn redirect_uri(public_url: &str) -> String {
    format!("{}/v1/sso/callback", public_url.trim_end_matches('/'))
}

/// The organisation a sign-in names: by name, or by the domain its
/// provider is restricted to.
fn resolve_org(conn: &mut Conn, name_or_domain: &str) -> Result<Option<i64>> {
    let given = name_or_domain.trim();
    let by_name: Option<i64> = orgs::table
        .filter(orgs::name.eq(given))
        .select(orgs::id)
        .first(conn)
        .optional()?;
    if by_name.is_some() {
        return Ok(by_name);
    }
    let domain = given.rsplit('@').next().unwrap_or(given).to_lowercase();
    Ok(sso_configs::table
        .filter(sso_configs::allowed_domain.eq(domain))
        .select(sso_configs::org_id)
        .first(conn)
        .optional()?)
}

/// Where a sign-in returns to: the web app, or the command line's
/// loopback listener (RFC 8252).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnTo {
    /// The app; the text is the fragment to go on to (`#/open`…), or empty.
    App(String),
    /// `http://127.0.0.1:PORT/…` or `http://[::1]:PORT/…`.
    Loopback(url::Url),
}

impl ReturnTo {
    /// Parses `return_to`: a path under `/app/`, or a loopback URL.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::Invalid(
                "return_to is /app/… or a loopback address (http://127.0.0.1:PORT/…)".into(),
            )
        };
        if s.len() > 512 || s.chars().any(|c| c.is_control() || c == '\\') {
            return Err(bad());
        }
        if let Some(rest) = s.strip_prefix("/app/") {
            let fragment =
                rest.strip_prefix('#')
                    .unwrap_or(if rest.is_empty() { "" } else { "\u{0}" });
            if fragment.contains('\u{0}') {
                return Err(bad());
            }
            return Ok(ReturnTo::App(fragment.to_owned()));
        }
        let u = url::Url::parse(s).map_err(|_| bad())?;
        let loopback = match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            _ => false,
        };
        if u.scheme() != "http" || !loopback || u.port().is_none() || !u.username().is_empty() {
            return Err(bad());
        }
        Ok(ReturnTo::Loopback(u))
    }

    fn stored(&self) -> String {
        match self {
            ReturnTo::App(f) if f.is_empty() => "/app/".into(),
            ReturnTo::App(f) => format!("/app/#{f}"),
            ReturnTo::Loopback(u) => u.to_string(),
        }
    }

    /// The address to send the browser on to, carrying `pairs` (the
    /// grant, or an error): in the fragment for the app (it never reaches
    /// a server's logs), in the query for the command line's listener.
    pub fn with(&self, pairs: &[(&str, &str)]) -> String {
        match self {
            ReturnTo::App(next) => {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
                if !next.is_empty() {
                    q.append_pair("next", next);
                }
                format!("/app/#/sso?{}", q.finish())
            }
            ReturnTo::Loopback(u) => {
                let mut u = u.clone();
                {
                    let mut q = u.query_pairs_mut();
                    for (k, v) in pairs {
                        q.append_pair(k, v);
                    }
                }
                u.to_string()
            }
        }
    }
}

/// Checks a client's S256 challenge (43 characters of base64url).
pub fn check_challenge(c: &str) -> Result<()> {
    let ok = c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(
            "challenge is the base64url SHA-256 of the client's verifier (43 characters)".into(),
        ))
    }
}

/// The S256 challenge of `verifier`.
pub use medseal_keyserver_api::v1::s256_challenge as challenge_of;

fn http_client() -> Result<openidconnect::reqwest::blocking::Client> {
    openidconnect::reqwest::blocking::ClientBuilder::new()
        // Following redirects from a provider is an SSRF waiting to happen.
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| Error::Internal(format!("HTTP client: {e}")))
}

type Client = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// Discovers the provider (its metadata and signing keys) and makes the
/// client. Blocking: run it off the async workers.
fn client(
    s: &SsoSettings,
    redirect: &str,
    http: &openidconnect::reqwest::blocking::Client,
) -> Result<Client> {
    let down = |e: &dyn std::error::Error| {
        Error::Unavailable(format!(
            "the organisation's identity provider: {}",
            one_line(e)
        ))
    };
    let issuer = IssuerUrl::new(s.issuer.clone()).map_err(|e| down(&e))?;
    let meta = CoreProviderMetadata::discover(&issuer, http).map_err(|e| down(&e))?;
    Ok(CoreClient::from_provider_metadata(
        meta,
        ClientId::new(s.client_id.clone()),
        Some(ClientSecret::new(s.client_secret.to_string())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).map_err(|e| down(&e))?))
}

/// What a client asks for when it starts a sign-in.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// The organisation's name, or the e-mail domain its provider serves.
    pub org: String,
    /// The device that will hold the session.
    pub device_id: String,
    /// Where the browser comes back to.
    pub return_to: ReturnTo,
    /// The S256 challenge of the client's verifier.
    pub challenge: String,
}

/// The sealed provider settings of the organisation a sign-in names (by
/// name or by the domain its provider is restricted to). One answer for
/// "no such organisation" and "no single sign-on", so that the call does
/// not list organisations.
pub fn settings_for(
    conn: &mut Conn,
    state_key: &[u8; 32],
    name_or_domain: &str,
) -> Result<(i64, SsoSettings)> {
    let unknown = || {
        Error::NotFound(
            "no organisation of that name or domain signs in here with single sign-on".into(),
        )
    };
    let org_id = resolve_org(conn, name_or_domain)?.ok_or_else(unknown)?;
    let (loaded, intact) = load(conn, org_id, state_key)?.ok_or_else(unknown)?;
    if !intact {
        return Err(Error::Integrity(format!(
            "the single sign-on settings of {} were changed outside the key server",
            loaded.org
        )));
    }
    Ok((org_id, loaded.settings))
}

/// A sign-in about to be sent to the provider.
pub struct Authorization {
    /// The provider's authorization URL, to send the browser to.
    pub url: String,
    state: Zeroizing<String>,
    nonce: Zeroizing<String>,
    pkce_verifier: Zeroizing<String>,
}

/// Discovers the provider and makes its authorization URL, with fresh
/// state, nonce and PKCE verifier. Network only: no database connection is
/// held while the provider answers.
pub fn authorize(settings: &SsoSettings, public_url: &str) -> Result<Authorization> {
    let http = http_client()?;
    let client = client(settings, &redirect_uri(public_url), &http)?;
    let (pkce_challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(pkce_challenge)
        .url();
    Ok(Authorization {
        url: url.to_string(),
        state: Zeroizing::new(csrf.secret().clone()),
        nonce: Zeroizing::new(nonce.secret().clone()),
        pkce_verifier: Zeroizing::new(pkce_verifier.secret().clone()),
    })
}

/// Stores the flow (state hash, nonce, PKCE verifier, device, return
/// address, the client's challenge), sealed, for the callback to take.
pub fn store_flow(
    conn: &mut Conn,
    state_key: &[u8; 32],
    org_id: i64,
    auth: &Authorization,
    start: &StartRequest,
    now: i64,
) -> Result<()> {
    let state_hash = Sha256::digest(auth.state.as_bytes()).to_vec();
    let expires_at = now + FLOW_TTL_MS;
    let stored_return = start.return_to.stored();
    let mac = flow_mac(
        state_key,
        &state_hash,
        org_id,
        &auth.nonce,
        &auth.pkce_verifier,
        &start.device_id,
        &stored_return,
        &start.challenge,
        expires_at,
    );
    crate::write_tx!(conn, |c| {
        diesel::delete(sso_flows::table.filter(sso_flows::expires_at.le(now))).execute(c)?;
        diesel::insert_into(sso_flows::table)
            .values((
                sso_flows::state_hash.eq(&state_hash),
                sso_flows::org_id.eq(org_id),
                sso_flows::nonce.eq(auth.nonce.as_str()),
                sso_flows::pkce_verifier.eq(auth.pkce_verifier.as_str()),
                sso_flows::device_id.eq(&start.device_id),
                sso_flows::return_to.eq(&stored_return),
                sso_flows::client_challenge.eq(&start.challenge),
                sso_flows::expires_at.eq(expires_at),
                sso_flows::state_mac.eq(mac.to_vec()),
            ))
            .execute(c)?;
        Ok::<_, Error>(())
    })
}

#[allow(clippy::too_many_arguments)]
fn flow_mac(
    key: &[u8; 32],
    state_hash: &[u8],
    org_id: i64,
    nonce: &str,
    verifier: &str,
    device_id: &str,
    return_to: &str,
    challenge: &str,
    expires_at: i64,
) -> [u8; 32] {
    integrity::seal(
        key,
        "medseal sso flow v1",
        &[
            Field::Bytes(state_hash),
            Field::Int(org_id),
            Field::Bytes(nonce.as_bytes()),
            Field::Bytes(verifier.as_bytes()),
            Field::Bytes(device_id.as_bytes()),
            Field::Bytes(return_to.as_bytes()),
            Field::Bytes(challenge.as_bytes()),
            Field::Int(expires_at),
        ],
    )
}

/// A flow taken (once) at the callback.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The organisation.
    pub org_id: i64,
    /// Its name.
    pub org: String,
    nonce: String,
    pkce_verifier: String,
    /// The device that started it.
    pub device_id: String,
    /// Where the browser goes on to.
    pub return_to: ReturnTo,
    /// The starting client's challenge.
    pub challenge: String,
}

/// Why a callback is refused, for the audit trail and the browser.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The organisation, when known.
    pub org: String,
    /// Where to send the browser with the error, when known.
    pub return_to: Option<ReturnTo>,
    /// Why (no secret in it).
    pub why: String,
}

/// Takes the flow that `state` names, once: deleted whatever comes next,
/// so a replayed callback finds nothing.
pub fn take_flow(
    conn: &mut Conn,
    state_key: &[u8; 32],
    state: &str,
    now: i64,
) -> Result<std::result::Result<Flow, Refusal>> {
    let state_hash = Sha256::digest(state.as_bytes()).to_vec();
    type FlowRow = (
        i64,
        String,
        String,
        String,
        String,
        String,
        String,
        i64,
        Vec<u8>,
    );
    type TakenRow = (i64, String, String, String, String, String, i64, Vec<u8>);
    // Taken by one atomic statement: of two callbacks racing with the same
    // state, one gets the row.
    let row: Option<FlowRow> = crate::write_tx!(conn, |c| {
        let taken: Option<TakenRow> = diesel::delete(sso_flows::table.find(&state_hash))
            .returning((
                sso_flows::org_id,
                sso_flows::nonce,
                sso_flows::pkce_verifier,
                sso_flows::device_id,
                sso_flows::return_to,
                sso_flows::client_challenge,
                sso_flows::expires_at,
                sso_flows::state_mac,
            ))
            .get_result(c)
            .optional()?;
        let Some((org_id, nonce, verifier, device, return_to, challenge, expires_at, mac)) = taken
        else {
            return Ok(None);
        };
        let org: String = orgs::table.find(org_id).select(orgs::name).first(c)?;
        Ok::<_, Error>(Some((
            org_id, org, nonce, verifier, device, return_to, challenge, expires_at, mac,
        )))
    })?;
    let Some((org_id, org, nonce, pkce_verifier, device_id, return_to, challenge, expires_at, mac)) =
        row
    else {
        return Ok(Err(Refusal {
            org: String::new(),
            return_to: None,
            why: "unknown or already used sign-in (state)".into(),
        }));
    };
    let sealed = integrity::matches(
        Some(&mac),
        &flow_mac(
            state_key,
            &state_hash,
            org_id,
            &nonce,
            &pkce_verifier,
            &device_id,
            &return_to,
            &challenge,
            expires_at,
        ),
    );
    let parsed = ReturnTo::parse(&return_to);
    if !sealed || parsed.is_err() {
        return Ok(Err(Refusal {
            org,
            return_to: None,
            why: "the sign-in was changed outside the key server".into(),
        }));
    }
    let return_to = parsed?;
    if expires_at <= now {
        return Ok(Err(Refusal {
            org,
            return_to: Some(return_to),
            why: "the sign-in took too long; start again".into(),
        }));
    }
    Ok(Ok(Flow {
        org_id,
        org,
        nonce,
        pkce_verifier,
        device_id,
        return_to,
        challenge,
    }))
}

/// Who the provider vouched for.
#[derive(Debug, Clone)]
pub struct Vouched {
    /// The address from the e-mail claim, normalised.
    pub email: String,
    /// The provider.
    pub issuer: String,
    /// Settings that decide what happens next.
    pub provision: Provision,
    /// The allowed domain.
    pub allowed_domain: Option<String>,
}

/// The sealed settings of the flow's organisation, or why there are none.
pub fn settings_of(
    conn: &mut Conn,
    state_key: &[u8; 32],
    org_id: i64,
) -> Result<std::result::Result<SsoSettings, String>> {
    let Some((loaded, intact)) = load(conn, org_id, state_key)? else {
        return Ok(Err(
            "single sign-on was removed for this organisation".into()
        ));
    };
    if !intact {
        return Err(Error::Integrity(format!(
            "the single sign-on settings of {} were changed outside the key server",
            loaded.org
        )));
    }
    Ok(Ok(loaded.settings))
}

/// Redeems the provider's code at its token endpoint (with the flow's PKCE
/// verifier, `client_secret_basic`) and validates the id_token: signature
/// by the provider's published keys, issuer, audience, expiry, the flow's
/// nonce; then reads the e-mail claim. Network only: no database
/// connection is held while the provider answers.
pub fn vouch(
    s: &SsoSettings,
    public_url: &str,
    flow: &Flow,
    code: &str,
) -> Result<std::result::Result<Vouched, String>> {
    let http = http_client()?;
    let client = client(s, &redirect_uri(public_url), &http)?;
    let request = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| Error::Unavailable(format!("the identity provider: {}", one_line(&e))))?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()));
    let tokens = match request.request(&http) {
        Ok(t) => t,
        Err(e) => {
            return Ok(Err(format!(
                "the provider refused the code: {}",
                one_line(&e)
            )));
        }
    };
    let Some(id_token) = tokens.id_token() else {
        return Ok(Err("the provider sent no id_token".into()));
    };
    let verifier = client.id_token_verifier();
    let claims = match id_token.claims(&verifier, &Nonce::new(flow.nonce.clone())) {
        Ok(c) => c,
        Err(e) => return Ok(Err(format!("id_token refused: {e}"))),
    };
    let raw = if s.email_claim == "email" {
        if claims.email_verified() != Some(true) {
            return Ok(Err(
                "the provider has not verified the e-mail address".into()
            ));
        }
        claims.email().map(|e| e.as_str().to_owned())
    } else {
        // A claim of the provider's own: read from the id_token's payload,
        // whose signature was checked just above.
        claim_of(&id_token.to_string(), &s.email_claim)
    };
    let Some(raw) = raw else {
        return Ok(Err(format!("the id_token has no {} claim", s.email_claim)));
    };
    let email = match accounts::normalise_email(&raw) {
        Ok(e) => e,
        Err(_) => {
            return Ok(Err(format!(
                "the {} claim is not an e-mail address",
                s.email_claim
            )));
        }
    };
    Ok(Ok(Vouched {
        email,
        issuer: s.issuer.clone(),
        provision: s.provision,
        allowed_domain: s.allowed_domain.clone(),
    }))
}

fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    crate::audit::ledger::clean(&s, 300)
}

fn claim_of(jwt: &str, claim: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = B64URL.decode(payload.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get(claim)?.as_str().map(str::to_owned)
}

fn grant_mac(
    key: &[u8; 32],
    grant_hash: &[u8],
    user_id: i64,
    device_id: &str,
    challenge: &str,
    expires_at: i64,
) -> [u8; 32] {
    integrity::seal(
        key,
        "medseal sso grant v1",
        &[
            Field::Bytes(grant_hash),
            Field::Int(user_id),
            Field::Bytes(device_id.as_bytes()),
            Field::Bytes(challenge.as_bytes()),
            Field::Int(expires_at),
        ],
    )
}

/// A new grant's secret, given to the browser once.
pub struct NewGrant {
    /// `msg_…`, 256 bits.
    pub secret: Zeroizing<String>,
    /// Its SHA-256, all the store keeps.
    pub hash: Vec<u8>,
}

impl NewGrant {
    /// A fresh grant.
    pub fn generate() -> Result<Self> {
        let (secret, hash) = accounts::random_secret("msg_")?;
        Ok(NewGrant { secret, hash })
    }
}

/// Turns the provider's yes into a grant, or refuses: the address must be
/// a user of the flow's organisation (enabled, sealed, not a service
/// account or guest) in the allowed domain, or be provisioned as a
/// clinician where that is on. One transaction, with `sso.login` (and
/// `user.created` for a provisioned user).
pub fn grant(
    actor: Actor,
    flow: Flow,
    who: Vouched,
    grant_hash: Vec<u8>,
) -> impl Fn(&mut Tx<'_>) -> Result<Refusable<()>> + Send + Sync + 'static {
    move |tx| {
        let refuse = |tx: &mut Tx<'_>, why: String| {
            tx.record(
                actor
                    .event(&flow.org, Action::SsoLogin, Outcome::Denied)
                    .detail(format!("refused: {why}")),
            );
            Ok(Err(Error::Forbidden(why)))
        };
        let domain = who.email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if who.allowed_domain.as_deref().is_some_and(|d| d != domain) {
            return refuse(
                tx,
                format!("{} is outside the organisation's allowed domain", who.email),
            );
        }
        let state_key = *tx.state_key();
        let user_id = match accounts::find_user(tx.conn, &who.email, &state_key)? {
            Some(u) if u.org_id != flow.org_id => {
                return refuse(
                    tx,
                    format!("{} is a user of another organisation", who.email),
                );
            }
            Some(u) if !u.intact => {
                let what = format!(
                    "user {} was changed outside the key server; not signing in",
                    u.email
                );
                return Ok(Err(ops::violation(tx, &actor, &flow.org, what)));
            }
            Some(u) if u.disabled => {
                return refuse(tx, format!("{} is disabled", who.email));
            }
            Some(u)
                if matches!(
                    u.role.parse::<Role>(),
                    Ok(Role::Service | Role::Guest) | Err(_)
                ) =>
            {
                return refuse(
                    tx,
                    format!(
                        "{} cannot sign in through single sign-on ({})",
                        who.email, u.role
                    ),
                );
            }
            Some(u) => u.id,
            None if who.provision == Provision::Clinician => ops::insert_user(
                tx,
                &actor,
                flow.org_id,
                &flow.org,
                &who.email,
                Role::Clinician,
                "",
            )?,
            None => {
                return refuse(
                    tx,
                    format!("{} has no account here, and provisioning is off", who.email),
                );
            }
        };
        let expires_at = tx.now + GRANT_TTL_MS;
        let mac = grant_mac(
            &state_key,
            &grant_hash,
            user_id,
            &flow.device_id,
            &flow.challenge,
            expires_at,
        );
        diesel::insert_into(sso_grants::table)
            .values((
                sso_grants::grant_hash.eq(&grant_hash),
                sso_grants::user_id.eq(user_id),
                sso_grants::device_id.eq(&flow.device_id),
                sso_grants::client_challenge.eq(&flow.challenge),
                sso_grants::expires_at.eq(expires_at),
                sso_grants::state_mac.eq(mac.to_vec()),
            ))
            .execute(tx.conn)?;
        tx.record(
            actor
                .event(&flow.org, Action::SsoLogin, Outcome::Success)
                .detail(format!("signed in through {}", who.issuer)),
        );
        Ok(Ok(()))
    }
}

/// The one refusal of a grant exchange, whatever went wrong.
pub const BAD_GRANT: &str = "the sign-in did not complete; start again";

/// Exchanges a grant for a session: once, within its minute, from the
/// device that started the sign-in, with the verifier of its challenge
/// (compared in constant time). One transaction with `session.created`.
pub fn redeem_grant(
    actor: Actor,
    grant_hash: Vec<u8>,
    verifier: Zeroizing<String>,
    row: NewSessionRow,
) -> impl Fn(&mut Tx<'_>) -> Result<Refusable<()>> + Send + Sync + 'static {
    move |tx| {
        type GrantRow = (i64, String, String, i64, Vec<u8>, String, String);
        let found: Option<GrantRow> = sso_grants::table
            .inner_join(users::table.inner_join(orgs::table))
            .filter(sso_grants::grant_hash.eq(&grant_hash))
            .select((
                sso_grants::user_id,
                sso_grants::device_id,
                sso_grants::client_challenge,
                sso_grants::expires_at,
                sso_grants::state_mac,
                users::email,
                orgs::name,
            ))
            .first(tx.conn)
            .optional()?;
        diesel::delete(sso_grants::table.find(&grant_hash)).execute(tx.conn)?;
        let refuse = |tx: &mut Tx<'_>, org: &str, who: &str, why: &str| {
            let mut a = actor.clone();
            if !who.is_empty() {
                a.name = who.to_owned();
            }
            tx.record(
                a.event(org, Action::SsoLogin, Outcome::Denied)
                    .detail(format!("grant refused: {why}")),
            );
            Ok(Err(Error::Unauthorized(BAD_GRANT)))
        };
        let Some((user_id, device_id, challenge, expires_at, mac, email, org)) = found else {
            return refuse(tx, "", "", "unknown or already used");
        };
        let sealed = integrity::matches(
            Some(&mac),
            &grant_mac(
                tx.state_key(),
                &grant_hash,
                user_id,
                &device_id,
                &challenge,
                expires_at,
            ),
        );
        if !sealed {
            let what = "a grant that the key server did not make was presented".to_owned();
            return Ok(Err(ops::violation(tx, &actor, &org, what)));
        }
        if expires_at <= tx.now {
            return refuse(tx, &org, &email, "expired");
        }
        let same_device: bool =
            subtle::ConstantTimeEq::ct_eq(device_id.as_bytes(), row.device_id.as_bytes()).into();
        let right_verifier: bool =
            subtle::ConstantTimeEq::ct_eq(challenge_of(&verifier).as_bytes(), challenge.as_bytes())
                .into();
        if !same_device {
            return refuse(tx, &org, &email, "presented from another device");
        }
        if !right_verifier {
            return refuse(tx, &org, &email, "wrong verifier");
        }
        let mut a = actor.clone();
        a.name = email;
        ops::start_session(tx, &a, user_id, &org, &row)
    }
}

/// Deletes flows and grants that were never finished.
pub fn purge(conn: &mut Conn, now: i64) -> Result<usize> {
    crate::write_tx!(conn, |c| {
        let a =
            diesel::delete(sso_flows::table.filter(sso_flows::expires_at.le(now))).execute(c)?;
        let b =
            diesel::delete(sso_grants::table.filter(sso_grants::expires_at.le(now))).execute(c)?;
        Ok::<_, Error>(a + b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_addresses_are_the_app_or_loopback_only() {
        assert_eq!(
            ReturnTo::parse("/app/").unwrap(),
            ReturnTo::App(String::new())
        );
        assert_eq!(
            ReturnTo::parse("/app/#/drop/abc").unwrap(),
            ReturnTo::App("/drop/abc".into())
        );
        assert!(matches!(
            ReturnTo::parse("http://127.0.0.1:5000/cb").unwrap(),
            ReturnTo::Loopback(_)
        ));
        assert!(matches!(
            ReturnTo::parse("http://[::1]:5000/cb").unwrap(),
            ReturnTo::Loopback(_)
        ));
        for bad in [
            "https://evil.example/",
            "http://localhost.evil.example:80/",
            "http://127.0.0.1/no-port",
            "//evil.example/app/",
            "/app/../v1/keys",
            "/appx/",
            "http://user@127.0.0.1:5000/",
            "/app/\\evil",
            "javascript:alert(1)",
        ] {
            assert!(ReturnTo::parse(bad).is_err(), "{bad}");
        }
        let r = ReturnTo::parse("/app/#/drop/abc").unwrap();
        assert_eq!(
            r.with(&[("grant", "g")]),
            "/app/#/sso?grant=g&next=%2Fdrop%2Fabc"
        );
        let l = ReturnTo::parse("http://127.0.0.1:5000/cb").unwrap();
        assert_eq!(
            l.with(&[("grant", "g")]),
            "http://127.0.0.1:5000/cb?grant=g"
        );
    }

    #[test]
    fn issuers_are_https_or_loopback() {
        assert!(check_issuer("https://login.microsoftonline.com/t/v2.0").is_ok());
        assert!(check_issuer("http://127.0.0.1:9000").is_ok());
        assert!(check_issuer("http://idp.example").is_err());
        assert!(check_issuer("ftp://idp.example").is_err());
    }

    #[test]
    fn the_client_secret_is_bound_to_its_organisation() {
        let k = [5u8; 32];
        let sealed = seal_secret(&k, 1, "s3cret").unwrap();
        assert_eq!(open_secret(&k, 1, &sealed).unwrap().as_str(), "s3cret");
        assert!(open_secret(&k, 2, &sealed).is_err());
        assert!(open_secret(&[6u8; 32], 1, &sealed).is_err());
    }

    #[test]
    fn challenges_are_s256() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(check_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM").is_ok());
        assert!(check_challenge("short").is_err());
    }
}

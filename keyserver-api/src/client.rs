//! A blocking client for the key server's v1 API (feature `blocking`): the
//! one client that the command line, the capture library and the receiving
//! endpoint share.
//!
//! It speaks only to the origin it was created for, and turns the server's
//! error answers into typed errors whose messages tell a clinician what to do.

use std::time::Duration;

use crate::transparency::Checkpoint;
use crate::v1::{
    AuditStatus, CodeRequest, CreateKeyRequest, CreatedDrop, CreatedKey, CreatedUser,
    CurrentSession, ErrorBody, FetchedKey, GrantExchange, KeyPatch, KeyView, KeysList,
    LoginRequest, NewUser, OrgInfo, OrgPolicy, Overview, Proof, PublicKey, RecipientStatus,
    RecipientsCheck, RecipientsChecked, RecipientsRequest, SendTicket, SessionResponse, UserPatch,
    UserView, UsersList,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use medseal_format::Key;
use serde::Deserialize;
use zeroize::Zeroizing;

/// What can go wrong talking to a key server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not an `http(s)://host[:port]` origin.
    #[error("'{0}' is not a key server URL (https://host[:port])")]
    BadUrl(String),
    /// The server could not be reached.
    #[error("cannot reach the key server {origin}: {reason}")]
    Unreachable {
        /// The server.
        origin: String,
        /// Why.
        reason: String,
    },
    /// Login refused: wrong credentials, locked or disabled account.
    #[error("the key server refused the login: {0}")]
    LoginRefused(String),
    /// The session is missing, expired, revoked or from another device.
    #[error("your session with {0} has ended; run: medseal login --keyserver {0}")]
    SessionEnded(String),
    /// The caller is not allowed to fetch this key.
    #[error("you are not a recipient of this report")]
    NotRecipient,
    /// The key was revoked or has expired.
    #[error("this report's key has been {0}")]
    Gone(String),
    /// No such key on this server.
    #[error("the key server does not know this report's key")]
    UnknownKey,
    /// The server is busy or failing for now (429, 5xx): try again later.
    /// Never a verdict on the request: nothing may be given up for it.
    #[error("the key server is unavailable for now: {0}")]
    Unavailable(String),
    /// Refused for another reason.
    #[error("the key server refused: {0}")]
    Refused(String),
    /// The server answered something that is not the v1 API.
    #[error("unexpected answer from the key server: {0}")]
    Protocol(String),
}

/// The account a session belongs to, as the key server says.
pub type SessionOwner = CurrentSession;

/// Normalises a key server URL to its origin: `scheme://host[:port]`,
/// lower-case, no path, no trailing slash.
pub fn origin_of(url: &str) -> Result<String, ClientError> {
    let bad = || ClientError::BadUrl(url.to_owned());
    let parsed = reqwest::Url::parse(url.trim()).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "https" | "http")
        || parsed.host_str().is_none()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
        || !matches!(parsed.path(), "" | "/")
        || parsed.query().is_some()
    {
        return Err(bad());
    }
    let origin = parsed.origin().ascii_serialization();
    Ok(origin)
}

/// A key server session as saved on the device.
#[derive(Clone, serde::Serialize, Deserialize)]
pub struct Session {
    /// The server's origin.
    pub origin: String,
    /// The account's e-mail.
    pub email: String,
    /// The bearer token.
    pub token: String,
    /// Absolute expiry, RFC 3339.
    pub expires_at: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("origin", &self.origin)
            .field("email", &self.email)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A data key created for a report.
pub struct ReportKey {
    /// The key id (goes in the sealed file's header).
    pub key_id: String,
    /// The key.
    pub key: Key,
}

/// A client bound to one key server and one device.
pub struct KeyClient {
    http: reqwest::blocking::Client,
    origin: String,
    device_id: String,
}

impl KeyClient {
    /// A client for `url`'s origin, sending `device_id` with every call.
    /// `extra_root_pem` adds a CA certificate (for a private PKI).
    pub fn new(
        url: &str,
        device_id: &str,
        extra_root_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        let origin = origin_of(url)?;
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .https_only(origin.starts_with("https://"))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = extra_root_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Protocol(format!("bad CA certificate: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Protocol(
                    "bad CA certificate: no PEM certificate in it".into(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(KeyClient {
            http,
            origin,
            device_id: device_id.to_owned(),
        })
    }

    /// The server's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn send(
        &self,
        req: reqwest::blocking::RequestBuilder,
        token: Option<&str>,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), ClientError> {
        let mut req = req.header("X-Device-Id", &self.device_id);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().map_err(|e| ClientError::Unreachable {
            origin: self.origin.clone(),
            reason: reason(e),
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .map_err(|e| ClientError::Protocol(e.without_url().to_string()))?;
        // Answers carry tokens and keys: the copy kept here is wiped.
        Ok((status, Zeroizing::new(body.to_vec())))
    }

    fn error(&self, status: u16, body: &[u8]) -> ClientError {
        let msg = serde_json::from_slice::<ErrorBody>(body)
            .map(|b| (b.error, b.message))
            .unwrap_or_else(|_| (String::new(), format!("HTTP {status}")));
        match status {
            401 => ClientError::SessionEnded(self.origin.clone()),
            403 => ClientError::Refused(msg.1),
            404 => ClientError::UnknownKey,
            410 => ClientError::Gone(if msg.1.contains("expired") {
                "expired".into()
            } else {
                "revoked".into()
            }),
            429 | 500..=599 => ClientError::Unavailable(msg.1),
            _ if msg.0.is_empty() => ClientError::Protocol(msg.1),
            _ => ClientError::Refused(msg.1),
        }
    }

    /// Sends `req` with the session and decodes the JSON answer, which
    /// must come with status `want`.
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::blocking::RequestBuilder,
        session: &Session,
        want: u16,
    ) -> Result<T, ClientError> {
        let (status, resp) = self.send(req, Some(&session.token))?;
        if status != want {
            return Err(self.error(status, &resp));
        }
        serde_json::from_slice(&resp).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    fn get_public<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, body) = self.send(self.http.get(format!("{}{path}", self.origin)), None)?;
        if status != 200 {
            return Err(self.error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// The server's latest signed audit checkpoint.
    pub fn audit_checkpoint(&self) -> Result<Checkpoint, ClientError> {
        self.get_public("/v1/audit/checkpoint")
    }

    /// The consistency proof between two sizes of the audit log.
    pub fn audit_consistency(&self, from: u64, to: u64) -> Result<Vec<String>, ClientError> {
        let p: Proof = self.get_public(&format!("/v1/audit/consistency?from={from}&to={to}"))?;
        Ok(p.proof)
    }

    /// The Ed25519 key the server signs checkpoints with (base64).
    pub fn audit_public_key(&self) -> Result<String, ClientError> {
        let k: PublicKey = self.get_public("/v1/audit/public-key")?;
        Ok(k.public_key)
    }

    /// Logs in and returns the new session.
    pub fn login(&self, email: &str, password: &[u8]) -> Result<Session, ClientError> {
        let password = Zeroizing::new(
            String::from_utf8(password.to_vec())
                .map_err(|_| ClientError::LoginRefused("the password is not UTF-8".into()))?,
        );
        let body = LoginRequest {
            cookie: false,
            email: email.to_owned(),
            password,
            code: None,
            device_id: self.device_id.clone(),
        };
        self.open_session("/v1/sessions", &body, Some(email))
    }

    /// Asks the server to e-mail a single-use sign-in code to `email`. The
    /// answer is the same whether or not the address may sign in.
    pub fn request_code(&self, email: &str) -> Result<(), ClientError> {
        let body = CodeRequest {
            email: email.to_owned(),
            device_id: self.device_id.clone(),
        };
        let (status, resp) = self.send(
            self.http
                .post(format!("{}/v1/sessions/code", self.origin))
                .json(&body),
            None,
        )?;
        if status != 202 {
            return Err(self.error(status, &resp));
        }
        Ok(())
    }

    /// Logs in with an e-mailed code.
    pub fn login_with_code(&self, email: &str, code: &str) -> Result<Session, ClientError> {
        let body = LoginRequest {
            cookie: false,
            email: email.to_owned(),
            password: Zeroizing::new(String::new()),
            code: Some(Zeroizing::new(code.to_owned())),
            device_id: self.device_id.clone(),
        };
        self.open_session("/v1/sessions", &body, Some(email))
    }

    /// Where a browser starts single sign-on for organisation `org` (its
    /// name or e-mail domain), coming back to `return_to` with a grant for
    /// the verifier of `challenge`.
    pub fn sso_start_url(&self, org: &str, return_to: &str, challenge: &str) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        format!(
            "{}/v1/sso/{}/start?device_id={}&return_to={}&challenge={}",
            self.origin,
            enc(org),
            enc(&self.device_id),
            enc(return_to),
            enc(challenge)
        )
    }

    /// Exchanges the grant single sign-on handed back for a session.
    pub fn exchange_grant(&self, grant: &str, verifier: &str) -> Result<Session, ClientError> {
        let body = GrantExchange {
            grant: Zeroizing::new(grant.to_owned()),
            verifier: Zeroizing::new(verifier.to_owned()),
            device_id: self.device_id.clone(),
            cookie: false,
        };
        let mut session = self.open_session("/v1/sso/session", &body, None)?;
        session.email = self.session_owner(&session.token)?.email;
        Ok(session)
    }

    fn open_session(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        email: Option<&str>,
    ) -> Result<Session, ClientError> {
        let (status, resp) = self.send(
            self.http.post(format!("{}{path}", self.origin)).json(body),
            None,
        )?;
        if status != 201 {
            return Err(match self.error(status, &resp) {
                ClientError::Refused(m) | ClientError::Protocol(m) => ClientError::LoginRefused(m),
                ClientError::SessionEnded(_) => ClientError::LoginRefused(
                    serde_json::from_slice::<ErrorBody>(&resp)
                        .map(|b| b.message)
                        .unwrap_or_else(|_| "wrong e-mail or password".into()),
                ),
                other => other,
            });
        }
        let c: SessionResponse =
            serde_json::from_slice(&resp).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Session {
            origin: self.origin.clone(),
            email: email.map(|e| e.trim().to_lowercase()).unwrap_or_default(),
            token: c.token.to_string(),
            expires_at: c.expires_at.clone(),
        })
    }

    /// The same server, speaking for another device: a receiving endpoint
    /// checks a sender's session with the sender's own device id, since a
    /// token presented from any other device ends the session.
    pub fn for_device(&self, device_id: &str) -> KeyClient {
        KeyClient {
            http: self.http.clone(),
            origin: self.origin.clone(),
            device_id: device_id.to_owned(),
        }
    }

    /// Whom the session `token` (of this client's device) belongs to.
    pub fn session_owner(&self, token: &str) -> Result<SessionOwner, ClientError> {
        let (status, resp) = self.send(
            self.http
                .get(format!("{}/v1/sessions/current", self.origin)),
            Some(token),
        )?;
        if status != 200 {
            return Err(self.error(status, &resp));
        }
        serde_json::from_slice(&resp).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// A send ticket for `session` (`POST /v1/sessions/ticket`): what a
    /// browser hands a receiving endpoint instead of its session token.
    pub fn send_ticket(&self, session: &Session) -> Result<SendTicket, ClientError> {
        self.call(
            self.http
                .post(format!("{}/v1/sessions/ticket", self.origin)),
            session,
            201,
        )
    }

    /// The caller's organisation and its public settings (`GET /v1/org`),
    /// among them the receiving endpoint reports are sent to.
    pub fn org_info(&self, session: &Session) -> Result<OrgInfo, ClientError> {
        self.call(
            self.http.get(format!("{}/v1/org", self.origin)),
            session,
            200,
        )
    }

    /// Creates a data key for `report_id` addressed to `recipients`.
    pub fn create_key(
        &self,
        session: &Session,
        report_id: &str,
        recipients: &[String],
    ) -> Result<ReportKey, ClientError> {
        let body = CreateKeyRequest {
            report_id: report_id.to_owned(),
            recipients: recipients.to_vec(),
            expires_at: None,
        };
        let (status, resp) = self.send(
            self.http
                .post(format!("{}/v1/keys", self.origin))
                .json(&body),
            Some(&session.token),
        )?;
        if status != 201 {
            return Err(self.error(status, &resp));
        }
        let k: CreatedKey =
            serde_json::from_slice(&resp).map_err(|e| ClientError::Protocol(e.to_string()))?;
        report_key(k.key_id.clone(), &k.key)
    }

    /// Fetches the data key `key_id` (the server audits the fetch).
    pub fn fetch_key(&self, session: &Session, key_id: &str) -> Result<ReportKey, ClientError> {
        check_key_id(key_id)?;
        let (status, resp) = self.send(
            self.http.get(format!("{}/v1/keys/{key_id}", self.origin)),
            Some(&session.token),
        )?;
        match status {
            200 => {
                let k: FetchedKey = serde_json::from_slice(&resp)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                report_key(k.key_id.clone(), &k.key)
            }
            403 => Err(ClientError::NotRecipient),
            _ => Err(self.error(status, &resp)),
        }
    }

    /// Ends `session` at the server (`DELETE /v1/sessions/current`). A
    /// session that has already ended counts as ended.
    pub fn logout(&self, session: &Session) -> Result<(), ClientError> {
        let (status, resp) = self.send(
            self.http
                .delete(format!("{}/v1/sessions/current", self.origin)),
            Some(&session.token),
        )?;
        match status {
            204 | 401 => Ok(()),
            _ => Err(self.error(status, &resp)),
        }
    }

    /// Asks whether each address could open a report the caller seals now;
    /// `None` from a server too old to say (404).
    pub fn check_recipients(
        &self,
        session: &Session,
        recipients: &[String],
    ) -> Result<Option<Vec<RecipientStatus>>, ClientError> {
        let body = RecipientsCheck {
            recipients: recipients.to_vec(),
        };
        let (status, resp) = self.send(
            self.http
                .post(format!("{}/v1/recipients/check", self.origin))
                .json(&body),
            Some(&session.token),
        )?;
        match status {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.error(status, &resp)),
        }
        let r: RecipientsChecked =
            serde_json::from_slice(&resp).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Some(r.recipients))
    }

    /// Adds recipients to `key_id` (its creator, or an admin of its
    /// organisation).
    pub fn add_recipients(
        &self,
        session: &Session,
        key_id: &str,
        recipients: &[String],
    ) -> Result<(), ClientError> {
        check_key_id(key_id)?;
        let body = RecipientsRequest {
            recipients: recipients.to_vec(),
        };
        let (status, resp) = self.send(
            self.http
                .post(format!("{}/v1/keys/{key_id}/recipients", self.origin))
                .json(&body),
            Some(&session.token),
        )?;
        if status != 204 {
            return Err(self.error(status, &resp));
        }
        Ok(())
    }

    /// The audit trail of a key or a report (`GET /v1/audit`), as `json`
    /// or `csv`, exactly as the server sends it. A key's creator may read
    /// its trail; an auditor or admin their organisation's.
    pub fn audit(
        &self,
        session: &Session,
        key_id: Option<&str>,
        report_id: Option<&str>,
        format: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let mut req = self
            .http
            .get(format!("{}/v1/audit", self.origin))
            .query(&[("format", format)]);
        if let Some(k) = key_id {
            req = req.query(&[("key_id", k)]);
        }
        if let Some(r) = report_id {
            req = req.query(&[("report_id", r)]);
        }
        let (status, resp) = self.send(req, Some(&session.token))?;
        if status != 200 {
            return Err(self.error(status, &resp));
        }
        Ok(resp.to_vec())
    }

    /// The caller's organisation's users (`GET /v1/users`; admins and
    /// auditors), optionally only addresses containing `q`.
    pub fn list_users(
        &self,
        session: &Session,
        q: Option<&str>,
    ) -> Result<Vec<UserView>, ClientError> {
        let mut req = self.http.get(format!("{}/v1/users", self.origin));
        if let Some(q) = q {
            req = req.query(&[("q", q)]);
        }
        let l: UsersList = self.call(req, session, 200)?;
        Ok(l.users)
    }

    /// Adds a user to the caller's organisation (`POST /v1/users`; admins).
    pub fn create_user(
        &self,
        session: &Session,
        email: &str,
        role: &str,
    ) -> Result<CreatedUser, ClientError> {
        let body = NewUser {
            email: email.to_owned(),
            role: role.to_owned(),
        };
        self.call(
            self.http
                .post(format!("{}/v1/users", self.origin))
                .json(&body),
            session,
            201,
        )
    }

    /// `POST /v1/users/{id}/{action}` with `action` one of `disable`,
    /// `enable`, `sessions/revoke` (admins).
    pub fn user_action(
        &self,
        session: &Session,
        id: i64,
        action: &str,
    ) -> Result<UserView, ClientError> {
        if !matches!(action, "disable" | "enable" | "sessions/revoke") {
            return Err(ClientError::Protocol(format!("no user action {action:?}")));
        }
        self.call(
            self.http
                .post(format!("{}/v1/users/{id}/{action}", self.origin)),
            session,
            200,
        )
    }

    /// Gives a user a new role (`PATCH /v1/users/{id}`; admins).
    pub fn set_user_role(
        &self,
        session: &Session,
        id: i64,
        role: &str,
    ) -> Result<UserView, ClientError> {
        let body = UserPatch {
            role: role.to_owned(),
        };
        self.call(
            self.http
                .patch(format!("{}/v1/users/{id}", self.origin))
                .json(&body),
            session,
            200,
        )
    }

    /// The caller's organisation's settings (`GET /v1/org/policy`).
    pub fn org_policy(&self, session: &Session) -> Result<OrgPolicy, ClientError> {
        self.call(
            self.http.get(format!("{}/v1/org/policy", self.origin)),
            session,
            200,
        )
    }

    /// Sets the domains the organisation's reports may be addressed to
    /// (`PUT /v1/org/policy`; admins); empty for any.
    pub fn set_allowed_recipient_domains(
        &self,
        session: &Session,
        domains: &[String],
    ) -> Result<OrgPolicy, ClientError> {
        let body = OrgPolicy {
            allowed_recipient_domains: domains.to_vec(),
            guests: None,
            drop_max_days: None,
        };
        self.call(
            self.http
                .put(format!("{}/v1/org/policy", self.origin))
                .json(&body),
            session,
            200,
        )
    }

    /// A page of the caller's organisation's report keys, newest first
    /// (`GET /v1/keys`; admins and auditors), narrowed by `query` pairs
    /// such as `("report_id", R)`, `("creator", E)`, `("since", T)`,
    /// `("offset", N)`, `("limit", N)`.
    pub fn list_keys(
        &self,
        session: &Session,
        query: &[(&str, &str)],
    ) -> Result<KeysList, ClientError> {
        self.call(
            self.http
                .get(format!("{}/v1/keys", self.origin))
                .query(query),
            session,
            200,
        )
    }

    /// Gives `key_id` a new expiry (RFC 3339), or none (`PATCH
    /// /v1/keys/{key_id}`; its creator or an admin of its organisation).
    pub fn set_key_expiry(
        &self,
        session: &Session,
        key_id: &str,
        expires_at: Option<&str>,
    ) -> Result<KeyView, ClientError> {
        check_key_id(key_id)?;
        let body = KeyPatch {
            expires_at: Some(expires_at.map(str::to_owned)),
        };
        self.call(
            self.http
                .patch(format!("{}/v1/keys/{key_id}", self.origin))
                .json(&body),
            session,
            200,
        )
    }

    /// The audit log's integrity as last checked (`GET /v1/audit/status`).
    pub fn audit_status(&self, session: &Session) -> Result<AuditStatus, ClientError> {
        self.call(
            self.http.get(format!("{}/v1/audit/status", self.origin)),
            session,
            200,
        )
    }

    /// Use of the service over the last `days` days (`GET /v1/overview`).
    pub fn overview(&self, session: &Session, days: u32) -> Result<Overview, ClientError> {
        self.call(
            self.http
                .get(format!("{}/v1/overview", self.origin))
                .query(&[("days", days)]),
            session,
            200,
        )
    }

    /// Revokes `key_id`.
    pub fn revoke(&self, session: &Session, key_id: &str) -> Result<(), ClientError> {
        check_key_id(key_id)?;
        let (status, resp) = self.send(
            self.http
                .post(format!("{}/v1/keys/{key_id}/revoke", self.origin)),
            Some(&session.token),
        )?;
        if status != 204 {
            return Err(self.error(status, &resp));
        }
        Ok(())
    }

    /// Shares the sealed file at `path` as a link (`POST /v1/drops`), for
    /// `days` (the server's default when `None`). The file is streamed; it
    /// is ciphertext, and the link opens only for those who may fetch its
    /// key.
    pub fn share(
        &self,
        session: &Session,
        path: &std::path::Path,
        days: Option<u32>,
    ) -> Result<CreatedDrop, ClientError> {
        let part = reqwest::blocking::multipart::Part::file(path)
            .map_err(|e| ClientError::Protocol(format!("cannot read {}: {e}", path.display())))?
            .file_name("report.mseal")
            .mime_str("application/octet-stream")
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut form = reqwest::blocking::multipart::Form::new();
        if let Some(d) = days {
            form = form.text("days", d.to_string());
        }
        form = form.part("report", part);
        let (status, resp) = self.send(
            self.http
                .post(format!("{}/v1/drops", self.origin))
                // A large video over a slow link: the upload's own pace.
                .timeout(Duration::from_secs(60 * 60))
                .multipart(form),
            Some(&session.token),
        )?;
        if status != 201 {
            return Err(self.error(status, &resp));
        }
        serde_json::from_slice(&resp).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

/// A key id goes into a URL path: only the characters the server issues.
fn check_key_id(key_id: &str) -> Result<(), ClientError> {
    if key_id.is_empty()
        || !key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(ClientError::UnknownKey);
    }
    Ok(())
}

/// Why a request got no answer, down to the cause: "error sending
/// request" alone hides the TLS verdict ("invalid peer certificate:
/// UnknownIssuer") that tells an administrator what to fix.
fn reason(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// A data key as the server sends it (base64), decoded and checked.
fn report_key(key_id: String, b64: &str) -> Result<ReportKey, ClientError> {
    let raw = Zeroizing::new(
        B64.decode(b64.as_bytes())
            .map_err(|_| ClientError::Protocol("the key is not base64".into()))?,
    );
    let key = Key::from_slice(&raw).map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(ReportKey { key_id, key })
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origins() {
        assert_eq!(
            origin_of("https://Keys.Example.org/").unwrap(),
            "https://keys.example.org"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8600").unwrap(),
            "http://127.0.0.1:8600"
        );
        assert_eq!(
            origin_of("https://k.example:443").unwrap(),
            "https://k.example"
        );
        for bad in [
            "ftp://x",
            "https://u:p@x",
            "https://x/path",
            "x",
            "https://x/?q=1",
        ] {
            assert!(origin_of(bad).is_err(), "{bad}");
        }
    }
}

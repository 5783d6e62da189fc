//! The v1 HTTP API's bodies, as the server writes and reads them and every
//! client sends and parses them: one definition, so the two cannot drift.
//!
//! Secrets in these types — passwords, session tokens, base64 data keys —
//! are [`Zeroizing`] strings: wiped when the value is dropped, on either
//! side. Request types refuse unknown fields (a misspelt field is a 400, not
//! a silently ignored setting).

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::transparency::Receipt;

/// Every error answer: `{"error": code, "message": text}` with the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `forbidden`, `integrity_failure`.
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// `POST /v1/sessions`: sign in with a password, or with the code that
/// `POST /v1/sessions/code` e-mailed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account's (or a guest's) e-mail address.
    pub email: String,
    /// The password (left out when signing in with a code).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(default, skip_serializing_if = "is_empty")]
    pub password: Zeroizing<String>,
    /// The e-mailed code: 8 digits.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Zeroizing<String>>,
    /// A stable id of the device; the session only works from it.
    pub device_id: String,
    /// The web app asks for its session as an HttpOnly cookie instead of
    /// a token in the answer, so that no page script can read it; the
    /// answer then carries the `csrf_token` every request must echo.
    #[serde(default)]
    pub cookie: bool,
}

/// `POST /v1/sessions/code`: e-mail me a sign-in code. Answered 202 `{}`
/// whatever the address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// Where to send the code.
    pub email: String,
    /// The device that will sign in.
    pub device_id: String,
}

/// `POST /v1/sso/session`: exchange the grant that single sign-on handed
/// back for a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantExchange {
    /// The grant from the redirect (`msg_…`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub grant: Zeroizing<String>,
    /// The verifier whose S256 challenge started the sign-in.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub verifier: Zeroizing<String>,
    /// The device that started the sign-in.
    pub device_id: String,
    /// As in [`LoginRequest`]: the web app's HttpOnly cookie session.
    #[serde(default)]
    pub cookie: bool,
}

/// A new session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionResponse {
    /// Bearer token for `Authorization: Bearer …`; shown once. Empty
    /// (left out) for a cookie session.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(default, skip_serializing_if = "is_empty")]
    pub token: Zeroizing<String>,
    /// Absolute expiry (RFC 3339). Idle sessions expire sooner.
    pub expires_at: String,
    /// For a cookie session: the value of the `X-CSRF-Token` header every
    /// request with the cookie must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

fn is_empty(s: &Zeroizing<String>) -> bool {
    s.is_empty()
}

/// `GET /v1/sessions/current`: whose a session is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurrentSession {
    /// The account's e-mail.
    pub email: String,
    /// Its organisation.
    pub org: String,
    /// Its role (`admin`, `auditor`, `clinician`, `service`).
    pub role: String,
    /// The device the session is bound to.
    pub device_id: String,
}

/// `POST /v1/sessions/ticket`: a send ticket, the credential the web app
/// hands a receiving endpoint in place of its session token (which lives in
/// a cookie no script can read). The endpoint shows it, with the sender's
/// device id, to `GET /v1/sessions/current` — the one call that accepts
/// it, answering as for the session itself; every other call answers 401.
/// It works only from the session's device, for 10 minutes at most and
/// never past the session's end, and stops working the moment the session
/// ends, is revoked or its user is disabled.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendTicket {
    /// The ticket (`mstk_…`): the `token` field of an upload to a
    /// receiving endpoint, or `Authorization: Bearer` on its status call.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub ticket: Zeroizing<String>,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// Leaves the ticket out: a credential is never written to a log.
impl std::fmt::Debug for SendTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendTicket")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// `GET /v1/org`: the caller's organisation and its public settings, for
/// any member (guests excluded). The web app's capture page reads
/// `endpoint_url` to know where to send reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgInfo {
    /// The organisation's name.
    pub name: String,
    /// Its receiving endpoint's base URL (`https://…`, without a trailing
    /// `/`; reports go to `{endpoint_url}/v1/reports`), or `null` when none
    /// is set (`medseal keyserver org set --endpoint-url`).
    pub endpoint_url: Option<String>,
    /// Who may sign in as a guest: `none`, `any` or comma-separated
    /// domains.
    pub guests: String,
    /// The longest a share link may live, in days.
    pub drop_max_days: u32,
    /// The e-mail domains reports may be addressed to; empty: any address.
    pub allowed_recipient_domains: Vec<String>,
}

/// `POST /v1/keys`: a data key for a report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// The report the key will seal.
    pub report_id: String,
    /// E-mail addresses allowed to fetch the key.
    pub recipients: Vec<String>,
    /// Optional expiry (RFC 3339); fetches after it answer 410.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A new data key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedKey {
    /// Id to put in the sealed file's header.
    pub key_id: String,
    /// The 32-byte data key, base64.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub key: Zeroizing<String>,
    /// Expiry (RFC 3339), if any.
    pub expires_at: Option<String>,
}

/// `GET /v1/keys/{key_id}`: a released data key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FetchedKey {
    /// The key id.
    pub key_id: String,
    /// The 32-byte data key, base64.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub key: Zeroizing<String>,
    /// The report it seals.
    pub report_id: String,
    /// Proof that this release is in the audit log: the `key.fetched`
    /// event, a signed checkpoint, and the inclusion proof between them
    /// (`medseal audit check-receipt` verifies it offline).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub receipt: Receipt,
}

/// `POST /v1/keys/{key_id}/recipients`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecipientsRequest {
    /// E-mail addresses to add.
    pub recipients: Vec<String>,
}

/// `POST /v1/recipients/check`: could these addresses open a report sealed
/// now by the caller? Asked before sealing, so that a mistyped address is
/// caught while the clinician is still there.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecipientsCheck {
    /// E-mail addresses (1 to 100).
    pub recipients: Vec<String>,
}

/// The answer to [`RecipientsCheck`], in the order asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecipientsChecked {
    /// One per address asked.
    pub recipients: Vec<RecipientStatus>,
}

/// Whether one address could open the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecipientStatus {
    /// The address, normalised (trimmed, lower-case).
    pub email: String,
    /// `refused`: outside the caller's organisation's recipient policy (no
    /// key would be made); `user`: has an account here and can sign in; `guest`: no account,
    /// but the caller's organisation admits this address as a guest (it
    /// signs in with an e-mailed code); `unknown`: nobody at this address
    /// could open the report now; `invalid`: not an e-mail address.
    pub status: String,
}

/// A user as the organisation console shows them (`GET /v1/users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    /// The id the other user calls take.
    pub id: i64,
    /// The sign-in address.
    pub email: String,
    /// `admin`, `auditor`, `clinician`, `service` or `guest`.
    pub role: String,
    /// `enabled`, `disabled` or `locked` (after failed sign-ins).
    pub status: String,
    /// Whether the account is as the key server sealed it; a changed one
    /// is shown but never acted on.
    pub intact: bool,
    /// Live sessions.
    pub sessions: u32,
    /// Distinct devices among them.
    pub devices: u32,
    /// When the newest live session began (RFC 3339), if any.
    pub last_sign_in: Option<String>,
}

/// `GET /v1/users`: the caller's organisation's users, by address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsersList {
    /// The users matching the query.
    pub users: Vec<UserView>,
}

/// `POST /v1/users`: a new user of the caller's organisation. No password
/// is typed by anyone: the user signs in with a single-use code mailed to
/// the address (or through the organisation's single sign-on).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The sign-in address.
    pub email: String,
    /// `admin`, `auditor`, `clinician` or `service`.
    pub role: String,
}

/// `PATCH /v1/users/{id}`: a new role (their sessions end).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// `admin`, `auditor`, `clinician` or `service`.
    pub role: String,
}

/// The answer to `POST /v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedUser {
    /// The user as now stored.
    pub user: UserView,
    /// How they sign in: `code` (an e-mailed single-use code) or `sso`.
    pub sign_in: String,
}

/// `GET /v1/org/policy`: the caller's organisation's settings (admins and
/// auditors); `PUT` sets `allowed_recipient_domains` (admins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrgPolicy {
    /// The e-mail domains reports may be addressed to; empty: any address.
    /// A key for a recipient outside them is refused (403, audited).
    pub allowed_recipient_domains: Vec<String>,
    /// Who may sign in as a guest: `none`, `any` or domains (read only
    /// here; `medseal keyserver org set --guests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guests: Option<String>,
    /// The longest a share link may live, in days (read only here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_max_days: Option<u32>,
}

/// A report's data key as the organisation console lists it
/// (`GET /v1/keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyView {
    /// The key id.
    pub key_id: String,
    /// The report it seals.
    pub report_id: String,
    /// Who sealed it (their address).
    pub creator: String,
    /// Who may open it.
    pub recipients: Vec<String>,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it stops being released (RFC 3339), if ever.
    pub expires_at: Option<String>,
    /// When it was revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
    /// `live`, `revoked` or `expired`.
    pub status: String,
    /// How many times it was released to someone.
    pub fetches: u64,
    /// Whether it is as the key server sealed it; a changed key is shown
    /// but never released.
    pub intact: bool,
}

/// `GET /v1/keys`: a page of the organisation's keys, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeysList {
    /// The keys on this page.
    pub keys: Vec<KeyView>,
    /// The `offset` of the next page, if there is one.
    pub next_offset: Option<u32>,
}

/// `PATCH /v1/keys/{key_id}`: a new expiry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    /// The new expiry (RFC 3339, in the future, within ten years), or
    /// `null` for none. Required: an empty body changes nothing.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, required = true))]
    pub expires_at: Option<Option<String>>,
}

/// A field that must be given, `null` included: `Some(None)` for `null`,
/// `None` (by `default`) when it is missing.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The latest signed checkpoint, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointView {
    /// Events it covers.
    pub size: u64,
    /// Its Merkle root, hex.
    pub root: String,
    /// When it was signed (RFC 3339).
    pub at: String,
}

/// `GET /v1/audit/status`: whether the log is intact, as far as checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditStatus {
    /// Events in the log.
    pub events: u64,
    /// The chain, tree, checkpoints and state verified up to this event.
    pub verified_up_to: u64,
    /// `intact` or `broken`.
    pub status: String,
    /// What is wrong, when broken.
    pub problem: Option<String>,
    /// The latest signed checkpoint, if verified.
    pub checkpoint: Option<CheckpointView>,
    /// When this check ran (RFC 3339); it is run again when the log has
    /// grown and the last check is a minute old.
    pub checked_at: String,
}

/// One UTC day of `GET /v1/overview`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DayCounts {
    /// The day, `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Reports sealed (keys made).
    pub sealed: u64,
    /// Reports opened (keys released).
    pub opened: u64,
    /// Keys revoked.
    pub revoked: u64,
}

/// `GET /v1/overview`: how the organisation uses the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Overview {
    /// The organisation.
    pub org: String,
    /// One entry per day, oldest first, ending today.
    pub days: Vec<DayCounts>,
    /// Refused sign-ins (password, code or single sign-on) in those days.
    pub failed_sign_ins: u64,
    /// Accounts locked out now after failed sign-ins.
    pub locked_accounts: u64,
    /// Disabled accounts.
    pub disabled_accounts: u64,
    /// All accounts.
    pub users: u64,
}

/// `GET /v1/audit/proof` and `/consistency`: RFC 9162 proof hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Proof {
    /// Hex hashes, in RFC 9162 order.
    pub proof: Vec<String>,
}

/// `GET /v1/audit/public-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicKey {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The 32-byte public key, base64.
    pub public_key: String,
}

/// `POST /v1/drops`: a share link made (multipart part `report`, the sealed
/// file; optional part `days`, its lifetime).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedDrop {
    /// The link's id.
    pub drop_id: String,
    /// The link to give the recipients: `/app/#/drop/{drop_id}` on the key
    /// server's public address.
    pub url: String,
    /// When the link stops working (RFC 3339); the bytes are deleted then.
    pub expires_at: String,
}

/// The S256 challenge of a single sign-on verifier (RFC 7636 §4.2):
/// base64url, unpadded, of its SHA-256. The client sends this when it
/// starts a sign-in and the verifier when it exchanges the grant.
pub fn s256_challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

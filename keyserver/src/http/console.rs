//! The organisation console's calls on users: list, add, disable, enable,
//! change role, end sessions. Admins manage their own organisation;
//! auditors may list; everyone else gets 403, recorded as `admin.denied`.
//! Each change is the same operation the server's command line runs
//! ([`crate::ops::change_user`]), committed with its event.

use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpResponse, web};
use medseal_keyserver_api::v1::{
    CreatedUser, ErrorBody, NewUser, OrgInfo, OrgPolicy, UserPatch, UserView, UsersList,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::caller::{Caller, Credentials};
use crate::accounts::{self, Principal, Role, UserSummary};
use crate::audit::{Action, Outcome};
use crate::error::{Error, Result};
use crate::ops::{self, UserChange, UserRef};
use crate::time::rfc3339;

fn view(u: UserSummary) -> UserView {
    UserView {
        id: u.id,
        email: u.email,
        role: u.role,
        status: u.status.to_owned(),
        intact: u.intact,
        sessions: u32::try_from(u.sessions).unwrap_or(u32::MAX),
        devices: u32::try_from(u.devices).unwrap_or(u32::MAX),
        last_sign_in: u.last_sign_in.map(rfc3339),
    }
}

/// The roles the console may give (a guest comes only from the guest
/// setting).
fn staff_role(role: &str) -> Result<Role> {
    match role.parse()? {
        Role::Guest => Err(Error::Invalid(
            "guests come from the organisation's guest setting, not from the console".into(),
        )),
        r => Ok(r),
    }
}

/// Authenticates and requires `allowed`; a refusal is recorded with what
/// was tried.
pub(super) async fn as_role(
    state: &AppState,
    creds: Credentials,
    allowed: fn(&Principal) -> bool,
    tried: &'static str,
) -> Result<Caller> {
    let (caller, _) = state.authorized(creds, |_, _| Ok(())).await?;
    if !allowed(&caller.principal) {
        state.metrics.denial("console_forbidden");
        let org = caller.principal.org.clone();
        state
            .audit
            .record(
                caller
                    .event(&org, Action::AdminDenied, Outcome::Denied)
                    .detail(format!("not allowed to {tried}")),
            )
            .await?;
        return Err(Error::Forbidden(format!(
            "your role ({}) may not {tried}",
            caller.principal.role.as_str()
        )));
    }
    Ok(caller)
}

fn is_admin(p: &Principal) -> bool {
    p.role == Role::Admin
}

pub(super) fn reads_org(p: &Principal) -> bool {
    crate::policy::may_read_org_audit(p)
}

/// `GET /v1/users` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsersQuery {
    /// Only addresses containing this text (case-insensitive).
    q: Option<String>,
    /// Only this role.
    role: Option<String>,
    /// Only `enabled`, `disabled` or `locked`.
    status: Option<String>,
}

async fn users_of(state: &AppState, org: String) -> Result<Vec<UserSummary>> {
    let ring = state.keyring.get();
    let now = state.clock.now_ms();
    super::handlers::with_conn(state, move |c| {
        accounts::list_users(c, ring.state_key(), Some(&org), now)
    })
    .await
}

/// The caller's organisation's users (admins and auditors).
#[utoipa::path(get, path = "/v1/users", params(UsersQuery, ("X-Device-Id" = String, Header)),
    responses((status = 200, body = UsersList), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_users(
    state: web::Data<AppState>,
    creds: Credentials,
    query: web::Query<UsersQuery>,
) -> Result<HttpResponse> {
    let caller = as_role(&state, creds, reads_org, "list users").await?;
    let q = query.into_inner();
    let needle = q.q.map(|s| s.trim().to_lowercase());
    let users = users_of(&state, caller.principal.org.clone())
        .await?
        .into_iter()
        .filter(|u| needle.as_deref().is_none_or(|n| u.email.contains(n)))
        .filter(|u| q.role.as_deref().is_none_or(|r| u.role == r))
        .filter(|u| q.status.as_deref().is_none_or(|s| u.status == s))
        .map(view)
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(UsersList { users }))
}

async fn one_user(state: &AppState, org: String, id: i64) -> Result<UserView> {
    users_of(state, org)
        .await?
        .into_iter()
        .find(|u| u.id == id)
        .map(view)
        .ok_or_else(|| Error::NotFound("no such user".into()))
}

/// Add a user to the caller's organisation (admins). Nobody types a
/// password: the user signs in with a code mailed to the address, or
/// through the organisation's single sign-on.
#[utoipa::path(post, path = "/v1/users", request_body = NewUser,
    responses((status = 201, body = CreatedUser), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    params(("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn create_user(
    state: web::Data<AppState>,
    creds: Credentials,
    body: web::Json<NewUser>,
) -> Result<HttpResponse> {
    let caller = as_role(&state, creds, is_admin, "add users").await?;
    let NewUser { email, role } = body.into_inner();
    let role = staff_role(&role)?;
    let email = accounts::normalise_email(&email)?;
    let org = caller.principal.org.clone();
    let applied = state
        .audit
        .apply(ops::add_user(
            caller.actor(),
            org.clone(),
            email,
            role,
            String::new(),
        ))
        .await?;
    let id = applied.value;
    let org_id = caller.principal.org_id;
    let sso = super::handlers::with_conn(&state, move |c| {
        use crate::db::schema::sso_configs;
        use diesel::prelude::*;
        let n: i64 = sso_configs::table
            .filter(sso_configs::org_id.eq(org_id))
            .count()
            .get_result(c)?;
        Ok(n > 0)
    })
    .await?;
    let user = one_user(&state, org, id).await?;
    Ok(HttpResponse::Created().json(CreatedUser {
        user,
        sign_in: if sso { "sso" } else { "code" }.to_owned(),
    }))
}

async fn change(
    state: &AppState,
    creds: Credentials,
    id: i64,
    what: UserChange,
    tried: &'static str,
) -> Result<HttpResponse> {
    let caller = as_role(state, creds, is_admin, tried).await?;
    if id == caller.principal.user_id && matches!(what, UserChange::Disable | UserChange::Role(_)) {
        // An organisation must not lock its last way in by accident.
        return Err(Error::Invalid(
            "you cannot disable yourself or change your own role; another admin can".into(),
        ));
    }
    let who = UserRef::InOrg {
        id,
        org_id: caller.principal.org_id,
    };
    let applied = state
        .audit
        .apply(ops::change_user(caller.actor(), who, what))
        .await?;
    if let Err(e) = applied.value {
        if let Error::Integrity(_) = e {
            state.metrics.integrity_violation();
        }
        return Err(e);
    }
    let user = one_user(state, caller.principal.org.clone(), id).await?;
    Ok(HttpResponse::Ok().json(user))
}

/// Disable a user of the caller's organisation: their sessions end at once.
#[utoipa::path(post, path = "/v1/users/{id}/disable",
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    params(("id" = i64, Path), ("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn disable_user(
    state: web::Data<AppState>,
    creds: Credentials,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    change(
        &state,
        creds,
        path.into_inner(),
        UserChange::Disable,
        "disable users",
    )
    .await
}

/// Let a disabled or locked-out user of the caller's organisation in again.
#[utoipa::path(post, path = "/v1/users/{id}/enable",
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    params(("id" = i64, Path), ("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn enable_user(
    state: web::Data<AppState>,
    creds: Credentials,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    change(
        &state,
        creds,
        path.into_inner(),
        UserChange::Enable,
        "enable users",
    )
    .await
}

/// End every session of a user of the caller's organisation.
#[utoipa::path(post, path = "/v1/users/{id}/sessions/revoke",
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    params(("id" = i64, Path), ("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn end_sessions(
    state: web::Data<AppState>,
    creds: Credentials,
    path: web::Path<i64>,
) -> Result<HttpResponse> {
    change(
        &state,
        creds,
        path.into_inner(),
        UserChange::EndSessions,
        "end users' sessions",
    )
    .await
}

/// Change the role of a user of the caller's organisation; their sessions
/// end, so the next sign-in has it.
#[utoipa::path(patch, path = "/v1/users/{id}", request_body = UserPatch,
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    params(("id" = i64, Path), ("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn patch_user(
    state: web::Data<AppState>,
    creds: Credentials,
    path: web::Path<i64>,
    body: web::Json<UserPatch>,
) -> Result<HttpResponse> {
    let role = staff_role(&body.into_inner().role)?;
    change(
        &state,
        creds,
        path.into_inner(),
        UserChange::Role(role),
        "change roles",
    )
    .await
}

async fn policy_view(state: &AppState, org_id: i64) -> Result<OrgPolicy> {
    let ring = state.keyring.get();
    let (recipients, guests, days) = super::handlers::with_conn(state, move |c| {
        let recipients = crate::recipients::policy_of(c, org_id, ring.state_key())?;
        let guests = crate::signin::guests::policy_of(c, org_id, ring.state_key())?;
        let days = crate::drops::org_max_days(c, org_id)?;
        Ok((recipients, guests, days))
    })
    .await?;
    let recipients = recipients.ok_or_else(|| {
        Error::Integrity(
            "the organisation's recipient policy was changed outside the key server".into(),
        )
    })?;
    Ok(OrgPolicy {
        allowed_recipient_domains: recipients.domains(),
        guests: Some(guests.policy.stored()),
        drop_max_days: Some(days),
    })
}

/// The caller's organisation's settings (admins and auditors).
#[utoipa::path(get, path = "/v1/org/policy",
    responses((status = 200, body = OrgPolicy), (status = 403, body = ErrorBody)),
    params(("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn get_policy(state: web::Data<AppState>, creds: Credentials) -> Result<HttpResponse> {
    let caller = as_role(&state, creds, reads_org, "read the organisation's settings").await?;
    let view = policy_view(&state, caller.principal.org_id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(view))
}

fn is_member(p: &Principal) -> bool {
    p.role != Role::Guest
}

/// The caller's organisation and its public settings (any member; a guest,
/// who belongs to another organisation, gets 403): where the web app's
/// capture page sends reports, and the settings `GET /v1/org/policy` shows.
#[utoipa::path(get, path = "/v1/org",
    responses((status = 200, body = OrgInfo), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    params(("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn get_org(state: web::Data<AppState>, creds: Credentials) -> Result<HttpResponse> {
    let caller = as_role(&state, creds, is_member, "read the organisation's settings").await?;
    let org_id = caller.principal.org_id;
    let policy = policy_view(&state, org_id).await?;
    let ring = state.keyring.get();
    let endpoint_url = super::handlers::with_conn(&state, move |c| {
        crate::org_endpoint::endpoint_of(c, org_id, ring.state_key())
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(OrgInfo {
            name: caller.principal.org,
            endpoint_url,
            guests: policy.guests.unwrap_or_else(|| "none".into()),
            drop_max_days: policy.drop_max_days.unwrap_or(crate::drops::MAX_DAYS),
            allowed_recipient_domains: policy.allowed_recipient_domains,
        }))
}

/// Set the domains the caller's organisation's reports may be addressed to
/// (admins); an empty list lifts the restriction.
#[utoipa::path(put, path = "/v1/org/policy", request_body = OrgPolicy,
    responses((status = 200, body = OrgPolicy), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody)),
    params(("X-Device-Id" = String, Header)), security(("bearer" = [])))]
pub async fn put_policy(
    state: web::Data<AppState>,
    creds: Credentials,
    body: web::Json<OrgPolicy>,
) -> Result<HttpResponse> {
    let caller = as_role(
        &state,
        creds,
        is_admin,
        "change the organisation's settings",
    )
    .await?;
    let body = body.into_inner();
    if body.guests.is_some() || body.drop_max_days.is_some() {
        return Err(Error::Invalid(
            "only allowed_recipient_domains is set here; guests and drop_max_days are set with medseal keyserver org set".into(),
        ));
    }
    let policy = crate::recipients::RecipientPolicy::from_words(&body.allowed_recipient_domains)?;
    state
        .audit
        .apply(crate::recipients::set_policy(
            caller.actor(),
            caller.principal.org.clone(),
            policy,
        ))
        .await?;
    let view = policy_view(&state, caller.principal.org_id).await?;
    Ok(HttpResponse::Ok().json(view))
}

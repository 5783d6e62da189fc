//! The audit log's public face: signed checkpoints, inclusion and
//! consistency proofs, the public key they verify with, and receipts.
//! None of these need a session: they reveal sizes and hashes, never an
//! event's content (a receipt goes only to the caller whose event it is).

use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpResponse, web};
use medseal_keyserver_api::transparency::{Receipt, encode_public_key};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::AppState;
use crate::audit::Applied;
use crate::error::{Error, Result};
use medseal_keyserver_api::v1::{ErrorBody, Proof, PublicKey};

fn fresh(body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(body)
}

async fn on_pool<T: Send + 'static>(
    state: &web::Data<AppState>,
    f: impl FnOnce(&AppState, &mut crate::db::Conn) -> Result<T> + Send + 'static,
) -> Result<T> {
    let st = state.clone();
    web::block(move || {
        let mut conn = st.pool.get()?;
        f(&st, &mut conn)
    })
    .await
    .map_err(|e| Error::Internal(format!("worker pool: {e}")))?
}

/// The receipt of the first event of `applied`: the event, its batch's
/// checkpoint, and the inclusion proof between them.
pub async fn receipt_for<T>(state: &AppState, applied: &Applied<T>) -> Result<Receipt> {
    let event = applied
        .events
        .first()
        .cloned()
        .ok_or_else(|| Error::Internal("a committed event is missing".into()))?;
    let (seq, size) = (event.seq, applied.checkpoint.size);
    let pool = state.pool.clone();
    let tree = state.audit.tree.clone();
    let proof = if state.inline_db {
        tree.inclusion(|| Ok(pool.get()?), seq, size)?
    } else {
        web::block(move || tree.inclusion(|| Ok(pool.get()?), seq, size))
            .await
            .map_err(|e| Error::Internal(format!("worker pool: {e}")))??
    };
    Ok(Receipt {
        event,
        checkpoint: (*applied.checkpoint).clone(),
        proof: proof.iter().map(hex::encode).collect(),
    })
}

/// The latest signed checkpoint: tree size, root, time, Ed25519 signature.
#[utoipa::path(get, path = "/v1/audit/checkpoint",
    responses((status = 200, description = "`{size, root, at_ms, signature}`"),
              (status = 404, body = ErrorBody)))]
pub async fn checkpoint(state: web::Data<AppState>) -> Result<HttpResponse> {
    let c = on_pool(&state, |_, c| crate::audit::latest_checkpoint(c)).await?;
    let c = c.ok_or_else(|| Error::NotFound("the audit log is empty".into()))?;
    Ok(fresh(c))
}

/// `GET /v1/audit/proof` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ProofQuery {
    /// The event's sequence number.
    seq: u64,
    /// The tree size of a checkpoint.
    size: u64,
}

/// Inclusion proof of event `seq` in the tree of `size` events (RFC 9162).
#[utoipa::path(get, path = "/v1/audit/proof", params(ProofQuery),
    responses((status = 200, body = Proof), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn proof(state: web::Data<AppState>, q: web::Query<ProofQuery>) -> Result<HttpResponse> {
    let ProofQuery { seq, size } = q.into_inner();
    let p = on_pool(&state, move |st, c| {
        st.audit.tree.inclusion(|| Ok(c), seq, size)
    })
    .await?;
    Ok(fresh(Proof {
        proof: p.iter().map(hex::encode).collect(),
    }))
}

/// `GET /v1/audit/consistency` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The older tree size.
    from: u64,
    /// The newer tree size.
    to: u64,
}

/// Consistency proof between the trees of `from` and `to` events (RFC 9162).
#[utoipa::path(get, path = "/v1/audit/consistency", params(ConsistencyQuery),
    responses((status = 200, body = Proof), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn consistency(
    state: web::Data<AppState>,
    q: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse> {
    let ConsistencyQuery { from, to } = q.into_inner();
    let p = on_pool(&state, move |st, c| {
        st.audit.tree.consistency(|| Ok(c), from, to)
    })
    .await?;
    Ok(fresh(Proof {
        proof: p.iter().map(hex::encode).collect(),
    }))
}

/// The Ed25519 public key that checkpoints and receipts verify with.
#[utoipa::path(get, path = "/v1/audit/public-key", responses((status = 200, body = PublicKey)))]
pub async fn public_key(state: web::Data<AppState>) -> HttpResponse {
    let key = state.keyring.get().checkpoint_public_key();
    HttpResponse::Ok().json(PublicKey {
        algorithm: "ed25519".into(),
        public_key: encode_public_key(&key),
    })
}

//! Share links ("drops"): a sealed report's bytes, held by the key server
//! so that a recipient can open the report from a link instead of an
//! attachment that mail cannot carry.
//!
//! What the server holds is the sealed file, never a key or plaintext: a
//! drop grants nothing by itself. Who may download it is decided at every
//! download by the report's key (the same rule as a key fetch, on the
//! sealed, audited key row), so a drop whose key is revoked or expired is
//! gone too. The drop's own row (its key id, its expiry) is therefore not
//! access-control state and carries no state MAC: an insider who edits it
//! can lengthen how long recipients may download ciphertext they could
//! already decrypt, or point it at another key whose recipients then get
//! bytes they cannot open.
//!
//! Bytes are kept in the store (so every server of a pool sees them) in
//! chunks of [`CHUNK_LEN`]: an upload writes its chunks first, then the
//! drop's row commits with its `drop.created` event; chunks without a row
//! whose newest chunk is over an hour old are an abandoned upload, removed
//! by [`purge`] (never a drop, so not audited) together with expired drops
//! (each removal audited with `drop.purged`).

use diesel::prelude::*;

use crate::audit::{Action, Actor, Tx};
use crate::db::Conn;
use crate::db::schema::{drop_chunks, drops, orgs};
use crate::error::{Error, Result};

/// Bytes per stored chunk.
pub const CHUNK_LEN: usize = 1 << 20;

/// Lifetime of a drop when the sharer names none, in days.
pub const DEFAULT_DAYS: u32 = 7;

/// The longest lifetime an organisation may allow, in days; also the
/// organisation maximum until it sets one.
pub const MAX_DAYS: u32 = 30;

/// Default size limit of one drop (a long video report).
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// How long the chunks of an unfinished upload are kept.
const ABANDONED_AFTER_MS: i64 = 60 * 60 * 1000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A fresh drop id: 128 random bits. The id is not what protects the drop
/// (the key is), but nobody should be able to list drops by guessing.
pub fn new_id() -> Result<String> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(format!("d_{}", hex::encode(id)))
}

/// Whether `id` is shaped like a drop id (checked before any lookup, so
/// that nothing a client chose reaches the store or the trail).
pub fn check_id(id: &str) -> Result<()> {
    let ok = id.len() == 34
        && id.starts_with("d_")
        && id[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::NotFound("no such share link".into()))
    }
}

/// The organisation's longest drop lifetime, in days.
pub fn org_max_days(conn: &mut Conn, org_id: i64) -> Result<u32> {
    let v: Option<i32> = orgs::table
        .filter(orgs::id.eq(org_id))
        .select(orgs::drop_max_days)
        .first(conn)
        .optional()?
        .flatten();
    Ok(v.and_then(|d| u32::try_from(d).ok())
        .filter(|d| (1..=MAX_DAYS).contains(d))
        .unwrap_or(MAX_DAYS))
}

/// The lifetime to give a drop: `asked` days (default
/// [`DEFAULT_DAYS`]), within `1..=org_max`.
pub fn lifetime_days(asked: Option<u32>, org_max: u32) -> Result<u32> {
    match asked {
        None => Ok(DEFAULT_DAYS.min(org_max)),
        Some(d) if (1..=org_max).contains(&d) => Ok(d),
        Some(d) => Err(Error::Invalid(format!(
            "a share link lives 1 to {org_max} days in this organisation, not {d}"
        ))),
    }
}

/// Stores one chunk of an upload.
pub fn write_chunk(conn: &mut Conn, drop_id: &str, seq: i32, bytes: &[u8], now: i64) -> Result<()> {
    diesel::insert_into(drop_chunks::table)
        .values((
            drop_chunks::drop_id.eq(drop_id),
            drop_chunks::seq.eq(seq),
            drop_chunks::bytes.eq(bytes),
            drop_chunks::written_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Removes the chunks of an upload that will not be finished.
pub fn discard_chunks(conn: &mut Conn, drop_id: &str) -> Result<()> {
    diesel::delete(drop_chunks::table.filter(drop_chunks::drop_id.eq(drop_id))).execute(conn)?;
    Ok(())
}

/// One chunk of a drop.
pub fn read_chunk(conn: &mut Conn, drop_id: &str, seq: i32) -> Result<Vec<u8>> {
    drop_chunks::table
        .filter(drop_chunks::drop_id.eq(drop_id))
        .filter(drop_chunks::seq.eq(seq))
        .select(drop_chunks::bytes)
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::Integrity(format!("share link {drop_id} is missing a chunk")))
}

/// A drop as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = drops)]
pub struct Drop {
    /// Its id.
    pub drop_id: String,
    /// The sharer's organisation.
    pub org_id: i64,
    /// Who shared it.
    pub creator_id: i64,
    /// The key that seals it (from its header).
    pub key_id: String,
    /// Sealed bytes.
    pub size: i64,
    /// SHA-256 of the sealed bytes, sent with each download
    /// (`Repr-Digest`) for the client to check.
    pub sha256: Vec<u8>,
    /// Number of chunks.
    pub chunks: i32,
    /// When it was made (UTC ms).
    pub created_at: i64,
    /// When it stops being served (UTC ms).
    pub expires_at: i64,
}

/// Loads a drop.
pub fn lookup(conn: &mut Conn, drop_id: &str) -> Result<Option<Drop>> {
    Ok(drops::table
        .filter(drops::drop_id.eq(drop_id))
        .select(Drop::as_select())
        .first(conn)
        .optional()?)
}

/// Makes a drop whose chunks are written: its row and `drop.created`, in
/// one transaction. `report_id` names the report in the trail.
pub fn create(
    actor: Actor,
    org: String,
    drop: Drop,
    report_id: String,
) -> impl Fn(&mut Tx<'_>) -> Result<()> + Send + Sync + 'static {
    move |tx| {
        let stored: i64 = drop_chunks::table
            .filter(drop_chunks::drop_id.eq(&drop.drop_id))
            .count()
            .get_result(tx.conn)?;
        if stored != i64::from(drop.chunks) {
            return Err(Error::Internal(format!(
                "share link {}: {stored} of {} chunks stored",
                drop.drop_id, drop.chunks
            )));
        }
        diesel::insert_into(drops::table)
            .values((
                drops::drop_id.eq(&drop.drop_id),
                drops::org_id.eq(drop.org_id),
                drops::creator_id.eq(drop.creator_id),
                drops::key_id.eq(&drop.key_id),
                drops::size.eq(drop.size),
                drops::sha256.eq(&drop.sha256),
                drops::chunks.eq(drop.chunks),
                drops::created_at.eq(drop.created_at),
                drops::expires_at.eq(drop.expires_at),
            ))
            .execute(tx.conn)?;
        tx.record(
            actor
                .event(&org, Action::DropCreated, crate::audit::Outcome::Success)
                .detail(format!(
                    "share link {}, {} bytes, expires {}",
                    drop.drop_id,
                    drop.size,
                    crate::time::rfc3339(drop.expires_at)
                ))
                .about(Some(drop.key_id.clone()), Some(report_id.clone())),
        );
        Ok(())
    }
}

/// Removes expired drops (each with a `drop.purged` event) and abandoned
/// uploads; answers how many drops went.
pub fn purge(actor: Actor) -> impl Fn(&mut Tx<'_>) -> Result<u64> + Send + Sync + 'static {
    move |tx| {
        let now = tx.now;
        let expired: Vec<(String, String, String)> = drops::table
            .inner_join(orgs::table)
            .filter(drops::expires_at.le(now))
            .select((drops::drop_id, drops::key_id, orgs::name))
            .load(tx.conn)?;
        for (id, key_id, org) in &expired {
            diesel::delete(drop_chunks::table.filter(drop_chunks::drop_id.eq(id)))
                .execute(tx.conn)?;
            diesel::delete(drops::table.filter(drops::drop_id.eq(id))).execute(tx.conn)?;
            tx.record(
                actor
                    .event(org, Action::DropPurged, crate::audit::Outcome::Success)
                    .detail(format!("share link {id} expired; its bytes are deleted"))
                    .about(Some(key_id.clone()), None),
            );
        }
        // Uploads whose newest chunk is old: one still arriving keeps
        // writing chunks, so it is never taken for abandoned.
        let cutoff = now - ABANDONED_AFTER_MS;
        let candidates: Vec<String> = drop_chunks::table
            .filter(drop_chunks::written_at.lt(cutoff))
            .filter(diesel::dsl::not(
                drop_chunks::drop_id.eq_any(drops::table.select(drops::drop_id)),
            ))
            .select(drop_chunks::drop_id)
            .distinct()
            .load(tx.conn)?;
        for id in candidates {
            let newest: Option<i64> = drop_chunks::table
                .filter(drop_chunks::drop_id.eq(&id))
                .select(diesel::dsl::max(drop_chunks::written_at))
                .first(tx.conn)?;
            if newest.is_some_and(|t| t < cutoff) {
                discard_chunks(tx.conn, &id)?;
            }
        }
        Ok(expired.len() as u64)
    }
}

/// The expiry of a drop made at `now` that lives `days`.
pub fn expiry(now: i64, days: u32) -> i64 {
    now + i64::from(days) * DAY_MS
}

/// Sets an organisation's longest drop lifetime (`org set
/// --drop-max-days`), with its `org.updated` event.
pub fn set_org_max_days(
    actor: Actor,
    org: String,
    days: u32,
) -> impl Fn(&mut Tx<'_>) -> Result<()> + Send + Sync + 'static {
    move |tx| {
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(Error::Invalid(format!(
                "--drop-max-days must be 1 to {MAX_DAYS}"
            )));
        }
        let n = diesel::update(orgs::table.filter(orgs::name.eq(&org)))
            .set(orgs::drop_max_days.eq(days as i32))
            .execute(tx.conn)?;
        if n == 0 {
            return Err(Error::NotFound(format!("no organisation '{org}'")));
        }
        tx.record(
            actor
                .event(&org, Action::OrgUpdated, crate::audit::Outcome::Success)
                .detail(format!("share links live at most {days} days")),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_stay_within_the_organisation_maximum() {
        assert_eq!(lifetime_days(None, 30).unwrap(), 7);
        assert_eq!(lifetime_days(None, 3).unwrap(), 3);
        assert_eq!(lifetime_days(Some(30), 30).unwrap(), 30);
        assert!(lifetime_days(Some(31), 30).is_err());
        assert!(lifetime_days(Some(0), 30).is_err());
        assert!(lifetime_days(Some(10), 5).is_err());
    }

    #[test]
    fn only_well_formed_ids_are_looked_up() {
        let id = new_id().unwrap();
        assert!(check_id(&id).is_ok());
        assert_ne!(id, new_id().unwrap());
        for bad in [
            "",
            "d_",
            "d_XYZ",
            "k_00000000000000000000000000000000",
            "d_0000000000000000000000000000000g",
        ] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}

//! Operations for the admin command line, on the same store as the server.
//! Each change goes through the same operations layer as the HTTP API
//! ([`crate::ops`]), committed with its audit event (actor
//! `admin-cli:<os user>`) in one transaction.

use medseal_keyserver_api::transparency::Checkpoint;

use crate::accounts::{self, Role};
use crate::audit::{self, Action, Actor, Outcome, Verification, ledger};
use crate::db::{Conn, connect, migrate};
use crate::error::Result;
use crate::keyring::Keyring;
use crate::keys;
use crate::ops;
use crate::store::Store;
use crate::time::now_ms;

/// An open store for one admin command.
pub struct Admin {
    conn: Conn,
    store: Store,
    ring: Keyring,
    actor: Actor,
}

impl Admin {
    /// Opens the database (applying migrations) and the keyring, ready for
    /// changes.
    pub fn open(store: Store) -> Result<Self> {
        Self::open_as(store, true)
    }

    /// Opens the store to read it only (`audit verify`, `audit public-key`):
    /// nothing is written, not even the one-time preparation of a store of
    /// an earlier version, so a check never changes what it checks.
    pub fn open_read_only(store: Store) -> Result<Self> {
        Self::open_as(store, false)
    }

    fn open_as(store: Store, writing: bool) -> Result<Self> {
        let mut conn = connect(&store.location)?;
        migrate(&mut conn)?;
        let ring = if writing {
            store.open_for_writing(&mut conn)?
        } else {
            store.open_keyring(&mut conn)?
        };
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Ok(Admin {
            conn,
            store,
            ring,
            actor: Actor::local(format!("admin-cli:{user}")),
        })
    }

    fn commit<T: Send + 'static>(
        &mut self,
        change: impl Fn(&mut audit::Tx<'_>) -> Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        ledger::commit_one(&mut self.conn, &self.ring, now_ms(), change)
    }

    /// `org add NAME`.
    pub fn add_org(&mut self, name: &str) -> Result<i64> {
        self.commit(ops::add_org(self.actor.clone(), name.to_owned()))
    }

    /// `org set --drop-max-days N`.
    pub fn set_drop_max_days(&mut self, org: &str, days: u32) -> Result<()> {
        self.commit(crate::drops::set_org_max_days(
            self.actor.clone(),
            org.to_owned(),
            days,
        ))
    }

    /// `org set --guests any|DOMAIN…|none`.
    pub fn set_guests(
        &mut self,
        org: &str,
        policy: crate::signin::guests::GuestPolicy,
    ) -> Result<()> {
        self.commit(crate::signin::guests::set_policy(
            self.actor.clone(),
            org.to_owned(),
            policy,
        ))
    }

    /// `org set --allowed-recipient-domains any|DOMAIN…`.
    pub fn set_recipient_domains(
        &mut self,
        org: &str,
        policy: crate::recipients::RecipientPolicy,
    ) -> Result<()> {
        self.commit(crate::recipients::set_policy(
            self.actor.clone(),
            org.to_owned(),
            policy,
        ))
    }

    /// `org set --endpoint-url URL|none`: where the web app's capture page
    /// sends reports (`None` clears it).
    pub fn set_endpoint_url(&mut self, org: &str, url: Option<String>) -> Result<()> {
        self.commit(crate::org_endpoint::set_endpoint(
            self.actor.clone(),
            org.to_owned(),
            url,
        ))
    }

    /// `org sso set`.
    pub fn set_sso(&mut self, org: &str, settings: crate::signin::sso::SsoSettings) -> Result<()> {
        self.commit(crate::signin::sso::set(
            self.actor.clone(),
            org.to_owned(),
            settings,
        ))
    }

    /// `org sso remove`.
    pub fn remove_sso(&mut self, org: &str) -> Result<()> {
        self.commit(crate::signin::sso::remove(
            self.actor.clone(),
            org.to_owned(),
        ))
    }

    /// `org sso show`: the settings without the secret, and the callback
    /// to register at the provider (under `public_url`).
    pub fn show_sso(
        &mut self,
        org: &str,
        public_url: &str,
    ) -> Result<Option<crate::signin::sso::SsoView>> {
        crate::signin::sso::show(&mut self.conn, org, self.ring.state_key(), public_url)
    }

    /// `user add`: the password must meet [`crate::passwords::check_new`].
    pub fn add_user(&mut self, org: &str, email: &str, role: Role, password: &[u8]) -> Result<i64> {
        crate::passwords::check_new(password, email)?;
        let hash = accounts::hash_password(password)?;
        self.commit(ops::add_user(
            self.actor.clone(),
            org.to_owned(),
            email.to_owned(),
            role,
            hash,
        ))
    }

    /// `user disable`: immediate, ends every session.
    pub fn disable_user(&mut self, email: &str) -> Result<()> {
        self.change_user(email, ops::UserChange::Disable)
    }

    /// `user enable`: lets a disabled or locked-out user in again.
    pub fn enable_user(&mut self, email: &str) -> Result<()> {
        self.change_user(email, ops::UserChange::Enable)
    }

    /// `user role`: their sessions end, so the next sign-in has the new role.
    pub fn set_role(&mut self, email: &str, role: Role) -> Result<()> {
        self.change_user(email, ops::UserChange::Role(role))
    }

    /// `user passwd`: a new password (checked like a first one); their
    /// sessions end and a lockout is lifted.
    pub fn set_password(&mut self, email: &str, password: &[u8]) -> Result<()> {
        crate::passwords::check_new(password, email)?;
        let hash = accounts::hash_password(password)?;
        self.change_user(email, ops::UserChange::Password(hash))
    }

    fn change_user(&mut self, email: &str, change: ops::UserChange) -> Result<()> {
        self.commit(ops::change_user(
            self.actor.clone(),
            ops::UserRef::Email(email.to_owned()),
            change,
        ))?
    }

    /// `user list`: every user (of `org`), with their live sessions.
    pub fn list_users(&mut self, org: Option<&str>) -> Result<Vec<accounts::UserSummary>> {
        accounts::list_users(&mut self.conn, self.ring.state_key(), org, now_ms())
    }

    /// `org list`.
    pub fn list_orgs(&mut self) -> Result<Vec<accounts::OrgSummary>> {
        accounts::list_orgs(&mut self.conn, self.ring.state_key())
    }

    /// `audit verify`, optionally against a checkpoint saved elsewhere.
    pub fn verify_audit(&mut self, checkpoint: Option<&Checkpoint>) -> Result<Verification> {
        audit::verify(&mut self.conn, &self.ring, checkpoint, true)
    }

    /// The Ed25519 public key this store's checkpoints verify with.
    pub fn checkpoint_public_key(&self) -> [u8; 32] {
        self.ring.checkpoint_public_key()
    }

    /// `audit export`.
    pub fn export_audit(
        &mut self,
        filter: &audit::Filter,
        format: audit::Format,
    ) -> Result<Vec<u8>> {
        let mut filter = filter.clone();
        if let (Some(report), None) = (&filter.report_id, &filter.org) {
            filter.org = keys::report_org(&mut self.conn, report)?;
        }
        let filter = &filter;
        let records = audit::query(&mut self.conn, filter)?;
        let event = self
            .actor
            .event(
                filter.org.as_deref().unwrap_or(""),
                Action::AuditRead,
                Outcome::Success,
            )
            .detail(format!("export of {} events", records.len()));
        self.commit(ops::record(vec![event]))?;
        audit::render(&records, format, filter.org.as_deref(), None)
    }

    /// `rotate-master-key`: a new version, made current in the store (in
    /// the same transaction as its event, so that every server wraps every
    /// key created after that commit under it), every stored key re-wrapped
    /// under it, and versions no longer used retired. No waiting: a server
    /// reads the current version inside each writing transaction, so once
    /// the switch has committed no key can be wrapped under an old version.
    pub fn rotate_master_key(&mut self) -> Result<Rotation> {
        let source = self.store.keyring.clone();
        self.ring = Keyring::rotate(&source)?;
        let version = self.ring.current_version();
        self.commit(ops::use_master_key(self.actor.clone(), version))?;
        let mut rewrapped = 0u64;
        loop {
            let n = self.commit(ops::rewrap_some(500))?;
            if n == 0 {
                break;
            }
            rewrapped += n;
        }
        let in_use = keys::versions_in_use(&mut self.conn)?;
        let retired = Keyring::retire(&source, &in_use)?;
        self.ring = Keyring::load(&source)?;
        let event = self
            .actor
            .event("", Action::MasterKeyRetired, Outcome::Success)
            .detail(format!(
                "version {version} current; {rewrapped} keys re-wrapped; retired {retired:?}"
            ));
        self.commit(ops::record(vec![event]))?;
        Ok(Rotation {
            version,
            rewrapped,
            retired,
        })
    }
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotation {
    /// The new current version.
    pub version: u32,
    /// Keys re-wrapped.
    pub rewrapped: u64,
    /// Versions removed from the keyring.
    pub retired: Vec<u32>,
}

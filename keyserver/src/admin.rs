//! Operations for the admin command line, on the same store as the server.
//! Each change is audited with the actor `admin-cli:<os user>`.

use crate::accounts::{self, Role};
use crate::audit::{self, Action, Event, Outcome, Verification};
use crate::db::{Conn, connect, migrate};
use crate::error::Result;
use crate::keyring::Keyring;
use crate::keys;
use crate::store::Store;

/// An open store for one admin command.
pub struct Admin {
    conn: Conn,
    store: Store,
    ring: Keyring,
    actor: String,
}

impl Admin {
    /// Opens the database (applying migrations) and the keyring.
    pub fn open(store: Store) -> Result<Self> {
        let mut conn = connect(&store.location)?;
        migrate(&mut conn)?;
        let ring = store.open_keyring(&mut conn)?;
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Ok(Admin {
            conn,
            store,
            ring,
            actor: format!("admin-cli:{user}"),
        })
    }

    fn audit(&mut self, org: &str, action: Action, detail: String) -> Result<()> {
        let e = Event::new(&self.actor, org, action, Outcome::Success).detail(detail);
        audit::append(&mut self.conn, self.ring.audit_key(), &[e])?;
        Ok(())
    }

    /// `org add NAME`.
    pub fn add_org(&mut self, name: &str) -> Result<i64> {
        let id = accounts::add_org(&mut self.conn, name)?;
        self.audit(name, Action::OrgCreated, format!("organisation {name}"))?;
        Ok(id)
    }

    /// `user add`.
    pub fn add_user(&mut self, org: &str, email: &str, role: Role, password: &[u8]) -> Result<i64> {
        let id = accounts::add_user(&mut self.conn, org, email, role, password)?;
        let email = accounts::normalise_email(email)?;
        self.audit(
            org,
            Action::UserCreated,
            format!("{email} as {}", role.as_str()),
        )?;
        Ok(id)
    }

    /// `user disable`: immediate, ends every session.
    pub fn disable_user(&mut self, email: &str) -> Result<()> {
        let org = accounts::disable_user(&mut self.conn, email)?;
        let email = accounts::normalise_email(email)?;
        self.audit(&org, Action::UserDisabled, email)
    }

    /// `audit verify`.
    pub fn verify_audit(&mut self) -> Result<Verification> {
        audit::verify(&mut self.conn, self.ring.audit_key())
    }

    /// `audit export`.
    pub fn export_audit(
        &mut self,
        filter: &audit::Filter,
        format: audit::Format,
    ) -> Result<Vec<u8>> {
        let records = audit::query(&mut self.conn, filter)?;
        self.audit(
            filter.org.as_deref().unwrap_or(""),
            Action::AuditRead,
            format!("export of {} events", records.len()),
        )?;
        audit::render(&records, format)
    }

    /// `rotate-master-key`: a new current version, every stored key re-wrapped
    /// under it, and versions no longer used retired. Servers keep answering:
    /// they pick up the new keyring file when they next see an unknown version
    /// or notice the file changed.
    pub fn rotate_master_key(&mut self) -> Result<Rotation> {
        let source = self.store.keyring.clone();
        let ring = Keyring::rotate(&source)?;
        let version = ring.current_version();
        self.ring = ring;
        // Rows created meanwhile by a server that had not yet reloaded are
        // caught by a second pass after the servers' reload interval.
        let mut rewrapped = keys::rewrap_all(&mut self.conn, &self.ring)?;
        std::thread::sleep(std::time::Duration::from_secs(3));
        rewrapped += keys::rewrap_all(&mut self.conn, &self.ring)?;
        let in_use = keys::versions_in_use(&mut self.conn)?;
        let retired = Keyring::retire(&source, &in_use)?;
        self.ring = Keyring::load(&source)?;
        self.audit(
            "",
            Action::MasterKeyRotated,
            format!("now version {version}; {rewrapped} keys re-wrapped; retired {retired:?}"),
        )?;
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

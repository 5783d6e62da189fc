//! The key server client, as capture and its callers use it: the shared
//! client of `medseal-keyserver-api`, plus the device id and report ids that
//! a capturing device makes.

pub use medseal_keyserver_api::client::{
    ClientError, KeyClient, ReportKey, Session, SessionOwner, origin_of,
};

/// A device's stable id, kept in the file `path`: read when it is there,
/// else made (`PREFIX_` and 32 hex digits) and written owner-only, synced.
/// The key server binds each session to it. Two processes making it at
/// once agree: the second finds the first's file and uses that id.
pub fn device_id_at(path: &std::path::Path, prefix: &str) -> std::io::Result<String> {
    let existing = match std::fs::File::open(path) {
        Ok(f) => Some(medseal_format::read_bounded_string(f, 256)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(id) = existing.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        return Ok(id.to_owned());
    }
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
    let id = format!("{prefix}_{}", hex::encode(b));
    // Owner-only, synced, and under its name only when complete.
    let options = medseal_files::WriteOptions {
        // An empty file (a crash while it was first written elsewhere) is
        // replaced; otherwise the first writer wins.
        create_new: existing.is_none(),
    };
    match medseal_files::write_private(path, id.as_bytes(), options) {
        Ok(()) => Ok(id),
        Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => {
            let f = std::fs::File::open(path)?;
            Ok(medseal_format::read_bounded_string(f, 256)?
                .trim()
                .to_owned())
        }
        Err(e) => Err(e.source),
    }
}

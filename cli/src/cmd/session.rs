//! `medseal whoami` and `medseal logout`: this device's sessions.

use anyhow::{Result, bail};

use crate::sessions;

/// Arguments of `medseal whoami`.
#[derive(Debug, clap::Args)]
pub struct WhoamiArgs {
    /// Only this key server (default: every one this device has a session with).
    #[arg(long, value_name = "URL")]
    keyserver: Option<String>,
}

/// Arguments of `medseal logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The key server to log out of.
    #[arg(long, value_name = "URL", required_unless_present = "all")]
    keyserver: Option<String>,
    /// Log out of every key server.
    #[arg(long, conflicts_with = "keyserver")]
    all: bool,
}

fn origins(keyserver: Option<&str>) -> Result<Vec<String>> {
    match keyserver {
        Some(url) => Ok(vec![medseal_capture::keyclient::origin_of(url)?]),
        None => Ok(sessions::all()?.into_keys().collect()),
    }
}

pub fn whoami(a: WhoamiArgs) -> Result<()> {
    let origins = origins(a.keyserver.as_deref())?;
    if origins.is_empty() {
        return Err(crate::exit::NotLoggedIn("any key server".into()).into());
    }
    let mut live = 0;
    for origin in &origins {
        let client = sessions::client(origin)?;
        let session = match sessions::load(client.origin()) {
            Ok(s) => s,
            Err(e) if a.keyserver.is_some() => return Err(e),
            Err(_) => continue,
        };
        match client.session_owner(&session.token) {
            Ok(me) => {
                live += 1;
                println!(
                    "{} ({}, {}) at {origin}; session until {}",
                    me.email, me.role, me.org, session.expires_at
                );
            }
            Err(e) => println!("{} at {origin}: {e}", session.email),
        }
    }
    if live == 0 {
        return Err(crate::exit::NotLoggedIn(
            a.keyserver.unwrap_or_else(|| "any key server".into()),
        )
        .into());
    }
    Ok(())
}

pub fn logout(a: LogoutArgs) -> Result<()> {
    let origins = origins(if a.all { None } else { a.keyserver.as_deref() })?;
    let mut any = false;
    for origin in &origins {
        let client = sessions::client(origin)?;
        let Ok(session) = sessions::load(client.origin()) else {
            continue;
        };
        any = true;
        // Ended at the server first; forgotten here whatever the answer,
        // so that nothing usable is left on the device.
        let ended = client.logout(&session);
        sessions::forget(client.origin())?;
        match ended {
            Ok(()) => eprintln!("logged out of {origin}"),
            Err(e) => eprintln!(
                "forgot the session with {origin} on this device, but the server could not end it ({e}); it expires on its own"
            ),
        }
    }
    if !any {
        bail!("no session to end on this device");
    }
    Ok(())
}

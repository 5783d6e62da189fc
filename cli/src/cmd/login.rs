//! `medseal login`: open a session with a key server from this device.

use anyhow::Result;

use crate::files::InputPath;
use crate::{secrets, sessions};

/// Arguments of `medseal login`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key server, e.g. https://keys.example.org.
    #[arg(long, value_name = "URL")]
    keyserver: String,
    /// Your e-mail address.
    #[arg(long)]
    email: String,
    /// Read the password from this file (`-` for stdin); prompts on a terminal otherwise.
    #[arg(long, value_name = "FILE")]
    password_file: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    // The password first: a bad password file fails before this device's
    // configuration is touched.
    let password = match &a.password_file {
        Some(f) => secrets::read_password(&InputPath::from(f.as_str()))?,
        None => secrets::prompt_password("Password: ", false)?,
    };
    let client = sessions::client(&a.keyserver)?;
    let session = client.login(&a.email, &password)?;
    sessions::save(&session)?;
    eprintln!(
        "logged in to {} as {} until {}",
        session.origin, session.email, session.expires_at
    );
    Ok(())
}

//! Where a new sealed file's key comes from — the flags shared by `seal` and
//! `capture`: a password, an organisation key, or a per-report key from a
//! key server addressed to recipients.

use anyhow::{Result, bail};
use medseal_capture::keyclient::ReportKey;
use medseal_format::{DEFAULT_PBKDF2_ITERATIONS, Key, SealKey};
use zeroize::Zeroizing;

use crate::files::InputPath;
use crate::{secrets, sessions};

/// Key flags.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("secret").required(true).args(["password_file", "key_file", "keyserver"]))]
pub struct KeyArgs {
    /// Seal with a password read from this file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<String>,
    /// Seal with an organisation key: 32 raw bytes, or hex, or base64.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<String>,
    /// Seal with a new per-report key from this key server (log in first).
    #[arg(long, value_name = "URL", requires = "recipient")]
    pub keyserver: Option<String>,
    /// Who may open the report (repeat for several).
    #[arg(long, value_name = "EMAIL", requires = "keyserver")]
    pub recipient: Vec<String>,
    /// A label for the organisation key, recorded in the header.
    #[arg(long, value_name = "LABEL", requires = "key_file", default_value = "")]
    pub key_id: String,
    /// PBKDF2-HMAC-SHA256 iterations for a password.
    #[arg(long, value_name = "N", requires = "password_file", default_value_t = DEFAULT_PBKDF2_ITERATIONS)]
    pub iterations: u32,
}

/// The key material, held for the duration of the seal.
pub enum Material {
    /// A password.
    Password(Zeroizing<Vec<u8>>, u32),
    /// An organisation key and its label.
    Static(Key, String),
    /// A key server's per-report key.
    Server {
        /// The server's origin.
        origin: String,
        /// The key and its id.
        key: ReportKey,
    },
}

impl KeyArgs {
    /// The paths this will read from, to check stdin is used once.
    pub fn inputs(&self) -> Vec<InputPath> {
        [&self.password_file, &self.key_file]
            .into_iter()
            .flatten()
            .map(|p| InputPath::from(p.as_str()))
            .collect()
    }

    /// Reads the secret, or asks the key server for a key for `report_id`.
    pub fn resolve(&self, report_id: &str) -> Result<Material> {
        if let Some(p) = &self.password_file {
            return Ok(Material::Password(
                secrets::read_password(&InputPath::from(p.as_str()))?,
                self.iterations,
            ));
        }
        if let Some(k) = &self.key_file {
            return Ok(Material::Static(
                secrets::read_key(&InputPath::from(k.as_str()))?,
                self.key_id.clone(),
            ));
        }
        let Some(url) = &self.keyserver else {
            bail!("give --password-file, --key-file or --keyserver");
        };
        let client = sessions::client(url)?;
        let session = sessions::load(client.origin())?;
        let key = client.create_key(&session, report_id, &self.recipient)?;
        Ok(Material::Server {
            origin: client.origin().to_owned(),
            key,
        })
    }
}

impl Material {
    /// What the sealer needs.
    pub fn seal_key(&self) -> SealKey<'_> {
        match self {
            Material::Password(pw, iterations) => SealKey::Password {
                password: pw,
                iterations: *iterations,
            },
            Material::Static(key, key_id) => SealKey::StaticKey { key, key_id },
            Material::Server { origin, key } => SealKey::KeyServer {
                origin,
                key_id: &key.key_id,
                key: &key.key,
            },
        }
    }
}

//! Where a new sealed file's key comes from — the flags shared by `seal` and
//! `capture`: a password, an organisation key, or a per-report key from a
//! key server addressed to recipients.

use anyhow::{Context, Result, bail};
use medseal_capture::keyclient::ReportKey;
use medseal_format::{DEFAULT_PBKDF2_ITERATIONS, Key, KeyMode, SealKey, Secret};
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
    /// Who may open the report (repeat for several). Each is checked with
    /// the key server first: an address nobody could open the report
    /// with is refused.
    #[arg(long, value_name = "EMAIL", requires = "keyserver")]
    pub recipient: Vec<String>,
    /// Seal even for a recipient who has no account and is not admitted as
    /// a guest (they can open it only once given an account).
    #[arg(long, requires = "keyserver")]
    pub allow_unknown_recipients: bool,
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
        self.check_recipients(&client, &session)?;
        let key = client.create_key(&session, report_id, &self.recipient)?;
        Ok(Material::Server {
            origin: client.origin().to_owned(),
            key,
        })
    }
}

impl KeyArgs {
    /// See [`check_recipients`].
    fn check_recipients(
        &self,
        client: &medseal_capture::keyclient::KeyClient,
        session: &medseal_capture::keyclient::Session,
    ) -> Result<()> {
        check_recipients(
            client,
            session,
            &self.recipient,
            self.allow_unknown_recipients,
        )
    }
}

/// Refuses (or, with `allow_unknown`, warns about) an address that could
/// not open the report: a typo found now, while the clinician is still
/// there, instead of by a recipient who never gets in. Shared by `seal`,
/// `capture` and `recipients add`.
pub fn check_recipients(
    client: &medseal_capture::keyclient::KeyClient,
    session: &medseal_capture::keyclient::Session,
    recipients: &[String],
    allow_unknown: bool,
) -> Result<()> {
    let Some(answers) = client
        .check_recipients(session, recipients)
        .context("cannot check the recipients with the key server")?
    else {
        eprintln!(
            "warning: {} cannot check recipients (an older version); the addresses were not checked",
            client.origin()
        );
        return Ok(());
    };
    let mut bad = Vec::new();
    for r in &answers {
        match r.status.as_str() {
            "user" => {}
            "guest" => eprintln!(
                "{} has no account at {}; they will open the report as a guest, with a code e-mailed to them",
                r.email,
                client.origin()
            ),
            "invalid" => bail!("{} is not an e-mail address", r.email),
            "refused" => bail!(
                "{} is outside the domains your organisation allows reports to be sent to (ask an admin of {})",
                r.email,
                client.origin()
            ),
            _ => bad.push(r.email.clone()),
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    let list = bad.join(", ");
    if allow_unknown {
        eprintln!(
            "warning: nobody at {list} can open the report until given an account at {}",
            client.origin()
        );
        return Ok(());
    }
    bail!(
        "nobody at {list} could open this report: no account at {} and not a guest your organisation admits; check the address (or go ahead with --allow-unknown-recipients)",
        client.origin()
    )
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

/// The secrets given for opening (`--password-file`, `--key-file`), read
/// once so that `-` (stdin) works even when several files are opened.
#[derive(Default)]
pub struct OpenKeys {
    password: Option<Zeroizing<Vec<u8>>>,
    key: Option<Key>,
}

/// What opens one file: a given secret, or a key fetched from its key server.
pub enum OpenMaterial<'a> {
    /// From `--password-file` or `--key-file`.
    Given(Secret<'a>),
    /// From the file's key server, with this device's session.
    Server(ReportKey),
}

impl OpenMaterial<'_> {
    /// What the opener needs.
    pub fn secret(&self) -> Secret<'_> {
        match self {
            OpenMaterial::Given(s) => *s,
            OpenMaterial::Server(k) => Secret::Key(&k.key),
        }
    }
}

impl OpenKeys {
    /// Reads the given secrets.
    pub fn read(password: Option<&InputPath>, key: Option<&InputPath>) -> Result<Self> {
        Ok(Self {
            password: password.map(secrets::read_password).transpose()?,
            key: key.map(secrets::read_key).transpose()?,
        })
    }

    /// The material for a file whose header names `mode`: a given secret
    /// wins; else a key-server file fetches its key with this device's
    /// session for the origin the file names (and only that origin).
    pub fn material(
        &self,
        mode: &KeyMode,
        what: &dyn std::fmt::Display,
    ) -> Result<OpenMaterial<'_>> {
        if let Some(p) = &self.password {
            return Ok(OpenMaterial::Given(Secret::Password(p)));
        }
        if let Some(k) = &self.key {
            return Ok(OpenMaterial::Given(Secret::Key(k)));
        }
        match mode {
            KeyMode::Password { .. } => {
                bail!("{what} is sealed with a password; give --password-file")
            }
            KeyMode::StaticKey { .. } => {
                bail!("{what} is sealed with an organisation key; give --key-file")
            }
            KeyMode::KeyServer { origin, key_id } => {
                let client = sessions::client(origin)?;
                let session = sessions::load(client.origin())?;
                let key = client
                    .fetch_key(&session, key_id)
                    .with_context(|| format!("cannot open {what}"))?;
                Ok(OpenMaterial::Server(key))
            }
        }
    }
}

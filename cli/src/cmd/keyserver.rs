//! `medseal keyserver …`: run the key server and administer its data.
//!
//! `--data-dir`, `--database-url` and `--keyring` are accepted before or
//! after any subcommand, so that every command finds the same state.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use medseal_keyserver::admin::Admin;
use medseal_keyserver::audit::{Filter, Format};
use medseal_keyserver::http::TlsFiles;
use medseal_keyserver::{Role, ServeConfig, Store};

use crate::files::{InputPath, Output};
use crate::secrets;

/// Arguments of `medseal keyserver`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Data directory (created 0700): keyring, and the SQLite database by default.
    #[arg(long, global = true, value_name = "DIR", env = "MEDSEAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Use PostgreSQL (`postgres://user:pass@host/db`) instead of SQLite.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "MEDSEAL_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Master keyring file (default: DATA_DIR/master.keyring), or a PKCS#11
    /// token: `pkcs11:token=LABEL?module-path=LIB.so&pin-source=file:PIN`.
    #[arg(long, global = true, value_name = "FILE|URI")]
    keyring: Option<PathBuf>,
    /// Create a new, empty store where none is found. Without it, admin
    /// commands refuse to start one (on a terminal they ask), so that a
    /// command run in the wrong folder does not quietly begin an empty
    /// store and a new master key beside the real one.
    #[arg(long, global = true)]
    init: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the key server.
    Serve(ServeArgs),
    /// Manage organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Verify or export the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Add a new master key version and re-wrap every data key under it.
    RotateMasterKey,
    /// Write a sealed backup of the store (consistent while serving).
    Backup {
        #[command(flatten)]
        secret: BackupSecret,
        /// The sealed backup file to write.
        #[arg(value_name = "OUT")]
        output: String,
    },
    /// Restore a sealed backup into a new, empty data directory.
    Restore {
        #[command(flatten)]
        secret: BackupSecret,
        /// The sealed backup file.
        #[arg(value_name = "IN")]
        input: String,
    },
}

/// What seals a backup: a password or an organisation key, kept apart from
/// the backup itself.
#[derive(Debug, ClapArgs)]
#[command(group = clap::ArgGroup::new("backup_secret").required(true).args(["password_file", "key_file"]))]
struct BackupSecret {
    /// The password, read from this file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    password_file: Option<String>,
    /// An organisation key: 32 raw bytes, or hex, or base64.
    #[arg(long, value_name = "FILE")]
    key_file: Option<String>,
}

#[derive(Debug, ClapArgs)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = medseal_keyserver::server::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// TLS certificate chain (PEM); serves HTTPS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (only behind a TLS proxy).
    #[arg(long)]
    allow_plain_http: bool,
    /// Take client addresses from X-Forwarded-For (only behind a trusted
    /// proxy): the entry the proxy appended, the rightmost.
    #[arg(long)]
    trust_forwarded_for: bool,
    /// Trusted proxies in a chain in front of the server, each appending to
    /// X-Forwarded-For; implies --trust-forwarded-for.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16))]
    proxy_hops: Option<u8>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    workers: usize,
    /// Minutes of inactivity after which a session expires.
    #[arg(long, value_name = "MIN", default_value_t = 30)]
    idle_timeout: i64,
    /// Hours after login at which a session expires however used.
    #[arg(long, value_name = "H", default_value_t = 12)]
    session_lifetime: i64,
    /// Login attempts allowed per client address per minute (shared by
    /// every server of a pool); account lockout applies besides.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    logins_per_minute: u32,
    /// Serve /metrics only on this second address (plain HTTP, e.g. an
    /// internal interface for Prometheus), and not on --listen.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer` with the token in this 0600 file to
    /// read /metrics.
    #[arg(long, value_name = "FILE")]
    metrics_token_file: Option<PathBuf>,
    /// The address people reach this server at (behind a proxy), used in
    /// the links it hands out; default: the listen address.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Largest report that can be shared as a link, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    drop_max_mib: u64,
    /// Mail server for sign-in codes: `smtp://[user@]host[:port]` (STARTTLS,
    /// required) or `smtps://…` (TLS from the start). Without it, codes are
    /// not offered.
    #[arg(long, value_name = "URL", requires = "mail_from")]
    smtp_url: Option<String>,
    /// The SMTP password, in a 0600 file.
    #[arg(long, value_name = "FILE", requires = "smtp_url")]
    smtp_password_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) for the mail server's certificate.
    #[arg(long, value_name = "FILE", requires = "smtp_url")]
    smtp_ca_cert: Option<PathBuf>,
    /// The sender of code mails, e.g. `medseal <no-reply@hospital.example>`.
    #[arg(long, value_name = "ADDRESS", requires = "smtp_url")]
    mail_from: Option<String>,
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organisation.
    Add {
        /// Its name.
        name: String,
    },
    /// Change an organisation's settings.
    Set {
        /// The organisation.
        #[arg(long)]
        org: String,
        /// The longest a share link may live, in days (1-30; default 30).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=30))]
        drop_max_days: Option<u32>,
        /// Who may sign in with an e-mailed code as a guest, to open the
        /// reports addressed to them: any, none (the default), or e-mail
        /// domains.
        #[arg(long, value_name = "any|DOMAIN…|none", num_args = 1..)]
        guests: Option<Vec<String>>,
        /// Which e-mail domains reports may be addressed to: any (the
        /// default), or domains; a key for anyone else is refused.
        #[arg(long, value_name = "any|DOMAIN…", num_args = 1..)]
        allowed_recipient_domains: Option<Vec<String>>,
        /// The receiving endpoint (`medseal endpoint serve`) the web app's
        /// capture page sends reports to: an https:// URL (http:// only on
        /// a loopback host), or none to clear it. Its origin is added to
        /// the app's Content-Security-Policy.
        #[arg(long, value_name = "URL|none")]
        endpoint_url: Option<String>,
    },
    /// Single sign-on through the organisation's OpenID Provider.
    #[command(subcommand)]
    Sso(SsoCommand),
    /// List the organisations: users, guests, single sign-on, receiving
    /// endpoint.
    List {
        /// table or json.
        #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
enum SsoCommand {
    /// Set (or replace) the organisation's provider.
    Set {
        /// The organisation.
        #[arg(long)]
        org: String,
        /// The provider's issuer URL (https://; http:// only on loopback).
        #[arg(long, value_name = "URL")]
        issuer: String,
        /// The client id registered at the provider.
        #[arg(long, value_name = "ID")]
        client_id: String,
        /// The client secret, in a 0600 file.
        #[arg(long, value_name = "FILE")]
        client_secret_file: String,
        /// The id_token claim holding the user's e-mail address.
        #[arg(long, value_name = "CLAIM", default_value = "email")]
        email_claim: String,
        /// Only addresses in this domain sign in (and may be provisioned).
        #[arg(long, value_name = "DOMAIN")]
        allowed_domain: Option<String>,
        /// Make unknown users (of the allowed domain) clinicians on first
        /// sign-in, or never.
        #[arg(long, value_name = "clinician|none", default_value = "none")]
        provision: String,
    },
    /// Show the organisation's provider (never the secret) and the
    /// callback URL to register there.
    Show {
        /// The organisation.
        #[arg(long)]
        org: String,
        /// The address people reach the server at (as `serve --public-url`).
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
    /// Stop single sign-on for the organisation.
    Remove {
        /// The organisation.
        #[arg(long)]
        org: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        /// The user's organisation.
        #[arg(long)]
        org: String,
        /// The user's e-mail address (their login).
        #[arg(long)]
        email: String,
        /// admin, auditor, clinician or service.
        #[arg(long)]
        role: String,
        /// Read the password from this file (`-` for stdin); prompts on a terminal otherwise.
        #[arg(long, value_name = "FILE")]
        password_file: Option<String>,
    },
    /// Disable a user at once: every session ends, logins are refused.
    Disable {
        /// The user's e-mail address.
        #[arg(long)]
        email: String,
    },
    /// Let a disabled or locked-out user sign in again.
    Enable {
        /// The user's e-mail address.
        #[arg(long)]
        email: String,
    },
    /// Set a user's password (at least 12 characters, not a common one);
    /// their sessions end and a lockout is lifted.
    Passwd {
        /// The user's e-mail address.
        #[arg(long)]
        email: String,
        /// Read the password from this file (`-` for stdin); prompts on a terminal otherwise.
        #[arg(long, value_name = "FILE")]
        password_file: Option<String>,
    },
    /// Change a user's role; their sessions end, so it applies from their
    /// next sign-in.
    Role {
        /// The user's e-mail address.
        #[arg(long)]
        email: String,
        /// admin, auditor, clinician or service.
        #[arg(long)]
        role: String,
    },
    /// List users: role, status, live sessions and devices.
    List {
        /// Only this organisation's users.
        #[arg(long)]
        org: Option<String>,
        /// table or json.
        #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the log and the state it describes; exit 0 if intact, else
    /// name the first problem.
    Verify {
        /// Also check that the log still holds the history of a checkpoint
        /// saved elsewhere (a witness's `checkpoint.json`, or a receipt):
        /// catches a cut tail or a rollback even when the store was made
        /// consistent with itself.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Print the Ed25519 public key that checkpoints and receipts verify with.
    PublicKey,
    /// Export events for the patient record.
    Export {
        /// csv or json.
        #[arg(long, default_value = "json")]
        format: String,
        /// Only events about this key.
        #[arg(long, conflicts_with = "report_id")]
        key_id: Option<String>,
        /// Only events about this report.
        #[arg(long)]
        report_id: Option<String>,
        /// Only events of this organisation.
        #[arg(long)]
        org: Option<String>,
        /// Only events at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Write here instead of stdout.
        #[arg(short, long, value_name = "OUT")]
        output: Option<String>,
    },
}

fn sso(store: Store, c: SsoCommand) -> Result<()> {
    use medseal_keyserver::signin::sso::SsoSettings;
    match c {
        SsoCommand::Set {
            org,
            issuer,
            client_id,
            client_secret_file,
            email_claim,
            allowed_domain,
            provision,
        } => {
            let raw = secrets::read_password(&InputPath::from(client_secret_file.as_str()))?;
            let secret = zeroize::Zeroizing::new(
                String::from_utf8(raw.to_vec())
                    .map_err(|_| anyhow::anyhow!("the client secret is not UTF-8"))?,
            );
            let settings = SsoSettings {
                issuer,
                client_id,
                client_secret: secret,
                email_claim,
                allowed_domain: allowed_domain.map(|d| d.trim().to_lowercase()),
                provision: provision.parse()?,
            };
            Admin::open(store)?.set_sso(&org, settings)?;
            eprintln!(
                "organisation {org}: single sign-on set; `org sso show` prints the callback to register"
            );
            Ok(())
        }
        SsoCommand::Show { org, public_url } => {
            let url = public_url
                .unwrap_or_else(|| format!("http://{}", medseal_keyserver::server::DEFAULT_LISTEN));
            match Admin::open_read_only(store)?.show_sso(&org, &url)? {
                Some(view) => {
                    println!("{}", serde_json::to_string_pretty(&view)?);
                    if !view.intact {
                        bail!(
                            "the settings of {org} were changed outside the key server; sign-ins are refused"
                        );
                    }
                    Ok(())
                }
                None => bail!("organisation {org} has no single sign-on"),
            }
        }
        SsoCommand::Remove { org } => {
            Admin::open(store)?.remove_sso(&org)?;
            eprintln!("organisation {org}: single sign-on removed");
            Ok(())
        }
    }
}

/// Decides whether this command may go ahead on `store`: an existing store
/// always; a new one for `serve` (which says so once it listens), `restore`
/// (which needs an empty one), or with `--init`, or when a person at a
/// terminal says yes. Answers whether the store is new.
fn check_store(store: &Store, command: &Command, init: bool) -> Result<bool> {
    if matches!(command, Command::Restore { .. }) {
        return Ok(false);
    }
    if !store.is_new()? {
        return Ok(false);
    }
    let place = store.location.describe();
    if init {
        eprintln!("creating a new key server store: {place}");
        return Ok(true);
    }
    if matches!(command, Command::Serve(_)) {
        return Ok(true);
    }
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        eprint!("There is no key server store at {place}. Create a new, empty one? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(true);
        }
    }
    bail!(
        "there is no key server store at {place}: run this where the server's data is, or give --data-dir / --database-url; to start a new, empty store give --init"
    )
}

fn print_table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn list_users(store: Store, org: Option<&str>, format: &str) -> Result<()> {
    let users = Admin::open_read_only(store)?.list_users(org)?;
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&users)?);
        return Ok(());
    }
    let mut rows = vec![
        [
            "EMAIL",
            "ORGANISATION",
            "ROLE",
            "STATUS",
            "SESSIONS",
            "DEVICES",
            "LAST SIGN-IN",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for u in &users {
        let status = if u.intact {
            u.status.to_owned()
        } else {
            format!("{} (TAMPERED)", u.status)
        };
        rows.push(vec![
            u.email.clone(),
            u.org.clone(),
            u.role.clone(),
            status,
            u.sessions.to_string(),
            u.devices.to_string(),
            u.last_sign_in
                .map(medseal_keyserver::time::rfc3339)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&rows);
    Ok(())
}

fn list_orgs(store: Store, format: &str) -> Result<()> {
    let orgs = Admin::open_read_only(store)?.list_orgs()?;
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&orgs)?);
        return Ok(());
    }
    let mut rows = vec![
        [
            "ORGANISATION",
            "USERS",
            "GUESTS",
            "SINGLE SIGN-ON",
            "ENDPOINT",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for o in &orgs {
        rows.push(vec![
            o.name.clone(),
            o.users.to_string(),
            o.guests.clone(),
            if o.single_sign_on { "yes" } else { "no" }.to_owned(),
            o.endpoint_url.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&rows);
    Ok(())
}

fn read_new_password(file: Option<String>) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    match file {
        Some(f) => secrets::read_password(&InputPath::from(f.as_str())),
        None => secrets::prompt_password("Password (at least 12 characters): ", true),
    }
}

pub fn run(a: Args) -> Result<()> {
    let store = Store::locate(a.data_dir, a.database_url, a.keyring)?;
    let new_store = check_store(&store, &a.command, a.init)?;
    store.create_dir()?;
    match a.command {
        Command::Serve(s) => serve(store, s, new_store),
        Command::Org(OrgCommand::Add { name }) => {
            Admin::open(store)?.add_org(&name)?;
            eprintln!("organisation {name} created");
            Ok(())
        }
        Command::Org(OrgCommand::Set {
            org,
            drop_max_days,
            guests,
            allowed_recipient_domains,
            endpoint_url,
        }) => {
            if drop_max_days.is_none()
                && guests.is_none()
                && allowed_recipient_domains.is_none()
                && endpoint_url.is_none()
            {
                bail!(
                    "nothing to set: give --drop-max-days N, --guests any|DOMAIN…|none, --allowed-recipient-domains any|DOMAIN… or --endpoint-url URL|none"
                );
            }
            // Checked before anything is changed: one bad value sets nothing.
            let endpoint_url = endpoint_url
                .map(|u| {
                    if u.trim()
                        .eq_ignore_ascii_case(medseal_keyserver::org_endpoint::NONE)
                    {
                        Ok(None)
                    } else {
                        medseal_keyserver::org_endpoint::normalise(&u).map(Some)
                    }
                })
                .transpose()?;
            let recipients = allowed_recipient_domains
                .map(|d| medseal_keyserver::recipients::RecipientPolicy::from_words(&d))
                .transpose()?;
            let guests = guests
                .map(|g| medseal_keyserver::signin::guests::GuestPolicy::from_words(&g))
                .transpose()?;
            let mut admin = Admin::open(store)?;
            if let Some(days) = drop_max_days {
                admin.set_drop_max_days(&org, days)?;
                eprintln!("organisation {org}: share links live at most {days} days");
            }
            if let Some(policy) = guests {
                let stored = policy.stored();
                admin.set_guests(&org, policy)?;
                eprintln!("organisation {org}: guests: {stored}");
            }
            if let Some(policy) = recipients {
                let stored = policy.stored();
                admin.set_recipient_domains(&org, policy)?;
                eprintln!("organisation {org}: reports may be addressed to: {stored}");
            }
            if let Some(url) = endpoint_url {
                let shown = url.clone().unwrap_or_else(|| "none".into());
                admin.set_endpoint_url(&org, url)?;
                eprintln!("organisation {org}: receiving endpoint: {shown}");
            }
            Ok(())
        }
        Command::Org(OrgCommand::Sso(c)) => sso(store, c),
        Command::User(UserCommand::Add {
            org,
            email,
            role,
            password_file,
        }) => {
            let role: Role = role.parse()?;
            let password = read_new_password(password_file)?;
            Admin::open(store)?.add_user(&org, &email, role, &password)?;
            eprintln!("user {email} created in {org} as {}", role.as_str());
            Ok(())
        }
        Command::User(UserCommand::Disable { email }) => {
            Admin::open(store)?.disable_user(&email)?;
            eprintln!("user {email} disabled; their sessions have ended");
            Ok(())
        }
        Command::User(UserCommand::Enable { email }) => {
            Admin::open(store)?.enable_user(&email)?;
            eprintln!("user {email} enabled; they can sign in again");
            Ok(())
        }
        Command::User(UserCommand::Passwd {
            email,
            password_file,
        }) => {
            let password = read_new_password(password_file)?;
            Admin::open(store)?.set_password(&email, &password)?;
            eprintln!("password of {email} set; their sessions have ended");
            Ok(())
        }
        Command::User(UserCommand::Role { email, role }) => {
            let role: Role = role.parse()?;
            Admin::open(store)?.set_role(&email, role)?;
            eprintln!(
                "user {email} is now {}; their sessions have ended",
                role.as_str()
            );
            Ok(())
        }
        Command::User(UserCommand::List { org, format }) => {
            list_users(store, org.as_deref(), &format)
        }
        Command::Org(OrgCommand::List { format }) => list_orgs(store, &format),
        Command::Audit(AuditCommand::Verify { checkpoint }) => {
            let given = checkpoint
                .as_deref()
                .map(super::audit::load_checkpoint)
                .transpose()?;
            let v = Admin::open_read_only(store)?.verify_audit(given.as_ref())?;
            match v.broken {
                None => {
                    let signed = v
                        .checkpoint
                        .map(|c| format!("; latest checkpoint: {} events, root {}", c.size, c.root))
                        .unwrap_or_default();
                    let against = given
                        .map(|c| format!("; holds the checkpoint of {} events given", c.size))
                        .unwrap_or_default();
                    println!(
                        "audit log intact: {} events verified, state matches{signed}{against}",
                        v.verified
                    );
                    Ok(())
                }
                Some(b) if b.seq == 0 => bail!(
                    "audit log broken: {} ({} events verified)",
                    b.reason,
                    v.verified
                ),
                Some(b) => bail!(
                    "audit log broken at event {}: {} ({} events verified before it)",
                    b.seq,
                    b.reason,
                    v.verified
                ),
            }
        }
        Command::Audit(AuditCommand::PublicKey) => {
            let key = Admin::open_read_only(store)?.checkpoint_public_key();
            println!(
                "{}",
                medseal_keyserver_api::transparency::encode_public_key(&key)
            );
            Ok(())
        }
        Command::Audit(AuditCommand::Export {
            format,
            key_id,
            report_id,
            org,
            since,
            output,
        }) => {
            let format: Format = format.parse()?;
            let filter = Filter {
                key_id,
                report_id,
                org,
                since: since
                    .as_deref()
                    .map(medseal_keyserver::time::parse_rfc3339)
                    .transpose()?,
                ..Filter::default()
            };
            let body = Admin::open(store)?.export_audit(&filter, format)?;
            let dest = output.unwrap_or_else(|| "-".into());
            let mut out = Output::create(&dest, &InputPath::Stdin)?;
            out.write_all(&body).context("cannot write the export")?;
            out.commit()
        }
        Command::Backup { secret, output } => backup(&store, &secret, &output),
        Command::Restore { secret, input } => restore(&store, &secret, &input),
        Command::RotateMasterKey => {
            let r = Admin::open(store)?.rotate_master_key()?;
            eprintln!(
                "master key version {} is current; {} data keys re-wrapped; retired versions {:?}",
                r.version, r.rewrapped, r.retired
            );
            Ok(())
        }
    }
}

fn backup(store: &Store, secret: &BackupSecret, dest: &str) -> Result<()> {
    use medseal_format::{DEFAULT_PBKDF2_ITERATIONS, SealKey, SealOptions};
    let password = secret
        .password_file
        .as_deref()
        .map(|p| secrets::read_password(&InputPath::from(p)))
        .transpose()?;
    let key = secret
        .key_file
        .as_deref()
        .map(|k| secrets::read_key(&InputPath::from(k)))
        .transpose()?;
    let seal_key = match (&password, &key) {
        (Some(pw), _) => SealKey::Password {
            password: pw,
            iterations: DEFAULT_PBKDF2_ITERATIONS,
        },
        (None, Some(k)) => SealKey::StaticKey {
            key: k,
            key_id: "keyserver-backup",
        },
        (None, None) => bail!("give --password-file or --key-file"),
    };
    let mut out = Output::create(dest, &InputPath::Stdin)?;
    let (reader, writer) = std::io::pipe().context("cannot make a pipe")?;
    let producer = {
        let store = store.clone();
        std::thread::spawn(move || {
            medseal_keyserver::backup::write_backup(&store, std::io::BufWriter::new(writer))
        })
    };
    let sealed = medseal_format::seal(seal_key, reader, &mut out, &SealOptions::default());
    // The tar writer's outcome decides: a failed snapshot ends the pipe
    // early, which the sealer alone would take for the end of the data.
    let info = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the backup writer stopped unexpectedly"))??;
    sealed.context("cannot seal the backup")?;
    out.commit()?;
    eprintln!(
        "backup written to {dest}: {} audit events, verified; keep its password or key apart from it",
        info.audit_events
    );
    Ok(())
}

fn restore(store: &Store, secret: &BackupSecret, input: &str) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let input_path = InputPath::from(input);
    let keys = crate::keysource::OpenKeys::read(
        secret
            .password_file
            .as_deref()
            .map(InputPath::from)
            .as_ref(),
        secret.key_file.as_deref().map(InputPath::from).as_ref(),
    )?;
    let mut reader = input_path.open_raw()?;
    let opener = medseal_format::Opener::new(&mut reader)
        .with_context(|| format!("cannot open {input_path}"))?;
    let material = keys.material(opener.header().key_mode(), &input_path)?;
    let mut plain = tempfile::tempfile().context("cannot make a temporary file")?;
    opener
        .open(
            material.secret(),
            &mut plain,
            &medseal_format::OpenOptions::default(),
        )
        .with_context(|| format!("cannot open {input_path}"))?;
    plain.seek(SeekFrom::Start(0))?;
    let info = medseal_keyserver::backup::restore_backup(std::io::BufReader::new(plain), store)?;
    eprintln!(
        "restored the backup of {} into {}: {} audit events verified; the chain continues from here",
        info.created_at,
        store.data_dir.display(),
        info.audit_events
    );
    Ok(())
}

fn serve(store: Store, s: ServeArgs, new_store: bool) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,medseal_keyserver=info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    if s.idle_timeout <= 0 || s.session_lifetime <= 0 {
        bail!("--idle-timeout and --session-lifetime must be positive");
    }
    let mut cfg = ServeConfig::new(store)?;
    cfg.new_store = new_store;
    cfg.listen = s.listen;
    cfg.tls = match (s.tls_cert, s.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    cfg.allow_plain_http = s.allow_plain_http;
    cfg.proxy_hops = match (s.proxy_hops, s.trust_forwarded_for) {
        (Some(n), _) => usize::from(n),
        (None, true) => 1,
        (None, false) => 0,
    };
    cfg.workers = s.workers;
    cfg.logins_per_minute = s.logins_per_minute;
    cfg.metrics_access.listen = s.metrics_listen;
    if let Some(path) = s.metrics_token_file {
        let token = medseal_integrations::secret::SecretRef::File(path).read()?;
        cfg.metrics_access.token = Some(token);
    }
    if let Some(url) = &s.public_url {
        let parsed =
            url::Url::parse(url).map_err(|e| anyhow::anyhow!("--public-url {url}: {e}"))?;
        if !matches!(parsed.scheme(), "https" | "http") || parsed.host().is_none() {
            bail!("--public-url {url}: give an http(s) address such as https://keys.example.org");
        }
    }
    cfg.public_url = s.public_url;
    cfg.drop_max_bytes = s.drop_max_mib << 20;
    cfg.mail = s
        .smtp_url
        .map(|url| medseal_keyserver::signin::mail::MailSettings {
            url,
            password_file: s.smtp_password_file,
            ca_cert: s.smtp_ca_cert,
            from: s.mail_from.unwrap_or_default(),
        });
    cfg.sessions.idle_timeout_ms = s.idle_timeout.saturating_mul(60_000);
    cfg.sessions.absolute_timeout_ms = s.session_lifetime.saturating_mul(3_600_000);
    Ok(medseal_keyserver::serve(cfg)?)
}

//! `medseal login`: open a session with a key server from this device —
//! with a password, a code e-mailed to you, or your organisation's single
//! sign-on.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use zeroize::Zeroizing;

use crate::files::InputPath;
use crate::{secrets, sessions};

/// Arguments of `medseal login`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key server, e.g. https://keys.example.org.
    #[arg(long, value_name = "URL")]
    keyserver: String,
    /// Your e-mail address.
    #[arg(long, required_unless_present = "sso")]
    email: Option<String>,
    /// Read the password from this file (`-` for stdin); prompts on a terminal otherwise.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["code", "sso"])]
    password_file: Option<String>,
    /// Sign in with a single-use code the key server e-mails you.
    #[arg(long, requires = "email", conflicts_with = "sso")]
    code: bool,
    /// Read the e-mailed code from this file (`-` for stdin), once it is
    /// sent, instead of asking on the terminal.
    #[arg(long, value_name = "FILE", requires = "code")]
    code_file: Option<String>,
    /// Sign in through your organisation's identity provider (its name on
    /// the key server, or your e-mail domain): opens a browser, or prints
    /// the address to open, and waits for it on a loopback port.
    #[arg(long, value_name = "ORG", conflicts_with = "email")]
    sso: Option<String>,
}

/// How long a browser sign-in may take.
const SSO_WAIT: Duration = Duration::from_secs(5 * 60);

pub fn run(a: Args) -> Result<()> {
    let session = if let Some(org) = &a.sso {
        sso(&a.keyserver, org)?
    } else {
        let email = a.email.as_deref().unwrap_or_default();
        if a.code {
            with_code(&a.keyserver, email, a.code_file.as_deref())?
        } else {
            // The password first: a bad password file fails before this
            // device's configuration is touched.
            let password = match &a.password_file {
                Some(f) => secrets::read_password(&InputPath::from(f.as_str()))?,
                None => secrets::prompt_password("Password: ", false)?,
            };
            sessions::client(&a.keyserver)?.login(email, &password)?
        }
    };
    sessions::save(&session)?;
    eprintln!(
        "logged in to {} as {} until {}",
        session.origin, session.email, session.expires_at
    );
    Ok(())
}

fn with_code(
    keyserver: &str,
    email: &str,
    code_file: Option<&str>,
) -> Result<medseal_keyserver_api::client::Session> {
    if code_file.is_none() && !std::io::stdin().is_terminal() {
        bail!("give the code with --code-file (use - for stdin)");
    }
    let client = sessions::client(keyserver)?;
    client.request_code(email)?;
    eprintln!(
        "if {email} may sign in at {}, a code is on its way to it; it works once, within 20 minutes",
        client.origin()
    );
    let code = match code_file {
        Some(f) => {
            let raw = secrets::read_password(&InputPath::from(f))?;
            Zeroizing::new(String::from_utf8_lossy(&raw).trim().to_owned())
        }
        None => {
            let typed = secrets::prompt_password("Code: ", false)?;
            Zeroizing::new(String::from_utf8_lossy(&typed).trim().to_owned())
        }
    };
    Ok(client.login_with_code(email, &code)?)
}

fn sso(keyserver: &str, org: &str) -> Result<medseal_keyserver_api::client::Session> {
    let client = sessions::client(keyserver)?;
    // RFC 8252: a loopback IP literal on a port the system picks.
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on a loopback port")?;
    let port = listener.local_addr()?.port();
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut()).map_err(|e| anyhow!("no randomness: {e}"))?;
    let verifier =
        Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref()));
    let challenge = medseal_keyserver_api::v1::s256_challenge(&verifier);
    let url = client.sso_start_url(
        org,
        &format!("http://127.0.0.1:{port}/callback"),
        &challenge,
    );
    eprintln!("To sign in, open this address in a browser on this computer:\n{url}");
    if std::io::stderr().is_terminal() {
        open_browser(&url);
    }
    let answer = wait_for_callback(&listener, SSO_WAIT)?;
    let grant = match answer {
        Callback::Grant(g) => g,
        Callback::Refused(why) => {
            // Any local page can call the listener: nothing it says may
            // drive the terminal.
            let why: String = why.chars().filter(|c| !c.is_control()).take(300).collect();
            bail!("single sign-on refused: {why}")
        }
    };
    Ok(client.exchange_grant(&grant, &verifier)?)
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

enum Callback {
    Grant(Zeroizing<String>),
    Refused(String),
}

/// Waits for the browser to come back to the loopback listener with a
/// grant or an error; other requests (a favicon) are answered 404.
fn wait_for_callback(listener: &TcpListener, wait: Duration) -> Result<Callback> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some(answer) = read_callback(stream)? {
                    return Ok(answer);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    bail!(
                        "no sign-in within {} minutes; run medseal login again",
                        wait.as_secs() / 60
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).context("the loopback listener failed"),
        }
    }
}

fn read_callback(mut stream: TcpStream) -> Result<Option<Callback>> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    // A bounded read: a peer cannot send an endless line.
    BufReader::new(std::io::Read::take(&stream, 8192)).read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let parsed = url::Url::parse(&format!("http://127.0.0.1{target}")).ok();
    let answer = parsed.filter(|u| u.path() == "/callback").map(|u| {
        let get = |k: &str| {
            u.query_pairs()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.into_owned())
        };
        match (get("grant"), get("error")) {
            (Some(g), _) => Callback::Grant(Zeroizing::new(g)),
            (None, Some(e)) => Callback::Refused(e),
            (None, None) => Callback::Refused("the key server sent nothing back".into()),
        }
    });
    let (status, text) = match &answer {
        Some(Callback::Grant(_)) => (
            "200 OK",
            "You are signed in. You can close this tab and go back to the terminal.",
        ),
        Some(Callback::Refused(_)) => ("200 OK", "Sign-in was refused; the terminal says why."),
        None => ("404 Not Found", "Not found."),
    };
    let body = format!("<!doctype html><meta charset=utf-8><title>medseal</title><p>{text}</p>");
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Ok(answer)
}

//! RNCryptor v3 on the command line: `medseal seal --format rncryptor-v3`,
//! and `medseal open` when the input is an RNCryptor message.
//!
//! The format is one message with one MAC at the end, so it is read whole
//! (up to 1 GiB) and nothing is written until it authenticates.

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use medseal_format::rncryptor::{self, MAX_MESSAGE_LEN, RnSecret};
use zeroize::Zeroizing;

use crate::files::{InputPath, Output};
use crate::secrets;

/// The secret for an RNCryptor message, read from the flags.
pub enum RnMaterial {
    /// Password mode.
    Password(Zeroizing<Vec<u8>>),
    /// Key mode: encryption and HMAC keys.
    Keys(secrets::RawKey, secrets::RawKey),
}

impl RnMaterial {
    /// Reads `--password-file` or `--key-file` (64 bytes for RNCryptor).
    pub fn read(password: Option<&InputPath>, key: Option<&InputPath>) -> Result<Self> {
        match (password, key) {
            (Some(p), _) => Ok(RnMaterial::Password(secrets::read_password(p)?)),
            (None, Some(k)) => {
                let (e, h) = secrets::read_key_pair(k)?;
                Ok(RnMaterial::Keys(e, h))
            }
            (None, None) => bail!(
                "RNCryptor needs --password-file, or --key-file with the encryption and HMAC keys (64 bytes)"
            ),
        }
    }

    fn secret(&self) -> RnSecret<'_> {
        match self {
            RnMaterial::Password(p) => RnSecret::Password(p),
            RnMaterial::Keys(e, h) => RnSecret::Keys {
                encryption: e,
                hmac: h,
            },
        }
    }
}

fn read_whole(input: &InputPath, reader: &mut dyn Read) -> Result<Zeroizing<Vec<u8>>> {
    let mut data = Zeroizing::new(Vec::new());
    reader
        .take(MAX_MESSAGE_LEN as u64 + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("cannot read {input}"))?;
    if data.len() > MAX_MESSAGE_LEN {
        bail!(
            "{input} is over 1 GiB: too large for RNCryptor, which must be held whole; use the medseal format"
        );
    }
    Ok(data)
}

/// Seals `input` into `dest` as an RNCryptor v3 message.
pub fn seal(input: &InputPath, material: &RnMaterial, dest: &str) -> Result<()> {
    let plain = read_whole(input, &mut input.open_raw()?)?;
    let message = rncryptor::encrypt(material.secret(), &plain)
        .with_context(|| format!("cannot seal {input}"))?;
    let mut out = Output::create(dest, input)?;
    out.write_all(&message).context("cannot write the output")?;
    out.commit()
}

/// Opens the RNCryptor message read from `reader` into `dest`.
pub fn open(
    input: &InputPath,
    reader: &mut dyn Read,
    material: &RnMaterial,
    dest: &str,
) -> Result<()> {
    let message = read_whole(input, reader)?;
    let plain = rncryptor::decrypt(material.secret(), &message)
        .with_context(|| format!("cannot open {input}"))?;
    let mut out = Output::create(dest, input)?;
    out.write_all(&plain).context("cannot write the output")?;
    out.commit()
}

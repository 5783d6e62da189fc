//! RNCryptor v3 against the published test vectors, both directions, plus
//! the failures that matter: a flipped bit anywhere, a truncated message, a
//! wrong password, the wrong kind of secret.

use std::collections::HashMap;

use medseal_format::rncryptor::{self, Nonces, RnSecret};
use medseal_format::{Error, ErrorKind};

fn vectors(name: &str) -> Vec<HashMap<String, String>> {
    let path = format!(
        "{}/tests/vectors/rncryptor-v3/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut cur = HashMap::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let (k, v) = line.split_once(':').unwrap();
        cur.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    out
}

fn hex(v: &HashMap<String, String>, k: &str) -> Vec<u8> {
    hex::decode(v[k].replace(' ', "")).unwrap()
}

fn arr<const N: usize>(b: Vec<u8>) -> [u8; N] {
    b.try_into().unwrap()
}

/// Vector `v` encrypts to its ciphertext with these nonces, and that
/// ciphertext decrypts back to its plaintext.
fn both_ways(v: &HashMap<String, String>, secret: RnSecret<'_>, n: &Nonces) {
    let (plain, cipher) = (hex(v, "plaintext_hex"), hex(v, "ciphertext_hex"));
    assert_eq!(
        rncryptor::encrypt_with(secret, &plain, n).unwrap(),
        cipher,
        "{}",
        v["title"]
    );
    assert_eq!(
        *rncryptor::decrypt(secret, &cipher).unwrap(),
        plain,
        "{}",
        v["title"]
    );
}

#[test]
fn password_vectors_both_ways() {
    let vs = vectors("password");
    assert_eq!(vs.len(), 5);
    for v in vs {
        let n = Nonces {
            encryption_salt: arr(hex(&v, "enc_salt_hex")),
            hmac_salt: arr(hex(&v, "hmac_salt_hex")),
            iv: arr(hex(&v, "iv_hex")),
        };
        both_ways(&v, RnSecret::Password(v["password"].as_bytes()), &n);
        assert!(rncryptor::looks_like(&hex(&v, "ciphertext_hex")));
    }
}

#[test]
fn key_vectors_both_ways() {
    let vs = vectors("key");
    assert_eq!(vs.len(), 4);
    for v in vs {
        let (e, h): ([u8; 32], [u8; 32]) =
            (arr(hex(&v, "enc_key_hex")), arr(hex(&v, "hmac_key_hex")));
        let secret = RnSecret::Keys {
            encryption: &e,
            hmac: &h,
        };
        let n = Nonces {
            encryption_salt: [0; 8],
            hmac_salt: [0; 8],
            iv: arr(hex(&v, "iv_hex")),
        };
        both_ways(&v, secret, &n);
    }
}

#[test]
fn every_bit_flip_truncation_and_wrong_secret_is_refused() {
    let pw = RnSecret::Password(b"correct horse battery staple");
    let msg = rncryptor::encrypt(pw, b"clinical photo bytes, two blocks long!!").unwrap();
    assert_eq!(
        *rncryptor::decrypt(pw, &msg).unwrap(),
        b"clinical photo bytes, two blocks long!!"
    );
    for i in 0..msg.len() {
        for bit in [0x01u8, 0x80] {
            let mut m = msg.clone();
            m[i] ^= bit;
            let e = rncryptor::decrypt(pw, &m)
                .err()
                .unwrap_or_else(|| panic!("flip at {i} accepted"));
            assert!(
                matches!(e.kind(), ErrorKind::Key | ErrorKind::Format),
                "{i}: {e}"
            );
        }
    }
    for len in [0, 1, 2, 33, msg.len() - 33, msg.len() - 1] {
        assert!(
            rncryptor::decrypt(pw, &msg[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut longer = msg.clone();
    longer.push(0);
    assert!(rncryptor::decrypt(pw, &longer).is_err(), "appended data");
    assert!(matches!(
        rncryptor::decrypt(RnSecret::Password(b"wrong"), &msg),
        Err(Error::RncryptorAuthFailed)
    ));
    let k = [1u8; 32];
    assert!(matches!(
        rncryptor::decrypt(
            RnSecret::Keys {
                encryption: &k,
                hmac: &k
            },
            &msg
        ),
        Err(Error::SecretKindMismatch { .. })
    ));
    assert!(!rncryptor::looks_like(b"\x89MSEAL\r\n"));
}

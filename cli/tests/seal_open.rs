//! Drives the real `medseal` binary: seal, open, inspect, exit codes, and
//! that a failed open leaves no output file behind.

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use tempfile::TempDir;

fn medseal() -> Command {
    Command::cargo_bin("medseal").unwrap()
}

fn setup() -> TempDir {
    let d = TempDir::new().unwrap();
    let data: Vec<u8> = (0..3_000_123u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    fs::write(d.path().join("photo.jpg"), data).unwrap();
    fs::write(d.path().join("pw"), "correct horse battery staple\n").unwrap();
    fs::write(d.path().join("key"), [0x5au8; 32]).unwrap();
    d
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn password_round_trip_with_default_names() {
    let d = setup();
    medseal()
        .current_dir(d.path())
        .args(["seal", "--password-file", "pw", "photo.jpg"])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    fs::rename(d.path().join("photo.jpg"), d.path().join("orig.jpg")).unwrap();
    medseal()
        .current_dir(d.path())
        .args(["open", "--password-file", "pw", "photo.jpg.mseal"])
        .assert()
        .success();
    assert_eq!(
        fs::read(d.path().join("photo.jpg")).unwrap(),
        fs::read(d.path().join("orig.jpg")).unwrap()
    );
}

#[test]
fn key_file_round_trip_through_pipes() {
    let d = setup();
    let plain = fs::read(d.path().join("photo.jpg")).unwrap();
    let sealed = medseal()
        .current_dir(d.path())
        .args(["seal", "--key-file", "key", "-"])
        .write_stdin(plain.clone())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(sealed.starts_with(b"\x89MSEAL\r\n"));
    let opened = medseal()
        .current_dir(d.path())
        .args(["open", "--key-file", "key", "-o", "-", "-"])
        .write_stdin(sealed)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(opened, plain);
}

#[test]
fn password_from_stdin() {
    let d = setup();
    medseal()
        .current_dir(d.path())
        .args(["seal", "--password-file", "-", "-o", "s.mseal", "photo.jpg"])
        .write_stdin("from stdin\n")
        .assert()
        .success();
    medseal()
        .current_dir(d.path())
        .args(["open", "--password-file", "-", "-o", "out", "s.mseal"])
        .write_stdin("from stdin")
        .assert()
        .success();
    medseal()
        .current_dir(d.path())
        .args(["seal", "--password-file", "-", "-"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("standard input"));
}

#[test]
fn key_file_accepts_hex_and_base64() {
    let d = setup();
    fs::write(d.path().join("key.hex"), format!("{}\n", "5a".repeat(32))).unwrap();
    fs::write(
        d.path().join("key.b64"),
        "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=\n",
    )
    .unwrap();
    medseal()
        .current_dir(d.path())
        .args([
            "seal",
            "--key-file",
            "key.hex",
            "-o",
            "s.mseal",
            "photo.jpg",
        ])
        .assert()
        .success();
    medseal()
        .current_dir(d.path())
        .args(["open", "--key-file", "key.b64", "-o", "out", "s.mseal"])
        .assert()
        .success();
    fs::write(d.path().join("bad.key"), "not a key").unwrap();
    medseal()
        .current_dir(d.path())
        .args(["seal", "--key-file", "bad.key", "photo.jpg"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a key file"));
}

/// Flips one bit in the middle of the body and checks that open fails with
/// exit code 4, one line on stderr, and no output file.
#[test]
fn tampered_file_leaves_no_output() {
    let d = setup();
    medseal()
        .current_dir(d.path())
        .args(["seal", "--key-file", "key", "-o", "s.mseal", "photo.jpg"])
        .assert()
        .success();
    let mut bytes = fs::read(d.path().join("s.mseal")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    fs::write(d.path().join("s.mseal"), bytes).unwrap();
    let before = files_in(d.path());
    let out = medseal()
        .current_dir(d.path())
        .args(["open", "--key-file", "key", "-o", "out.jpg", "s.mseal"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("damaged or tampered"), "{stderr}");
    assert_eq!(files_in(d.path()), before, "no output, no temporary file");
}

#[test]
fn wrong_password_exit_code_and_existing_output_untouched() {
    let d = setup();
    medseal()
        .current_dir(d.path())
        .args([
            "seal",
            "--password-file",
            "pw",
            "-o",
            "s.mseal",
            "photo.jpg",
        ])
        .assert()
        .success();
    fs::write(d.path().join("wrong"), "nope").unwrap();
    fs::write(d.path().join("out"), "precious").unwrap();
    medseal()
        .current_dir(d.path())
        .args(["open", "--password-file", "wrong", "-o", "out", "s.mseal"])
        .assert()
        .code(3)
        .stderr("medseal: cannot open s.mseal: wrong key or password\n");
    assert_eq!(
        fs::read_to_string(d.path().join("out")).unwrap(),
        "precious"
    );
}

#[test]
fn inspect_shows_the_header_without_a_key() {
    let d = setup();
    medseal()
        .current_dir(d.path())
        .args([
            "seal",
            "--key-file",
            "key",
            "--key-id",
            "org-2026",
            "--chunk-size",
            "64K",
        ])
        .args(["-o", "s.mseal", "photo.jpg"])
        .assert()
        .success();
    let out = medseal()
        .current_dir(d.path())
        .args(["inspect", "s.mseal"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["format"], "medseal");
    assert_eq!(v["version"], 1);
    assert_eq!(v["key_mode"], "static-key");
    assert_eq!(v["key_id"], "org-2026");
    assert_eq!(v["chunk_size"], 65536);
    assert_eq!(v["chunks"], 3_000_123 / 65536 + 1);
    let max = v["plaintext_size_max"].as_u64().unwrap();
    assert!((3_000_123..3_000_123 + 16).contains(&max));
    assert_eq!(v["key_fingerprint"].as_str().unwrap().len(), 64);
}

#[test]
fn inspect_on_junk_is_a_clean_error() {
    let d = setup();
    medseal()
        .current_dir(d.path())
        .args(["inspect", "photo.jpg"])
        .assert()
        .code(5)
        .stdout("")
        .stderr("medseal: cannot inspect photo.jpg: not a medseal file\n");
    medseal()
        .current_dir(d.path())
        .args(["inspect", "missing.mseal"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "medseal: cannot open missing.mseal",
        ));
}

#[test]
fn refuses_to_overwrite_input_or_clobber_implicit_output() {
    let d = setup();
    medseal()
        .current_dir(d.path())
        .args(["seal", "--key-file", "key", "-o", "photo.jpg", "photo.jpg"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("is the input file"));
    fs::write(d.path().join("photo.jpg.mseal"), "existing").unwrap();
    medseal()
        .current_dir(d.path())
        .args(["seal", "--key-file", "key", "photo.jpg"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists"));
}

#[test]
fn sealed_output_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = setup();
    medseal()
        .current_dir(d.path())
        .args(["seal", "--key-file", "key", "-o", "s.mseal", "photo.jpg"])
        .assert()
        .success();
    medseal()
        .current_dir(d.path())
        .args(["open", "--key-file", "key", "-o", "plain", "s.mseal"])
        .assert()
        .success();
    for f in ["s.mseal", "plain"] {
        let mode = fs::metadata(d.path().join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
}

#[test]
fn rncryptor_v3_sealed_and_opened_by_detection() {
    let d = setup();
    let original = fs::read(d.path().join("photo.jpg")).unwrap();
    // Password mode, default names both ways.
    medseal()
        .current_dir(d.path())
        .args([
            "seal",
            "--format",
            "rncryptor-v3",
            "--password-file",
            "pw",
            "photo.jpg",
        ])
        .assert()
        .success();
    let message = fs::read(d.path().join("photo.jpg.rncryptor")).unwrap();
    assert_eq!(&message[..2], &[3, 1], "RNCryptor v3, password mode");
    fs::remove_file(d.path().join("photo.jpg")).unwrap();
    medseal()
        .current_dir(d.path())
        .args(["open", "--password-file", "pw", "photo.jpg.rncryptor"])
        .assert()
        .success();
    assert_eq!(fs::read(d.path().join("photo.jpg")).unwrap(), original);
    // Through stdin and stdout too.
    medseal()
        .current_dir(d.path())
        .args(["open", "--password-file", "pw", "-o", "-", "-"])
        .write_stdin(message.clone())
        .assert()
        .success()
        .stdout(predicate::function(|out: &[u8]| out == original.as_slice()));
    // A wrong password is refused with the format's honest message, and no
    // output is left behind.
    fs::write(d.path().join("wrong"), "not it\n").unwrap();
    medseal()
        .current_dir(d.path())
        .args([
            "open",
            "--password-file",
            "wrong",
            "-o",
            "out.jpg",
            "photo.jpg.rncryptor",
        ])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("RNCryptor cannot tell which"));
    assert!(!d.path().join("out.jpg").exists());
    // Key mode: 64 bytes, the encryption key then the HMAC key, as hex.
    fs::write(
        d.path().join("pair"),
        format!("{}\n", "ab".repeat(32) + &"cd".repeat(32)),
    )
    .unwrap();
    medseal()
        .current_dir(d.path())
        .args([
            "seal",
            "--format",
            "rncryptor-v3",
            "--key-file",
            "pair",
            "-o",
            "k.rnc",
            "photo.jpg",
        ])
        .assert()
        .success();
    assert_eq!(&fs::read(d.path().join("k.rnc")).unwrap()[..2], &[3, 0]);
    medseal()
        .current_dir(d.path())
        .args(["open", "--key-file", "pair", "-o", "k.jpg", "k.rnc"])
        .assert()
        .success();
    assert_eq!(fs::read(d.path().join("k.jpg")).unwrap(), original);
    // A 32-byte medseal key is not an RNCryptor key pair.
    medseal()
        .current_dir(d.path())
        .args(["open", "--key-file", "key", "-o", "x.jpg", "k.rnc"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not an RNCryptor key file"));
}

#[test]
fn rncryptor_published_vector_opens() {
    // "Exactly one block" from the RNCryptor v3 specification's vectors.
    let d = setup();
    fs::write(d.path().join("thepw"), "thepassword").unwrap();
    let hexmsg = "03010102030405060700020304050607080103040506070809\
                  0a0b0c0d0e0f0001020e437fe809309c03fd53a475131e9a19\
                  78b8eaef576f60adb8ce2320849ba32d742900438ba897d222\
                  10c76c35c849df";
    let msg: Vec<u8> = (0..hexmsg.len() / 2)
        .map(|i| u8::from_str_radix(&hexmsg[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    fs::write(d.path().join("v.rncryptor"), msg).unwrap();
    medseal()
        .current_dir(d.path())
        .args(["open", "--password-file", "thepw", "v.rncryptor"])
        .assert()
        .success();
    assert_eq!(
        fs::read(d.path().join("v")).unwrap(),
        [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]
    );
}

/// The exit codes docs/format.md §5 promises, for the mistakes a user makes
/// most: the wrong kind of secret, too few iterations, stdin named twice.
#[test]
fn exit_codes_of_common_mistakes() {
    let d = setup();
    let run = |args: &[&str]| medseal().current_dir(d.path()).args(args).assert();
    run(&[
        "seal",
        "--password-file",
        "pw",
        "-o",
        "p.mseal",
        "photo.jpg",
    ])
    .success();
    run(&["seal", "--key-file", "key", "-o", "k.mseal", "photo.jpg"]).success();
    // A key offered for a password file, and the reverse: no key (3).
    run(&["open", "--key-file", "key", "-o", "x", "p.mseal"])
        .code(3)
        .stderr(predicate::str::contains("password"));
    run(&["open", "--password-file", "pw", "-o", "x", "k.mseal"])
        .code(3)
        .stderr(predicate::str::contains("key"));
    assert!(!d.path().join("x").exists());
    // Too few iterations: refused by policy (6), in the sealer's words.
    run(&[
        "seal",
        "--password-file",
        "pw",
        "--iterations",
        "599999",
        "-o",
        "w.mseal",
        "photo.jpg",
    ])
    .code(6)
    .stderr(predicate::str::contains("refusing to seal"));
    assert!(!d.path().join("w.mseal").exists());
    // Standard input for both the secret and the input: a usage error (2).
    run(&["open", "--password-file", "-", "-"])
        .code(2)
        .stderr(predicate::str::contains("standard input"));
    // A tampered RNCryptor message: the format cannot tell tampering from a
    // wrong secret, so it is "no key" (3), saying both.
    run(&[
        "seal",
        "--format",
        "rncryptor-v3",
        "--password-file",
        "pw",
        "-o",
        "r.rnc",
        "photo.jpg",
    ])
    .success();
    let mut m = fs::read(d.path().join("r.rnc")).unwrap();
    let mid = m.len() / 2;
    m[mid] ^= 1;
    fs::write(d.path().join("r.rnc"), m).unwrap();
    run(&["open", "--password-file", "pw", "-o", "r.out", "r.rnc"])
        .code(3)
        .stderr(predicate::str::contains("RNCryptor cannot tell which"));
    // One byte appended to a medseal file: named as such, damaged (4).
    let mut m = fs::read(d.path().join("k.mseal")).unwrap();
    m.push(0);
    fs::write(d.path().join("k2.mseal"), m).unwrap();
    run(&["open", "--key-file", "key", "-o", "k2.out", "k2.mseal"])
        .code(4)
        .stderr(predicate::str::contains("unexpected data after the end"));
}

/// No session with the key server on this device: exit 3 ("no key"), as
/// the README's table says, with the command that fixes it.
#[test]
fn not_logged_in_is_exit_3() {
    let dir = TempDir::new().unwrap();
    fs::write(dir.path().join("note.txt"), b"x").unwrap();
    let out = Command::cargo_bin("medseal")
        .unwrap()
        .current_dir(dir.path())
        .env("MEDSEAL_CONFIG_DIR", dir.path().join("config"))
        .args([
            "seal",
            "--keyserver",
            "http://127.0.0.1:9",
            "--recipient",
            "bob@st.example",
            "note.txt",
        ])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not logged in") && err.contains("medseal login --keyserver"),
        "{err}"
    );
    assert!(!dir.path().join("note.txt.mseal").exists());
}

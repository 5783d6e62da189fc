//! Every file-taking flag of the command line, given hostile paths: a path
//! that does not exist, a directory, a path that climbs through a regular
//! file (`file/../x`), and — for the inputs that are read whole — a device
//! that never ends (`/dev/zero`). Each is refused in one line on stderr with
//! a non-zero exit, within a bounded time, without a panic and without
//! leaving anything behind. Outputs are also aimed at a directory, a
//! missing directory, a full device, a symbolic link (replaced, never
//! written through) and a pipe (written in place, never replaced by a
//! rename).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use medseal_e2e::{medseal_bin, write_file};

/// What a run ended with.
struct Run {
    code: Option<i32>,
    stderr: String,
}

/// Runs medseal in `dir`, killing it (and failing) after a bounded time.
fn run(dir: &Path, args: &[String]) -> Run {
    let mut child = Command::new(medseal_bin())
        .current_dir(dir)
        .args(args)
        .env("MEDSEAL_CONFIG_DIR", dir.join("config"))
        .env("MEDSEAL_OUTBOX", dir.join("outbox"))
        .env_remove("MEDSEAL_KEYRING")
        .env_remove("MEDSEAL_DESTINATIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run medseal");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("medseal {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    Run {
        code: status.code(),
        stderr,
    }
}

/// Every path under `dir`, recursively (what "left nothing behind" compares).
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).unwrap_or(&p).to_path_buf());
        }
    }
    out
}

fn refused(dir: &Path, args: &[String], why: &str) {
    let before = tree(dir);
    let r = run(dir, args);
    let err = r.stderr.trim_end();
    assert!(
        r.code.is_some_and(|c| c != 0),
        "{why}: medseal {args:?} succeeded"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{why}: medseal {args:?} panicked: {err}"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "{why}: medseal {args:?} should fail in one line: {err}"
    );
    assert!(
        err.starts_with("medseal: "),
        "{why}: medseal {args:?}: {err}"
    );
    let after = tree(dir);
    let left: Vec<_> = after.difference(&before).collect();
    // The key server's commands create their (empty, 0700) data directory
    // on first use; nothing else may appear.
    assert!(
        left.iter().all(|p| p.to_string_lossy().starts_with("ks")),
        "{why}: medseal {args:?} left {left:?}"
    );
}

/// `medseal capture` with a photo and its consent form, `extra` flags, and
/// an output.
fn capture(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["capture", "--patient-id", "p-1", "--consent", "written"];
    v.extend_from_slice(extra);
    v.extend_from_slice(&["-o", "cap.mseal"]);
    v
}

/// Every command line that reads a named file, with `@` where the path
/// goes, and whether the file is read whole (so that an endless device
/// must be bounded) rather than streamed like a pipe.
fn inputs() -> Vec<(Vec<&'static str>, bool)> {
    let whole = |v: &[&'static str]| (v.to_vec(), true);
    let evidence = ["--consent-evidence", "form.jpg"];
    let photo = ["--photo", "photo.jpg", "--key-file", "key"];
    let send = ["send", "--config", "dest.toml", "--to", "drop"];
    let ks = ["keyserver", "--data-dir", "ks"];
    let serve = [
        "keyserver",
        "--data-dir",
        "ks",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ];
    let join = |parts: &[&[&'static str]]| parts.concat();
    vec![
        (
            vec!["seal", "--key-file", "key", "-o", "out.mseal", "@"],
            false,
        ),
        whole(&["seal", "--key-file", "@", "-o", "out.mseal", "plain.txt"]),
        whole(&[
            "seal",
            "--password-file",
            "@",
            "-o",
            "out.mseal",
            "plain.txt",
        ]),
        whole(&[
            "seal",
            "--format",
            "rncryptor-v3",
            "--key-file",
            "@",
            "-o",
            "o.rn",
            "plain.txt",
        ]),
        whole(&["open", "--key-file", "key", "-o", "out.txt", "@"]),
        whole(&["open", "--key-file", "@", "-o", "out.txt", "sealed.mseal"]),
        whole(&[
            "open",
            "--password-file",
            "@",
            "-o",
            "out.txt",
            "sealed.mseal",
        ]),
        whole(&["inspect", "@"]),
        whole(&capture(&join(&[
            &evidence,
            &["--photo", "@", "--key-file", "key"],
        ]))),
        whole(&capture(&join(&[&["--consent-evidence", "@"], &photo]))),
        whole(&capture(&join(&[&evidence, &photo, &["--audio", "@"]]))),
        whole(&capture(&join(&[&evidence, &photo, &["--video", "@"]]))),
        whole(&capture(&join(&[
            &evidence,
            &["--photo", "photo.jpg", "--key-file", "@"],
        ]))),
        whole(&[
            "login",
            "--keyserver",
            "http://127.0.0.1:9",
            "--email",
            "a@st.example",
            "--password-file",
            "@",
        ]),
        whole(&join(&[&send, &["@"]])),
        whole(&["send", "--config", "@", "--to", "drop", "sealed.mseal"]),
        whole(&join(&[&send, &["--key-file", "@", "sealed.mseal"]])),
        whole(&["outbox", "list", "--config", "@"]),
        whole(&[
            "outbox",
            "flush",
            "--config",
            "dest.toml",
            "--key-file",
            "@",
        ]),
        whole(&join(&[&ks, &["--keyring", "@", "audit", "verify"]])),
        whole(&join(&[
            &serve,
            &["--tls-cert", "@", "--tls-key", "tls.key"],
        ])),
        whole(&join(&[
            &serve,
            &["--tls-cert", "tls.crt", "--tls-key", "@"],
        ])),
        whole(&join(&[
            &ks,
            &[
                "user",
                "add",
                "--org",
                "St Elsewhere",
                "--email",
                "a@st.example",
            ],
            &["--role", "clinician", "--password-file", "@"],
        ])),
        whole(&join(&[
            &ks,
            &["backup", "--password-file", "@", "backup.mseal"],
        ])),
        whole(&[
            "keyserver",
            "--data-dir",
            "ks-new",
            "restore",
            "--key-file",
            "key",
            "@",
        ]),
        whole(&[
            "keyserver",
            "--data-dir",
            "ks-new",
            "restore",
            "--key-file",
            "@",
            "sealed.mseal",
        ]),
    ]
}

/// Every command line that writes a named output, with `@` where it goes.
fn outputs() -> Vec<Vec<&'static str>> {
    // With --force: without it an existing target (the link case below)
    // is refused, which `capture_never_replaces_a_report_unasked` shows.
    let mut cap = capture(&[
        "--consent-evidence",
        "form.jpg",
        "--photo",
        "photo.jpg",
        "--key-file",
        "key",
        "--force",
    ]);
    let last = cap.len() - 1;
    cap[last] = "@";
    vec![
        vec!["seal", "--key-file", "key", "-o", "@", "plain.txt"],
        vec!["open", "--key-file", "key", "-o", "@", "sealed.mseal"],
        cap,
        vec![
            "keyserver",
            "--data-dir",
            "ks",
            "audit",
            "export",
            "-o",
            "@",
        ],
        vec![
            "keyserver",
            "--data-dir",
            "ks",
            "backup",
            "--key-file",
            "key",
            "@",
        ],
    ]
}

fn with(template: &[&str], path: &str) -> Vec<String> {
    template
        .iter()
        .map(|a| {
            if *a == "@" {
                path.to_owned()
            } else {
                (*a).to_owned()
            }
        })
        .collect()
}

fn set_up(d: &Path) {
    write_file(d, "plain.txt", b"a clinical note");
    write_file(d, "key", &[7u8; 32]);
    std::fs::create_dir(d.join("a-dir")).unwrap();
    let photo = medseal_capture::fixtures::phone_jpeg(1);
    write_file(d, "photo.jpg", &photo);
    write_file(d, "form.jpg", &photo);
    write_file(d, "tls.crt", b"not a certificate");
    write_file(d, "tls.key", b"not a key");
    write_file(
        d,
        "dest.toml",
        b"[destinations.drop]\ntype = \"folder\"\npath = \"drop\"\n",
    );
    std::fs::create_dir(d.join("drop")).unwrap();
    let r = run(
        d,
        &with(
            &["seal", "--key-file", "key", "-o", "@", "plain.txt"],
            "sealed.mseal",
        ),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // A key server store for the admin commands.
    let r = run(
        d,
        &with(
            &[
                "keyserver",
                "--data-dir",
                "@",
                "--init",
                "org",
                "add",
                "St Elsewhere",
            ],
            "ks",
        ),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

#[test]
fn every_input_flag_refuses_hostile_paths_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    set_up(d);
    for (args, read_whole) in inputs() {
        let mut hostile = vec![
            ("a missing file", "no-such-file"),
            ("a directory", "a-dir"),
            ("a path through a regular file", "plain.txt/../key"),
            (
                "a path climbing out of a missing one",
                "no-such-dir/../../../key-x",
            ),
        ];
        if read_whole {
            hostile.push(("an endless device", "/dev/zero"));
        }
        for (why, path) in hostile {
            // The restore target must stay fresh for every case.
            let _ = std::fs::remove_dir_all(d.join("ks-new"));
            refused(d, &with(&args, path), why);
        }
    }

    // Another store's keyring is refused: it did not seal this audit log.
    let r = run(
        d,
        &with(
            &[
                "keyserver",
                "--data-dir",
                "@",
                "--init",
                "org",
                "add",
                "Elsewhere",
            ],
            "ks-other",
        ),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let args = with(
        &[
            "keyserver",
            "--data-dir",
            "ks",
            "--keyring",
            "@",
            "audit",
            "verify",
        ],
        "ks-other/master.keyring",
    );
    let r = run(d, &args);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("does not belong to this store"),
        "{}",
        r.stderr
    );
}

#[test]
fn every_output_flag_is_safe_with_hostile_targets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    set_up(d);
    for template in &outputs() {
        refused(d, &with(template, "a-dir"), "a directory as the output");
        refused(
            d,
            &with(template, "no-such-dir/out"),
            "an output in a missing directory",
        );
        refused(
            d,
            &with(template, "a-dir/../no-such-dir/out"),
            "an output climbing into a missing directory",
        );
        refused(
            d,
            &with(template, "plain.txt/out"),
            "an output under a regular file",
        );
        refused(d, &with(template, "/dev/full"), "a full device");

        // A symbolic link named as the output is replaced by the new file;
        // the file it pointed to is never written through it.
        let victim = write_file(d, "victim.txt", b"must not change");
        let link = d.join("link.out");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let r = run(d, &with(template, "link.out"));
        assert_eq!(r.code, Some(0), "{template:?} via a link: {}", r.stderr);
        assert_eq!(std::fs::read(&victim).unwrap(), b"must not change");
        assert!(
            !std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        std::fs::remove_file(&link).unwrap();

        // A pipe named as the output is written in place (and stays a
        // pipe): a rename would have replaced it. Devices are the same
        // case; /dev/full above shows the write is really attempted.
        let fifo = d.join("out.fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(&fifo).unwrap())
        };
        let r = run(d, &with(template, "out.fifo"));
        let got = reader.join().unwrap();
        assert_eq!(r.code, Some(0), "{template:?} to a pipe: {}", r.stderr);
        assert!(!got.is_empty(), "{template:?} wrote nothing to the pipe");
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo(),
            "{template:?} replaced the pipe"
        );
        std::fs::remove_file(&fifo).unwrap();
        assert!(
            std::fs::metadata("/dev/full")
                .unwrap()
                .file_type()
                .is_char_device(),
            "{template:?} replaced /dev/full"
        );
    }

    // --extract wants a new directory, and nothing is left on refusal.
    for (why, target) in [
        ("an existing directory", "a-dir"),
        ("an existing file", "plain.txt"),
        ("a missing parent", "no-such-dir/out"),
        ("a path under a regular file", "plain.txt/out"),
        ("a device", "/dev/full"),
    ] {
        refused(
            d,
            &with(
                &[
                    "open",
                    "--key-file",
                    "key",
                    "--extract",
                    "@",
                    "sealed.mseal",
                ],
                target,
            ),
            why,
        );
    }
}

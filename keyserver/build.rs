//! Builds the web app the key server serves at `/app/`, so that
//! `cargo run -p medseal -- keyserver serve` serves it with no extra step:
//!
//! 1. `medseal-web` compiled to `wasm32-unknown-unknown` (release), in its
//!    own target directory beside this build's, shared by every profile so
//!    that it is built once — twice over: the viewer's module
//!    (`medseal_web`, without the `capture` feature) and the capture
//!    worker's (`medseal_capture`), sharing every dependency's build;
//! 2. their JavaScript bindings made by `wasm-bindgen` (the library the
//!    `wasm-bindgen` command is built from, pinned to the same version as
//!    the `wasm-bindgen` crate in Cargo.lock), without names or debug info;
//! 3. `web/static/` copied beside them, with each `{{sri:FILE}}` in the HTML
//!    replaced by that file's Subresource Integrity hash (SHA-384);
//! 4. `assets.rs` in `OUT_DIR`, listing every file with its content type,
//!    its entity tag (a digest of its bytes, for conditional requests) and,
//!    where it saves bytes, a gzip copy made once here (the capture
//!    worker's module shrinks to about a third), included into the binary.
//!
//! The wasm32 target comes with the toolchain (`rust-toolchain.toml`).
//! `MEDSEAL_WEB_APP=off` builds a server without the app (`/app/` is 404).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use sha2::Digest;

fn main() {
    if let Err(e) = build() {
        // One clear line; cargo shows it with the failed build.
        panic!("building the web app failed: {e}");
    }
}

fn build() -> Result<(), String> {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let root = manifest.parent().ok_or("no workspace root")?.to_path_buf();
    let out = PathBuf::from(env("OUT_DIR")?);
    // Builds that never serve the app (the fuzzing harness, which compiles
    // with its own toolchain and flags) can leave it out.
    println!("cargo:rerun-if-env-changed=MEDSEAL_WEB_APP");
    if std::env::var("MEDSEAL_WEB_APP").is_ok_and(|v| v == "off") {
        std::fs::write(
            out.join("assets.rs"),
            "use super::Asset;\n/// Left out of this build (MEDSEAL_WEB_APP=off).\npub static ASSETS: &[Asset] = &[];\n",
        )
        .map_err(|e| e.to_string())?;
        return Ok(());
    }
    for watched in [
        "web/src",
        "web/static",
        "web/Cargo.toml",
        "report-format/src",
        "report-format/Cargo.toml",
        "capture-lib/src",
        "capture-lib/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // OUT_DIR is TARGET/PROFILE/build/PKG-HASH/out.
    let target_dir = out
        .ancestors()
        .nth(4)
        .ok_or("cannot find the target directory")?
        .join("web");
    let app = out.join("app");
    let _ = std::fs::remove_dir_all(&app);
    std::fs::create_dir_all(&app).map_err(|e| format!("{}: {e}", app.display()))?;
    // The wasm build's directory is shared by every profile's build of this
    // crate, and the two modules are built in turn into the same file name:
    // a second build (`cargo build` beside `cargo test`) waits here, so
    // that neither copies the other's module.
    std::fs::create_dir_all(&target_dir).map_err(|e| format!("{}: {e}", target_dir.display()))?;
    let lock = target_dir.join("build.lock");
    let lock = std::fs::File::create(&lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock the web build: {e}"))?;
    // The viewer's module, small (every recipient downloads it), then the
    // capture worker's, which carries the PDF writer and the image code.
    for (features, name) in [
        (["--no-default-features"].as_slice(), "medseal_web"),
        (["--features", "capture"].as_slice(), "medseal_capture"),
    ] {
        let wasm = compile_web(&root, &target_dir, features)?;
        let kept = target_dir.join(format!("{name}.wasm"));
        std::fs::copy(&wasm, &kept).map_err(|e| format!("{}: {e}", kept.display()))?;
        wasm_bindgen_cli_support::Bindgen::new()
            .input_path(&kept)
            .out_name(name)
            .web(true)
            .map_err(|e| e.to_string())?
            .typescript(false)
            .keep_debug(false)
            .remove_name_section(true)
            .remove_producers_section(true)
            .generate(&app)
            .map_err(|e| format!("wasm-bindgen: {e}"))?;
    }
    drop(lock);
    let statics = root.join("web/static");
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&statics).map_err(|e| format!("{}: {e}", statics.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // The page's own files only: not the template, not editor droppings.
        if name.ends_with(".html")
            || name.starts_with('.')
            || !entry.file_type().is_ok_and(|t| t.is_file())
        {
            continue;
        }
        std::fs::copy(entry.path(), app.join(&name)).map_err(|e| format!("{name}: {e}"))?;
    }
    for entry in std::fs::read_dir(&app).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    let html = std::fs::read_to_string(statics.join("index.html"))
        .map_err(|e| format!("index.html: {e}"))?;
    let html = with_sri(&html, &app)?;
    std::fs::write(app.join("index.html"), &html).map_err(|e| e.to_string())?;
    names.push("index.html".into());
    names.sort();
    names.dedup();
    // The service worker's version: a digest of every other file, so that
    // a browser installs it again (and drops the files it kept) exactly
    // when the app changed.
    let mut digest = sha2::Sha256::new();
    for name in names.iter().filter(|n| n.as_str() != "sw.js") {
        let bytes = std::fs::read(app.join(name)).map_err(|e| format!("{name}: {e}"))?;
        digest.update(name.as_bytes());
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(&bytes);
    }
    let version = hex_of(&digest.finalize()[..8]);
    let sw = app.join("sw.js");
    if sw.exists() {
        let text = std::fs::read_to_string(&sw).map_err(|e| format!("sw.js: {e}"))?;
        std::fs::write(&sw, text.replace("{{app-version}}", &version))
            .map_err(|e| format!("sw.js: {e}"))?;
    }
    let gz = out.join("gz");
    let _ = std::fs::remove_dir_all(&gz);
    std::fs::create_dir_all(&gz).map_err(|e| format!("{}: {e}", gz.display()))?;
    let mut list = String::from("use super::{Asset, Body};\npub static ASSETS: &[Asset] = &[\n");
    for name in &names {
        let path = app.join(name);
        let bytes = std::fs::read(&path).map_err(|e| format!("{name}: {e}"))?;
        let tag = hex_of(&sha2::Sha256::digest(&bytes)[..16]);
        let body = |at: &Path, etag: String| {
            format!(
                "Body {{ bytes: include_bytes!({:?}), etag: {:?} }}",
                at.display().to_string(),
                format!("\"{etag}\"")
            )
        };
        let gzip = match gzipped(&bytes)? {
            Some(small) => {
                let at = gz.join(format!("{name}.gz"));
                std::fs::write(&at, small).map_err(|e| format!("{}: {e}", at.display()))?;
                format!("Some({})", body(&at, format!("{tag}-gz")))
            }
            None => "None".into(),
        };
        list.push_str(&format!(
            "    Asset {{ name: {name:?}, content_type: {:?}, plain: {}, gzip: {gzip} }},\n",
            content_type(name)?,
            body(&path, tag.clone())
        ));
    }
    list.push_str("];\n");
    std::fs::write(out.join("assets.rs"), list).map_err(|e| e.to_string())?;
    Ok(())
}

/// `bytes` gzipped, when that saves at least a tenth (text and WebAssembly
/// do; PNG is compressed already).
fn gzipped(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).map_err(|e| e.to_string())?;
    let small = enc.finish().map_err(|e| e.to_string())?;
    Ok((small.len() < bytes.len() / 10 * 9).then_some(small))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// `html` with every `{{sri:FILE}}` replaced by `sha384-…` of `dir/FILE`.
fn with_sri(html: &str, dir: &Path) -> Result<String, String> {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find("{{sri:") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 6..];
        let end = tail.find("}}").ok_or("unclosed {{sri:")?;
        let file = &tail[..end];
        let bytes = std::fs::read(dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
        let digest = sha2::Sha384::digest(&bytes);
        out.push_str("sha384-");
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(digest));
        rest = &tail[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn content_type(name: &str) -> Result<&'static str, String> {
    Ok(match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => return Err(format!("no content type for {name}")),
    })
}

/// Compiles `medseal-web` for wasm32 with `features`; answers the module.
fn compile_web(root: &Path, target_dir: &Path, features: &[&str]) -> Result<PathBuf, String> {
    let cargo = env("CARGO")?;
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--locked", "-p", "medseal-web"])
        .args(features)
        .args(["--target", "wasm32-unknown-unknown", "--target-dir"])
        .arg(target_dir);
    // The outer build's settings are for the host, not for wasm32.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        if var.starts_with("CARGO_PROFILE_") || var.starts_with("CARGO_TARGET_") {
            cmd.env_remove(var.as_ref());
        }
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("compiling medseal-web for wasm32-unknown-unknown failed (is the target installed? rustup target add wasm32-unknown-unknown)".into());
    }
    Ok(target_dir.join("wasm32-unknown-unknown/release/medseal_web.wasm"))
}

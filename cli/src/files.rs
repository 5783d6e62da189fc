//! Where bytes come from and go to: files, or `-` for stdin/stdout.
//!
//! Output files are written to a temporary file beside the destination and
//! renamed into place only on success, so a failure never leaves partial
//! output behind (and never clobbers an existing file with half a result).
//! Temporary and final files are created 0600: they may hold patient data.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A path argument where `-` means stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPath {
    /// Standard input.
    Stdin,
    /// A file.
    File(PathBuf),
}

impl From<&str> for InputPath {
    fn from(s: &str) -> Self {
        if s == "-" {
            InputPath::Stdin
        } else {
            InputPath::File(PathBuf::from(s))
        }
    }
}

impl fmt::Display for InputPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputPath::Stdin => f.write_str("standard input"),
            InputPath::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl InputPath {
    /// Opens for reading.
    pub fn open_raw(&self) -> Result<Box<dyn Read>> {
        Ok(match self {
            InputPath::Stdin => Box::new(io::stdin()),
            InputPath::File(p) => {
                let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
                if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                    bail!("{} is a directory", p.display());
                }
                Box::new(f)
            }
        })
    }

    /// Size in bytes, when it is a regular file.
    pub fn len(&self) -> Option<u64> {
        match self {
            InputPath::Stdin => None,
            InputPath::File(p) => std::fs::metadata(p)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
        }
    }

    /// Opens a regular file for positional access; `None` for stdin, pipes
    /// and devices, which must be streamed.
    pub fn open_regular(&self) -> Result<Option<File>> {
        let InputPath::File(p) = self else {
            return Ok(None);
        };
        let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
        let meta = f
            .metadata()
            .with_context(|| format!("cannot open {}", p.display()))?;
        if meta.is_dir() {
            bail!("{} is a directory", p.display());
        }
        Ok(meta.is_file().then_some(f))
    }

    /// The file path, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            InputPath::Stdin => None,
            InputPath::File(p) => Some(p),
        }
    }
}

/// Refuses to use stdin for two things at once.
pub fn check_one_stdin(uses: &[Option<&InputPath>]) -> Result<()> {
    if uses
        .iter()
        .flatten()
        .filter(|p| ***p == InputPath::Stdin)
        .count()
        > 1
    {
        return Err(crate::exit::UsageError(
            "standard input can be used for only one of the input and the secret".into(),
        )
        .into());
    }
    Ok(())
}

/// Where output goes: the `-o` given, stdout for stdin input, or a name
/// derived from the input by `derive` — which must not already exist, so
/// that an implicit name never overwrites a file.
pub fn output_name(
    explicit: Option<&str>,
    input: &InputPath,
    derive: impl FnOnce(&str) -> Option<String>,
) -> Result<String> {
    match (explicit, input) {
        (Some(o), _) => Ok(o.to_owned()),
        (None, InputPath::Stdin) => Ok("-".to_owned()),
        (None, InputPath::File(p)) => {
            let name = p.to_string_lossy();
            let Some(d) = derive(&name).filter(|d| !d.is_empty()) else {
                bail!("cannot derive an output name from {name}; name it with -o");
            };
            if Path::new(&d).exists() {
                bail!("{d} already exists; name the output with -o");
            }
            Ok(d)
        }
    }
}

/// A destination being written: stdout, or a temporary file that becomes the
/// real file on [`Output::commit`].
pub enum Output {
    /// Standard output (cannot be rolled back: callers must check the exit code).
    Stdout(BufWriter<io::StdoutLock<'static>>),
    /// An existing device, pipe or socket named with `-o` (`/dev/stdout`, a
    /// FIFO): written in place, like stdout, because renaming a file over it
    /// would replace the device itself.
    Special(File),
    /// A temporary file in the destination's directory.
    /// Written unbuffered: the sealer and opener write whole frames.
    File {
        tmp: medseal_files::PrivateFile,
        dest: PathBuf,
        /// Whether an existing file may be replaced.
        replace: bool,
    },
}

impl Output {
    /// Starts writing to `dest` (`-` for stdout). `input` is refused as a
    /// destination so that a file is never overwritten by its own transformation.
    pub fn create(dest: &str, input: &InputPath) -> Result<Self> {
        if dest == "-" {
            return Ok(Output::Stdout(BufWriter::with_capacity(
                1 << 20,
                io::stdout().lock(),
            )));
        }
        let dest = PathBuf::from(dest);
        if let Some(inp) = input.path()
            && same_file(inp, &dest)
        {
            bail!("the output {} is the input file", dest.display());
        }
        // The target itself, not through a symbolic link: a link named with
        // -o is replaced by the new file and what it pointed to is untouched.
        match std::fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() => bail!("the output {} is a directory", dest.display()),
            Ok(m) if !m.is_file() && !m.file_type().is_symlink() => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&dest)
                    .with_context(|| format!("cannot write {}", dest.display()))?;
                return Ok(Output::Special(f));
            }
            _ => {}
        }
        let tmp = medseal_files::PrivateFile::create_beside(&dest)
            // The error names the random temporary path; the directory is
            // what the user needs to hear about.
            .map_err(|e| io::Error::new(e.source.kind(), plain_io_message(&e.source)))
            .with_context(|| {
                format!(
                    "cannot create a file in {}",
                    dest.parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(Path::new("."))
                        .display()
                )
            })?;
        Ok(Output::File {
            tmp,
            dest,
            replace: true,
        })
    }

    /// Like [`Output::create`], but an existing file (or link) at `dest` is
    /// refused unless `force`, now and again at commit: a report already
    /// written, perhaps already sent, is not silently replaced.
    pub fn create_fresh(dest: &str, input: &InputPath, force: bool) -> Result<Self> {
        let exists = |p: &Path| {
            std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() || m.file_type().is_symlink())
        };
        if !force && dest != "-" && exists(Path::new(dest)) {
            bail!("{dest} already exists: choose another name, or give --force to replace it");
        }
        let mut out = Self::create(dest, input)?;
        if let Output::File { replace, .. } = &mut out {
            *replace = force;
        }
        Ok(out)
    }

    /// The temporary file, for positional writes.
    pub fn file(&self) -> Option<&File> {
        match self {
            Output::Stdout(_) | Output::Special(_) => None,
            Output::File { tmp, .. } => Some(tmp.as_file()),
        }
    }

    /// Flushes and, for a file, syncs and renames it into place.
    pub fn commit(self) -> Result<()> {
        match self {
            Output::Stdout(mut w) => w.flush().context("cannot write to standard output"),
            Output::Special(mut f) => f.flush().context("cannot write the output"),
            Output::File {
                tmp,
                dest,
                replace: true,
            } => tmp
                .commit()
                .map_err(|e| e.source)
                .with_context(|| format!("cannot write {}", dest.display())),
            Output::File {
                tmp,
                dest,
                replace: false,
            } => tmp.commit_new().map_err(|e| {
                if e.source.kind() == io::ErrorKind::AlreadyExists {
                    anyhow::anyhow!(
                        "{} appeared while this was written: nothing replaced; choose another name, or give --force",
                        dest.display()
                    )
                } else {
                    anyhow::Error::new(e.source)
                        .context(format!("cannot write {}", dest.display()))
                }
            }),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::Special(f) => f.write(buf),
            Output::File { tmp, .. } => tmp.as_file().write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.write_all(buf),
            Output::Special(f) => f.write_all(buf),
            Output::File { tmp, .. } => tmp.as_file().write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::Special(f) => f.flush(),
            Output::File { tmp, .. } => tmp.as_file().flush(),
        }
    }
}

/// The OS's text for an I/O error, without paths added by wrappers.
fn plain_io_message(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code).to_string(),
        None => e.kind().to_string(),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

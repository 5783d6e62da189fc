//! Streaming seal and open over any `Read` / `Write`, on every core.
//!
//! Chunks are independent, so the work parallelises: the calling thread reads
//! frames into a fixed pool of buffers and writes finished frames in order,
//! while worker threads encrypt-and-MAC (or verify-and-decrypt) in place.
//! Memory is the buffer pool — `2 × threads + 2` frames of at most 1 MiB —
//! whatever the size of the input. Neither the reader nor the writer needs to
//! be `Send`, so locked stdin/stdout work directly.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::{Mutex, mpsc};

use rand_core::{TryCryptoRng, TryRng};

use crate::chunk::{ChunkCodec, IV_LEN, max_frame_len};
use crate::error::{Error, Result};
use crate::header::{DEFAULT_CHUNK_LOG2, Header, KeyMode, SALT_LEN, ikm_for_sealing, read_full};
use crate::keys::{DEFAULT_PBKDF2_ITERATIONS, FileKeys, Key, PBKDF2_SALT_LEN, Secret};

/// What to seal with.
#[derive(Debug, Clone, Copy)]
pub enum SealKey<'a> {
    /// A per-report data key issued by a key server.
    KeyServer {
        /// Origin of the key server (`https://host[:port]`).
        origin: &'a str,
        /// The key id the server gave.
        key_id: &'a str,
        /// The 256-bit data key.
        key: &'a Key,
    },
    /// An organisation's static key.
    StaticKey {
        /// The key.
        key: &'a Key,
        /// Optional label recorded in the header (may be empty).
        key_id: &'a str,
    },
    /// A password; PBKDF2-HMAC-SHA256 with a fresh salt.
    Password {
        /// The password bytes.
        password: &'a [u8],
        /// Iterations; at least [`crate::MIN_PBKDF2_ITERATIONS`].
        iterations: u32,
    },
}

impl<'a> SealKey<'a> {
    /// Password mode with the default iteration count.
    pub fn password(password: &'a [u8]) -> Self {
        SealKey::Password {
            password,
            iterations: DEFAULT_PBKDF2_ITERATIONS,
        }
    }
}

/// Tuning for sealing.
#[derive(Debug, Clone)]
pub struct SealOptions {
    /// log2 of the chunk size ([`crate::MIN_CHUNK_LOG2`]..=[`crate::MAX_CHUNK_LOG2`]).
    pub chunk_log2: u8,
    /// Worker threads; `None` uses every available core.
    pub threads: Option<NonZeroUsize>,
}

impl Default for SealOptions {
    fn default() -> Self {
        SealOptions {
            chunk_log2: DEFAULT_CHUNK_LOG2,
            threads: None,
        }
    }
}

/// Tuning for opening.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Worker threads; `None` uses every available core.
    pub threads: Option<NonZeroUsize>,
}

/// What a seal produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSummary {
    /// Plaintext bytes consumed.
    pub plaintext_len: u64,
    /// Sealed bytes written, header included.
    pub sealed_len: u64,
    /// Number of chunks written.
    pub chunks: u64,
}

/// What an open produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSummary {
    /// Plaintext bytes written.
    pub plaintext_len: u64,
    /// Number of chunks verified.
    pub chunks: u64,
}

/// Seals `input` into `output` with randomness from the operating system.
pub fn seal<R: Read, W: Write>(
    key: SealKey<'_>,
    input: R,
    output: W,
    opts: &SealOptions,
) -> Result<SealSummary> {
    seal_with_rng(key, input, output, opts, &mut getrandom::SysRng)
}

/// Seals with a caller-supplied CSPRNG for salts and IVs. Deterministic RNGs
/// belong in test-vector generation only.
pub fn seal_with_rng<R: Read, W: Write, G: TryCryptoRng + ?Sized>(
    key: SealKey<'_>,
    mut input: R,
    mut output: W,
    opts: &SealOptions,
    rng: &mut G,
) -> Result<SealSummary> {
    let (header, codec) = prepare_seal(key, opts, rng)?;
    output.write_all(header.as_bytes())?;
    let chunk_size = header.chunk_size();

    let mut index = 0u64;
    let mut plaintext_len = 0u64;
    let mut sealed_len = header.as_bytes().len() as u64;
    let mut done = false;
    let produce = |mut buf: Vec<u8>| -> Result<Step> {
        if done {
            return Ok(Step::Done);
        }
        let n = read_full(&mut input, &mut buf[IV_LEN..IV_LEN + chunk_size])?;
        let last = n < chunk_size;
        done = last;
        rng.try_fill_bytes(&mut buf[..IV_LEN])
            .map_err(|_| Error::Random)?;
        plaintext_len += n as u64;
        let job = Job {
            index,
            last,
            len: n,
            buf,
        };
        index += 1;
        Ok(Step::Job(job))
    };
    let work = |job: &mut Job| codec.seal(job.index, job.last, &mut job.buf, job.len);
    let consume = |frame: &[u8]| -> Result<()> {
        sealed_len += frame.len() as u64;
        output.write_all(frame).map_err(Error::from)
    };
    let chunks = run_pipeline(
        worker_count(opts.threads),
        max_frame_len(chunk_size),
        produce,
        work,
        consume,
    )?;
    output.flush()?;
    Ok(SealSummary {
        plaintext_len,
        sealed_len,
        chunks,
    })
}

/// Sealing as a [`Write`]: for a producer that pushes its bytes (a bundle
/// writer) where no second thread can run the pulling [`seal`] beside it —
/// WebAssembly in a browser has one. The output is byte for byte what
/// [`seal`] makes of the same input with the same randomness: a full chunk
/// is never the last (an input that fills its last chunk exactly ends with
/// an empty final chunk, as [`seal`] ends it), so each chunk is sealed as
/// soon as it is full and one frame buffer is all the memory it needs.
///
/// Nothing is complete until [`SealWriter::finish`]: a writer dropped
/// before it leaves a file without its final chunk, which every opener
/// refuses as truncated.
pub struct SealWriter<W: Write> {
    codec: ChunkCodec,
    out: W,
    frame: Vec<u8>,
    filled: usize,
    chunk_size: usize,
    index: u64,
    plaintext_len: u64,
    sealed_len: u64,
}

impl<W: Write> SealWriter<W> {
    /// Writes the header of a new file to `out` and returns the writer for
    /// its plaintext; salts and IVs come from the operating system.
    pub fn new(key: SealKey<'_>, mut out: W, opts: &SealOptions) -> Result<Self> {
        let (header, codec) = prepare_seal(key, opts, &mut getrandom::SysRng)?;
        out.write_all(header.as_bytes())?;
        let chunk_size = header.chunk_size();
        Ok(SealWriter {
            codec,
            out,
            frame: vec![0u8; max_frame_len(chunk_size)],
            filled: 0,
            chunk_size,
            index: 0,
            plaintext_len: 0,
            sealed_len: header.as_bytes().len() as u64,
        })
    }

    fn seal_chunk(&mut self, last: bool) -> Result<()> {
        getrandom::SysRng
            .try_fill_bytes(&mut self.frame[..IV_LEN])
            .map_err(|_| Error::Random)?;
        let range = self
            .codec
            .seal(self.index, last, &mut self.frame, self.filled)?;
        self.out.write_all(&self.frame[range.clone()])?;
        self.sealed_len += range.len() as u64;
        self.plaintext_len += self.filled as u64;
        self.index += 1;
        self.filled = 0;
        Ok(())
    }

    /// The output as it is, without its final chunk: what a producer that
    /// gives up leaves behind, which no opener accepts.
    pub fn into_unfinished(self) -> W {
        self.out
    }

    /// Seals what is left as the final chunk, flushes, and returns the
    /// output with what was written.
    pub fn finish(mut self) -> Result<(W, SealSummary)> {
        self.seal_chunk(true)?;
        self.out.flush()?;
        let summary = SealSummary {
            plaintext_len: self.plaintext_len,
            sealed_len: self.sealed_len,
            chunks: self.index,
        };
        Ok((self.out, summary))
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.chunk_size - self.filled;
        let n = buf.len().min(room);
        let at = IV_LEN + self.filled;
        self.frame[at..at + n].copy_from_slice(&buf[..n]);
        self.filled += n;
        if self.filled == self.chunk_size {
            self.seal_chunk(false).map_err(std::io::Error::other)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Only whole chunks can be written; `finish` writes the rest.
        self.out.flush()
    }
}

/// Builds the header for a new file and the codec for its chunks, drawing
/// the salts from `rng`. Shared by the streaming and positional sealers.
pub(crate) fn prepare_seal<G: TryCryptoRng + ?Sized>(
    key: SealKey<'_>,
    opts: &SealOptions,
    rng: &mut G,
) -> Result<(Header, ChunkCodec)> {
    let mut fill = |buf: &mut [u8]| rng.try_fill_bytes(buf).map_err(|_| Error::Random);
    let (mode, secret) = match key {
        SealKey::KeyServer {
            origin,
            key_id,
            key,
        } => (
            KeyMode::KeyServer {
                origin: origin.to_owned(),
                key_id: key_id.to_owned(),
            },
            Secret::Key(key),
        ),
        SealKey::StaticKey { key, key_id } => (
            KeyMode::StaticKey {
                fingerprint: key.fingerprint(),
                key_id: key_id.to_owned(),
            },
            Secret::Key(key),
        ),
        SealKey::Password {
            password,
            iterations,
        } => {
            let mut salt = [0u8; PBKDF2_SALT_LEN];
            fill(&mut salt)?;
            (
                KeyMode::Password { iterations, salt },
                Secret::Password(password),
            )
        }
    };
    let mut salt = [0u8; SALT_LEN];
    fill(&mut salt)?;
    let ikm = ikm_for_sealing(&mode, secret)?;
    let keys = FileKeys::derive(&ikm, &salt);
    let header = Header::seal(mode, opts.chunk_log2, salt, &keys)?;
    let codec = ChunkCodec::new(keys, header.mac(), header.chunk_size());
    Ok((header, codec))
}

/// Opens a sealed stream: first the header (no key needed), then the body.
pub struct Opener<R> {
    header: Header,
    input: R,
}

impl<R: Read> Opener<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<Self> {
        let header = Header::read_from(&mut input)?;
        Ok(Opener { header, input })
    }

    /// Splits into the header and the reader positioned at the first chunk.
    pub(crate) fn into_parts(self) -> (Header, R) {
        (self.header, self.input)
    }

    /// The header, for choosing which secret to offer.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Authenticates the header with `secret`, then verifies and decrypts
    /// every chunk into `output`. Each chunk's plaintext is written only
    /// after its tag verified; on any error the caller must discard what was
    /// written (the CLI writes to a temporary file and renames on success).
    pub fn open<W: Write>(
        self,
        secret: Secret<'_>,
        mut output: W,
        opts: &OpenOptions,
    ) -> Result<OpenSummary> {
        let Opener { header, mut input } = self;
        let keys = header.unlock(secret)?;
        let chunk_size = header.chunk_size();
        let frame_len = max_frame_len(chunk_size);
        let codec = ChunkCodec::new(keys, header.mac(), chunk_size);

        // One frame of look-ahead: a frame is the last one iff nothing follows it.
        let mut pending: Option<Job> = None;
        let mut next_index = 0u64;
        let mut finished = false;
        let produce = |mut buf: Vec<u8>| -> Result<Step> {
            if finished {
                return Ok(Step::Done);
            }
            buf.resize(frame_len, 0);
            let n = read_full(&mut input, &mut buf)?;
            if n == 0 {
                finished = true;
                return match pending.take() {
                    Some(mut job) => {
                        job.last = true;
                        Ok(Step::Job(job))
                    }
                    None => Err(Error::TruncatedChunk { index: 0 }),
                };
            }
            buf.truncate(n);
            let job = Job {
                index: next_index,
                last: false,
                len: n,
                buf,
            };
            next_index += 1;
            Ok(match pending.replace(job) {
                Some(prev) => Step::Job(prev),
                None => Step::Again,
            })
        };
        let work = |job: &mut Job| codec.open(job.index, job.last, &mut job.buf[..job.len]);
        let mut plaintext_len = 0u64;
        let consume = |pt: &[u8]| -> Result<()> {
            plaintext_len += pt.len() as u64;
            output.write_all(pt).map_err(Error::from)
        };
        let chunks = run_pipeline(
            worker_count(opts.threads),
            frame_len,
            produce,
            work,
            consume,
        )?;
        output.flush()?;
        Ok(OpenSummary {
            plaintext_len,
            chunks,
        })
    }
}

/// Worker threads to use: as requested, else one per available core.
pub(crate) fn worker_count(requested: Option<NonZeroUsize>) -> usize {
    requested
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get)
}

/// A unit of work: one frame buffer and where it sits in the file.
struct Job {
    index: u64,
    last: bool,
    /// Plaintext length (sealing) or frame length (opening).
    len: usize,
    buf: Vec<u8>,
}

/// What the producer did with the buffer it was given.
enum Step {
    /// A job is ready for the workers.
    Job(Job),
    /// The buffer was kept (look-ahead); call again with another.
    Again,
    /// Input exhausted.
    Done,
}

type Finished = (u64, Result<Range<usize>>, Vec<u8>);

/// Runs `work` on `threads` workers over the jobs `produce` makes, handing
/// results to `consume` strictly in index order. Returns the number of jobs.
///
/// Reading and writing happen on the calling thread; it blocks on a worker
/// result only when no free buffer is left or the input is exhausted, so the
/// reader keeps the workers fed.
fn run_pipeline<P, F, C>(
    threads: usize,
    frame_len: usize,
    mut produce: P,
    work: F,
    mut consume: C,
) -> Result<u64>
where
    P: FnMut(Vec<u8>) -> Result<Step>,
    F: Fn(&mut Job) -> Result<Range<usize>> + Sync,
    C: FnMut(&[u8]) -> Result<()>,
{
    if threads <= 1 {
        return run_in_place(frame_len, produce, work, consume);
    }
    let mut free: Vec<Vec<u8>> = (0..2 * threads + 2).map(|_| vec![0u8; frame_len]).collect();
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let (done_tx, done_rx) = mpsc::channel::<Finished>();
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|scope| {
        // Moved in so that it is dropped when this closure returns, which is
        // what tells the workers to stop before the scope joins them.
        let job_tx = job_tx;
        for _ in 0..threads {
            let (job_rx, done_tx, work) = (&job_rx, done_tx.clone(), &work);
            scope.spawn(move || {
                loop {
                    // A poisoned lock means another worker panicked; stop quietly
                    // and let the missing result surface as an error below.
                    let next = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(mut job) = next else { return };
                    let result = work(&mut job);
                    if done_tx.send((job.index, result, job.buf)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);

        let mut input_done = false;
        let mut in_flight = 0usize;
        let mut next_out = 0u64;
        let mut reorder: BTreeMap<u64, (Result<Range<usize>>, Vec<u8>)> = BTreeMap::new();
        loop {
            while !input_done {
                let Some(buf) = free.pop() else { break };
                match produce(buf)? {
                    Step::Job(job) => {
                        if job_tx.send(job).is_err() {
                            return Err(worker_lost());
                        }
                        in_flight += 1;
                    }
                    Step::Again => {}
                    Step::Done => input_done = true,
                }
            }
            if in_flight == 0 {
                return Ok(next_out);
            }
            let (index, result, buf) = done_rx.recv().map_err(|_| worker_lost())?;
            in_flight -= 1;
            reorder.insert(index, (result, buf));
            while let Some((result, buf)) = reorder.remove(&next_out) {
                let range = result?;
                consume(&buf[range])?;
                free.push(buf);
                next_out += 1;
            }
        }
    })
}

/// [`run_pipeline`] with one worker, on the calling thread: no thread is
/// started, which is what a browser's WebAssembly (no threads) and
/// `--threads 1` need. Two buffers: the look-ahead frame and the next.
fn run_in_place<P, F, C>(frame_len: usize, mut produce: P, work: F, mut consume: C) -> Result<u64>
where
    P: FnMut(Vec<u8>) -> Result<Step>,
    F: Fn(&mut Job) -> Result<Range<usize>>,
    C: FnMut(&[u8]) -> Result<()>,
{
    let mut free: Vec<Vec<u8>> = vec![vec![0u8; frame_len]; 2];
    let mut done = 0u64;
    loop {
        let buf = free.pop().unwrap_or_else(|| vec![0u8; frame_len]);
        match produce(buf)? {
            Step::Job(mut job) => {
                let range = work(&mut job)?;
                consume(&job.buf[range])?;
                free.push(job.buf);
                done += 1;
            }
            Step::Again => {}
            Step::Done => return Ok(done),
        }
    }
}

fn worker_lost() -> Error {
    Error::Io(std::io::Error::other(
        "a worker thread stopped unexpectedly",
    ))
}

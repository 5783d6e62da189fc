//! Positional I/O: seal and open when input and output are seekable files.
//!
//! Every chunk's place is known in advance — plaintext chunk `i` starts at
//! `i × chunk_size`, sealed frame `i` at `header_len + i × frame_len` — so
//! each worker can read its own chunk, process it and write it back without
//! a shared reader or writer. That spreads the kernel's copying across all
//! cores instead of serialising it on one thread, which on a 2-core machine
//! is the difference between I/O-bound and crypto-bound.
//!
//! The crate still opens no files: callers hand in anything that implements
//! [`ReadAt`] / [`WriteAt`] (implemented here for `std::fs::File` on Unix).

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::chunk::{IV_LEN, max_frame_len};
use crate::error::{Error, Result};
use crate::keys::Secret;
use crate::stream::{
    OpenOptions, OpenSummary, Opener, SealKey, SealOptions, SealSummary, worker_count,
};

/// Reads at an absolute offset, from any thread.
pub trait ReadAt: Sync {
    /// Reads up to `buf.len()` bytes at `offset`; 0 means end of input.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Current size of the input in bytes.
    fn size(&self) -> io::Result<u64>;
}

/// Writes at an absolute offset, from any thread.
pub trait WriteAt: Sync {
    /// Writes up to `buf.len()` bytes at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
}

#[cfg(unix)]
impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

#[cfg(unix)]
impl WriteAt for std::fs::File {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::write_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
}

fn read_exact_at<I: ReadAt + ?Sized>(src: &I, mut buf: &mut [u8], mut offset: u64) -> Result<()> {
    while !buf.is_empty() {
        match src.read_at(buf, offset) {
            Ok(0) => return Err(changed()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn write_all_at<O: WriteAt + ?Sized>(dst: &O, mut buf: &[u8], mut offset: u64) -> Result<()> {
    while !buf.is_empty() {
        match dst.write_at(buf, offset) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn changed() -> Error {
    Error::Io(io::Error::other(
        "the input changed size while it was being read",
    ))
}

/// A `Read` cursor over a [`ReadAt`], used to read the header.
pub struct At<'a, I: ?Sized> {
    src: &'a I,
    pos: u64,
}

impl<'a, I: ReadAt + ?Sized> At<'a, I> {
    /// A cursor at offset 0.
    pub fn new(src: &'a I) -> Self {
        At { src, pos: 0 }
    }
}

impl<I: ReadAt + ?Sized> Read for At<'_, I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Runs `job(index, buffer)` for chunk indices `0..count` on `threads`
/// workers, each claiming the next index. On failure the others stop
/// claiming; every lower index was already claimed and finishes, so the
/// error reported is always that of the lowest failing chunk.
fn for_each_chunk<F>(threads: usize, count: u64, buf_len: usize, job: F) -> Result<()>
where
    F: Fn(u64, &mut [u8]) -> Result<()> + Sync,
{
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<(u64, Error)>> = Mutex::new(None);
    let threads = (threads as u64).clamp(1, count.max(1)) as usize;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut buf = vec![0u8; buf_len];
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    if let Err(e) = job(i, &mut buf) {
                        stop.store(true, Ordering::Relaxed);
                        if let Ok(mut slot) = first_error.lock()
                            && slot.as_ref().is_none_or(|(j, _)| i < *j)
                        {
                            *slot = Some((i, e));
                        }
                        break;
                    }
                }
            });
        }
    });
    match first_error.into_inner() {
        Ok(None) => Ok(()),
        Ok(Some((_, e))) => Err(e),
        Err(_) => Err(Error::Io(io::Error::other(
            "a worker thread stopped unexpectedly",
        ))),
    }
}

/// Seals `input` into `output` with positional I/O on every core.
///
/// `progress` is called with the number of plaintext bytes of each finished
/// chunk, from worker threads. The input must not change while it is sealed;
/// if its length changes, sealing fails.
pub fn seal_at<I, O>(
    key: SealKey<'_>,
    input: &I,
    output: &O,
    opts: &SealOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SealSummary>
where
    I: ReadAt + ?Sized,
    O: WriteAt + ?Sized,
{
    let (header, codec) = crate::stream::prepare_seal(key, opts, &mut getrandom::SysRng)?;
    let header_len = header.as_bytes().len() as u64;
    write_all_at(output, header.as_bytes(), 0)?;
    let len = input.size()?;
    let chunk = header.chunk_size() as u64;
    let frame = max_frame_len(header.chunk_size()) as u64;
    let chunks = len / chunk + 1;
    for_each_chunk(
        worker_count(opts.threads),
        chunks,
        frame as usize,
        |i, buf| {
            let last = i + 1 == chunks;
            let n = if last { len - i * chunk } else { chunk } as usize;
            read_exact_at(input, &mut buf[IV_LEN..IV_LEN + n], i * chunk)?;
            getrandom::fill(&mut buf[..IV_LEN]).map_err(|_| Error::Random)?;
            let range = codec.seal(i, last, buf, n)?;
            write_all_at(output, &buf[range], header_len + i * frame)?;
            progress(n as u64);
            Ok(())
        },
    )?;
    if input.size()? != len {
        return Err(changed());
    }
    let sealed_len = header_len
        + (chunks - 1) * frame
        + (crate::chunk::last_ciphertext_len((len % chunk) as usize) + crate::chunk::FRAME_OVERHEAD)
            as u64;
    Ok(SealSummary {
        plaintext_len: len,
        sealed_len,
        chunks,
    })
}

impl<'a, I: ReadAt + ?Sized> Opener<At<'a, I>> {
    /// Reads and checks the header of a positional input.
    pub fn at(input: &'a I) -> Result<Self> {
        Opener::new(At::new(input))
    }

    /// Like [`Opener::open`], but every worker reads its own frames and
    /// writes its own plaintext. Chunks are verified before their plaintext is
    /// written; on failure some later chunks may already be written, so the
    /// caller must discard `output` (as it must for [`Opener::open`]).
    pub fn open_at<O: WriteAt + ?Sized>(
        self,
        secret: Secret<'_>,
        output: &O,
        opts: &OpenOptions,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<OpenSummary> {
        let (header, reader) = self.into_parts();
        let input = reader.src;
        let keys = header.unlock(secret)?;
        let chunk = header.chunk_size() as u64;
        let frame = max_frame_len(header.chunk_size()) as u64;
        let header_len = header.as_bytes().len() as u64;
        let codec = crate::chunk::ChunkCodec::new(keys, header.mac(), header.chunk_size());
        let total = input.size()?;
        let body = total.saturating_sub(header_len);
        if body == 0 {
            return Err(Error::TruncatedChunk { index: 0 });
        }
        let chunks = body.div_ceil(frame);
        let last_frame = body - (chunks - 1) * frame;
        let plaintext_len = AtomicU64::new(0);
        for_each_chunk(
            worker_count(opts.threads),
            chunks,
            frame as usize,
            |i, buf| {
                let last = i + 1 == chunks;
                let n = if last { last_frame } else { frame } as usize;
                read_exact_at(input, &mut buf[..n], header_len + i * frame)?;
                let range: Range<usize> = codec.open(i, last, &mut buf[..n])?;
                write_all_at(output, &buf[range.clone()], i * chunk)?;
                plaintext_len.fetch_add(range.len() as u64, Ordering::Relaxed);
                progress(n as u64);
                Ok(())
            },
        )?;
        if input.size()? != total {
            return Err(changed());
        }
        Ok(OpenSummary {
            plaintext_len: plaintext_len.into_inner(),
            chunks,
        })
    }
}

//! Streamed sha256. `sha2` picks the SHA-NI instructions at run time where the CPU has them.
//! Files are read with positional reads (`pread`), so hashing a handle does not move its cursor
//! and the same handle can be handed to the engine afterwards.

use std::{
    fs::File,
    io::{self, Write},
    os::unix::fs::FileExt,
    sync::atomic::{AtomicUsize, Ordering},
};

use sha2::{Digest, Sha256};

/// A file's digest and the number of bytes hashed.
pub type HashResult = io::Result<([u8; 32], u64)>;

/// Read size: large enough to amortise syscalls, small enough to stay in L2.
pub const READ_SIZE: usize = 1 << 20;

/// Progress of hashing, so a CLI can draw bars. Calls for different files may interleave (files
/// are hashed in parallel); `label` says which file.
pub trait Progress: Sync {
    fn start(&self, _label: &str, _total: u64) {}
    fn advance(&self, _label: &str, _bytes: u64) {}
    fn finish(&self, _label: &str) {}
}

/// Progress that draws nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// sha256 of a whole file read through `file` from offset 0; returns the digest and the number of
/// bytes hashed.
pub fn sha256_file(file: &File, progress: &dyn Progress) -> HashResult {
    sha256_file_labeled(file, "", progress)
}

pub(crate) fn sha256_file_labeled(file: &File, label: &str, progress: &dyn Progress) -> HashResult {
    let total = file.metadata()?.len();
    progress.start(label, total);
    let hashed = hash_range(file, 0, u64::MAX, label, progress);
    progress.finish(label);
    hashed
}

/// sha256 of bytes `start..end` of `file`; `None` if the file ends before `end`.
pub fn sha256_range(file: &File, start: u64, end: u64) -> io::Result<Option<[u8; 32]>> {
    let (digest, n) = hash_range(file, start, end, "", &NoProgress)?;
    Ok((n == end - start).then_some(digest))
}

/// The one hashing loop: positional reads from `start` until `end` or the end of the file.
fn hash_range(
    file: &File,
    start: u64,
    end: u64,
    label: &str,
    progress: &dyn Progress,
) -> HashResult {
    let mut hasher = Sha256::new();
    let len = end.saturating_sub(start);
    let mut buf = vec![0u8; (READ_SIZE as u64).min(len).max(1) as usize];
    let mut offset = start;
    while offset < end {
        let want = ((end - offset) as usize).min(buf.len());
        let n = match file.read_at(&mut buf[..want], offset) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        offset += n as u64;
        progress.advance(label, n as u64);
    }
    Ok((hasher.finalize().into(), offset - start))
}

/// Hash several files in parallel (one thread per file, at most `threads`).
pub fn sha256_files(
    files: &[(&str, &File)],
    threads: usize,
    progress: &dyn Progress,
) -> Vec<HashResult> {
    let threads = threads.max(1).min(files.len().max(1));
    if threads == 1 {
        return files
            .iter()
            .map(|(l, f)| sha256_file_labeled(f, l, progress))
            .collect();
    }
    parallel_map(files, threads, |(label, f)| {
        sha256_file_labeled(f, label, progress)
    })
    .into_iter()
    .map(|r| r.unwrap_or_else(|| Err(io::Error::other("hashing thread panicked"))))
    .collect()
}

/// Runs `f` over `items` on up to `threads` scoped threads, each taking the next item; results
/// come back in input order (`None` where a thread panicked).
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<Option<R>> {
    let threads = threads.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<R>> = items.iter().map(|_| None).collect();
    let collected = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect::<Vec<_>>()
    });
    for (i, r) in collected {
        results[i] = Some(r);
    }
    results
}

/// A `Write` adapter that hashes and counts what passes through it, for pullers that hash while
/// downloading.
pub struct Sha256Writer<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Sha256Writer<W> {
    pub fn new(inner: W) -> Self {
        Sha256Writer {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hasher.finalize().into(), self.written)
    }
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_and_known_digest() {
        let mut f = tempfile::tempfile().unwrap();
        let (d, n) = sha256_file(&f, &NoProgress).unwrap();
        assert_eq!(hex::encode(d), EMPTY);
        assert_eq!(n, 0);
        f.write_all(b"abc").unwrap();
        let (d, n) = sha256_file(&f, &NoProgress).unwrap();
        assert_eq!(
            hex::encode(d),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(n, 3);
    }

    #[test]
    fn hashing_keeps_the_cursor() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![7u8; 3 * READ_SIZE + 5]).unwrap();
        f.seek(SeekFrom::Start(1)).unwrap();
        let (d, n) = sha256_file(&f, &NoProgress).unwrap();
        assert_eq!(n, 3 * READ_SIZE as u64 + 5);
        assert_eq!(
            d,
            <[u8; 32]>::from(Sha256::digest(vec![7u8; 3 * READ_SIZE + 5]))
        );
        let mut b = [0u8; 1];
        f.read_exact(&mut b).unwrap();
        assert_eq!(f.stream_position().unwrap(), 2);
    }

    #[test]
    fn parallel_matches_serial() {
        let files: Vec<File> = (0..5u8)
            .map(|i| {
                let mut f = tempfile::tempfile().unwrap();
                f.write_all(&vec![i; 1000 + i as usize]).unwrap();
                f
            })
            .collect();
        let list: Vec<(&str, &File)> = files.iter().map(|f| ("x", f)).collect();
        let par = sha256_files(&list, 3, &NoProgress);
        for (f, r) in files.iter().zip(par) {
            assert_eq!(r.unwrap(), sha256_file(f, &NoProgress).unwrap());
        }
    }

    #[test]
    fn writer_hashes_what_passes() {
        let mut w = Sha256Writer::new(Vec::new());
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        let (inner, d, n) = w.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(n, 3);
        assert_eq!(
            hex::encode(d),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

//! The memory packed weights live in: chunks backed by 2 MiB pages where the OS gives them,
//! each shared by the matrices packed one after another into it.
//!
//! Decoding reads every weight once a token, so how the weights are mapped matters as well as
//! how they are laid out: streamed from 4 KiB pages, the reads take a TLB miss every 4 KiB.
//! Linux backs memory with 2 MiB pages only where asked (`madvise`, the common default) and
//! only in whole aligned 2 MiB stretches. Most matrices are smaller than that (Gemma 3 270M's
//! layers hold 0.1–1.1 MB each), so each allocated on its own sat on small pages; cut from
//! shared chunks, they are on large ones.

use std::sync::{Arc, Mutex, Weak};

/// The large page size asked for (x86-64's and most ARM64 kernels').
const HUGE: usize = 2 << 20;
/// The size of a chunk, unless one matrix needs more. Only the pages written are resident, so a
/// chunk's unused end costs address space, not memory: one partly written large page each,
/// which with 64 MiB chunks added 14 MiB to the 1.7B shape's peak RSS (1076 -> 1090 MiB).
const CHUNK: usize = 256 << 20;
/// Every matrix starts on a cache line, so that the kernels' 32- and 64-byte loads never
/// straddle two.
const LINE: usize = 64;

/// Zeroed memory, 2 MiB-aligned and asked to be backed by 2 MiB pages (on Unix), released
/// when the last matrix cut from it is dropped.
pub(crate) struct Chunk {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: a chunk is plain memory; who may write which bytes is decided by its users (each
// region has one owner, see `packed::Aligned`).
unsafe impl Send for Chunk {}
// SAFETY: as above.
unsafe impl Sync for Chunk {}

impl Chunk {
    /// `len` zeroed bytes (at least one line), untouched until written.
    pub(crate) fn new(len: usize) -> Chunk {
        let len = len.max(LINE).next_multiple_of(LINE);
        Chunk {
            ptr: os::map(len),
            len,
        }
    }

    /// The first byte; the chunk holds `len()` bytes from it.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        os::unmap(self.ptr, self.len);
    }
}

/// The chunk matrices are being cut from, and how far. Held weakly: once every matrix in it is
/// dropped (a model unloaded), so is the chunk, and the next matrix starts a new one.
static CURRENT: Mutex<Option<(Weak<Chunk>, usize)>> = Mutex::new(None);

/// Starts the next matrix on a fresh chunk, so that one model's matrices share no chunk with
/// another's: unloading a model then frees all of its memory.
pub(crate) fn new_model() {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// `len` zeroed bytes for one matrix: the chunk they lie in and their offset, a multiple of
/// [`LINE`]. No other call is given any of those bytes.
pub(crate) fn take(len: usize) -> (Arc<Chunk>, usize) {
    let len = len.max(1).next_multiple_of(LINE);
    // A poisoned lock only means a panic elsewhere while it was held; the state is two values
    // written together, still consistent.
    let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((chunk, used)) = current.as_mut() {
        if let Some(chunk) = chunk.upgrade().filter(|c| c.len() - *used >= len) {
            let start = *used;
            *used += len;
            return (chunk, start);
        }
    }
    let chunk = Arc::new(Chunk::new(len.max(CHUNK)));
    *current = Some((Arc::downgrade(&chunk), len));
    (chunk, 0)
}

#[cfg(unix)]
#[allow(unsafe_code)]
mod os {
    use super::HUGE;
    use std::ptr::NonNull;

    /// Maps `len` bytes of zeroed anonymous memory at a 2 MiB boundary and asks for large pages
    /// before anything touches them; aborts as a failed allocation does if the OS refuses.
    pub(super) fn map(len: usize) -> NonNull<u8> {
        let span = len + HUGE;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            let layout = std::alloc::Layout::from_size_align(len, HUGE)
                .unwrap_or(std::alloc::Layout::new::<u8>());
            std::alloc::handle_alloc_error(layout);
        }
        let raw = raw as usize;
        let start = raw.next_multiple_of(HUGE);
        // SAFETY: both stretches lie inside the mapping just made, before and after the
        // `len` bytes kept, and nothing refers to them.
        unsafe {
            if start > raw {
                libc::munmap(raw as *mut libc::c_void, start - raw);
            }
            let end = start + len;
            let tail = raw + span - end;
            if tail > 0 {
                libc::munmap(end as *mut libc::c_void, tail);
            }
        }
        #[cfg(target_os = "linux")]
        // SAFETY: advice on pages of this mapping; it changes how they are backed, never what
        // they hold. Refused advice (no transparent huge pages) leaves small pages.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        NonNull::new(start as *mut u8).expect("mmap never maps address zero")
    }

    pub(super) fn unmap(ptr: NonNull<u8>, len: usize) {
        // SAFETY: `ptr..ptr + len` is a mapping made by `map` and no longer referred to.
        unsafe {
            libc::munmap(ptr.as_ptr() as *mut libc::c_void, len);
        }
    }
}

/// Elsewhere the allocator's zeroed memory, on cache lines: a larger alignment would make the
/// standard library write the zeros itself, making every page of a chunk resident.
#[cfg(not(unix))]
#[allow(unsafe_code)]
mod os {
    use super::LINE;
    use std::alloc::Layout;
    use std::ptr::NonNull;

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, LINE).expect("a chunk's size fits a layout")
    }

    pub(super) fn map(len: usize) -> NonNull<u8> {
        // SAFETY: `layout` has a non-zero size (a chunk holds at least a line).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout(len)) };
        NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout(len)))
    }

    pub(super) fn unmap(ptr: NonNull<u8>, len: usize) {
        // SAFETY: allocated by `map` with this same layout and no longer referred to.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout(len)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_do_not_overlap_and_start_on_lines() {
        let taken: Vec<(Arc<Chunk>, usize, usize)> = [1, 64, 100, 3 << 20, 0, 4096]
            .into_iter()
            .map(|len| {
                let (chunk, start) = take(len);
                (chunk, start, len)
            })
            .collect();
        let span = |(chunk, start, len): &(Arc<Chunk>, usize, usize)| {
            let at = chunk.as_ptr() as usize + start;
            at..at + (*len).max(1)
        };
        for (i, a) in taken.iter().enumerate() {
            assert_eq!(a.1 % LINE, 0);
            #[cfg(unix)]
            assert_eq!(
                a.0.as_ptr() as usize % HUGE,
                0,
                "chunks start on a large page"
            );
            assert!(a.1 + a.2 <= a.0.len());
            for b in &taken[i + 1..] {
                let (a, b) = (span(a), span(b));
                assert!(a.end <= b.start || b.end <= a.start, "regions overlap");
            }
        }
    }

    #[test]
    fn a_new_model_starts_a_new_chunk() {
        let (first, _) = take(64);
        new_model();
        let (next, _) = take(64);
        assert!(
            !Arc::ptr_eq(&first, &next),
            "two models' matrices shared a chunk"
        );
    }

    #[test]
    fn a_chunk_is_zeroed_and_freed_with_its_last_region() {
        let (chunk, start) = take(CHUNK + 1);
        assert_eq!(start, 0, "a region larger than a chunk gets its own");
        // SAFETY: the region is this test's alone, `CHUNK + 1` bytes from `start`.
        #[allow(unsafe_code)]
        let bytes = unsafe { std::slice::from_raw_parts(chunk.as_ptr().add(start), CHUNK + 1) };
        assert!(bytes.iter().all(|&b| b == 0));
        let weak = Arc::downgrade(&chunk);
        drop(chunk);
        assert!(weak.upgrade().is_none());
    }
}

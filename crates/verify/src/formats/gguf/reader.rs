//! A buffered positional reader over a [`ByteSource`] that never reads past the end it was given.

use super::{GgufError, MAX_HEADER_BYTES};
use crate::formats::ByteSource;

/// Header fields are small and many, so reads go through a buffer of this size.
const BUF: usize = 1 << 18;

pub(super) struct Reader<'a, S: ByteSource + ?Sized> {
    src: &'a S,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a, S: ByteSource + ?Sized> Reader<'a, S> {
    pub(super) fn new(src: &'a S, end: u64) -> Self {
        Reader {
            src,
            pos: 0,
            end,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// The offset of the next byte to read.
    pub(super) fn pos(&self) -> u64 {
        self.pos
    }

    pub(super) fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// Refuse a header that has grown past [`MAX_HEADER_BYTES`]; checked after every entry so a
    /// file cannot make us walk gigabytes of metadata.
    pub(super) fn check_header_size(&self) -> Result<(), GgufError> {
        if self.pos > MAX_HEADER_BYTES {
            return Err(GgufError::HeaderTooLarge);
        }
        Ok(())
    }

    fn bytes(&mut self, n: u64, ctx: &'static str) -> Result<Vec<u8>, GgufError> {
        // Checked before allocating: `n` comes from the file.
        if n > self.remaining() {
            return Err(GgufError::UnexpectedEof(ctx));
        }
        let mut out = vec![0u8; n as usize];
        self.fill(&mut out, ctx)?;
        Ok(out)
    }

    #[inline]
    pub(super) fn fill(&mut self, out: &mut [u8], ctx: &'static str) -> Result<(), GgufError> {
        // Fast path: the bytes are already buffered.
        if self.pos >= self.buf_start {
            let off = (self.pos - self.buf_start) as usize;
            if let Some(src) = off
                .checked_add(out.len())
                .and_then(|end| self.buf.get(off..end))
            {
                out.copy_from_slice(src);
                self.pos += out.len() as u64;
                return Ok(());
            }
        }
        self.fill_slow(out, ctx)
    }

    fn fill_slow(&mut self, out: &mut [u8], ctx: &'static str) -> Result<(), GgufError> {
        let n = out.len() as u64;
        if n > self.remaining() {
            return Err(GgufError::UnexpectedEof(ctx));
        }
        let mut done = 0usize;
        while done < out.len() {
            let in_buf =
                self.pos >= self.buf_start && self.pos < self.buf_start + self.buf.len() as u64;
            if !in_buf {
                if out.len() - done >= BUF {
                    // Large reads bypass the buffer.
                    self.src.read_exact_at(&mut out[done..], self.pos)?;
                    self.pos += (out.len() - done) as u64;
                    return Ok(());
                }
                let len = (self.end - self.pos).min(BUF as u64) as usize;
                self.buf.resize(len, 0);
                self.src.read_exact_at(&mut self.buf, self.pos)?;
                self.buf_start = self.pos;
            }
            let off = (self.pos - self.buf_start) as usize;
            let take = (self.buf.len() - off).min(out.len() - done);
            out[done..done + take].copy_from_slice(&self.buf[off..off + take]);
            done += take;
            self.pos += take as u64;
        }
        Ok(())
    }

    pub(super) fn arr<const N: usize>(&mut self, ctx: &'static str) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.fill(&mut b, ctx)?;
        Ok(b)
    }
    pub(super) fn u8(&mut self, ctx: &'static str) -> Result<u8, GgufError> {
        Ok(self.arr::<1>(ctx)?[0])
    }
    pub(super) fn u32(&mut self, ctx: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.arr(ctx)?))
    }
    pub(super) fn u64(&mut self, ctx: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.arr(ctx)?))
    }

    /// A string's length prefix, checked against `limit` and against the bytes left.
    pub(super) fn string_len(&mut self, limit: u64, ctx: &'static str) -> Result<u64, GgufError> {
        let len = self.u64(ctx)?;
        if len > limit {
            return Err(GgufError::StringTooLong { len, limit });
        }
        if len > self.remaining() {
            return Err(GgufError::UnexpectedEof(ctx));
        }
        Ok(len)
    }

    pub(super) fn string(&mut self, limit: u64, ctx: &'static str) -> Result<String, GgufError> {
        let len = self.string_len(limit, ctx)?;
        String::from_utf8(self.bytes(len, ctx)?).map_err(|_| GgufError::InvalidUtf8)
    }
}

//! Weight formats: detection from magic bytes (and agreement with the file extension), and strict
//! header validators for the two formats candor loads. Pickle-based checkpoints are refused
//! outright: unpickling runs code chosen by whoever wrote the file.

pub mod gguf;
pub mod safetensors;

use std::{fs::File, io, os::unix::fs::FileExt};

use serde::Serialize;

use crate::manifest::FileFormat;

/// Something with a size that can be read at an offset: a byte slice or a file handle.
pub trait ByteSource {
    fn size(&self) -> io::Result<u64>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ByteSource for [u8] {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let src = self.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ByteSource for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectedFormat {
    Gguf,
    Safetensors,
    /// Anything else that is not a refused format (text, JSON, tokenizer files…).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("GGUF: {0}")]
    Gguf(#[from] gguf::GgufError),
    #[error("split GGUF: {0}")]
    GgufSplit(#[from] gguf::split::SplitError),
    #[error("safetensors: {0}")]
    Safetensors(#[from] safetensors::SafetensorsError),
    #[error("safetensors index: {0}")]
    SafetensorsIndex(#[from] safetensors::IndexError),
    #[error("{0} is a Python pickle; loading a pickle runs code chosen by its author, so candor refuses it (convert it to safetensors or GGUF)")]
    Pickle(&'static str),
    #[error("legacy GGML/GGJT file; only GGUF is supported (convert it with llama.cpp)")]
    LegacyGgml,
    #[error("zip archive ({0}); PyTorch checkpoints are pickles and are refused")]
    Zip(&'static str),
    #[error("the name says {expected} but the content is {found}")]
    ExtensionMismatch {
        expected: &'static str,
        found: &'static str,
    },
    #[error("not a GGUF or safetensors file")]
    UnknownWeights,
    #[error("read error: {0}")]
    Io(String),
}

impl From<io::Error> for FormatError {
    fn from(e: io::Error) -> Self {
        FormatError::Io(e.to_string())
    }
}

const PICKLE_EXTS: &[&str] = &["bin", "pt", "pth", "ckpt", "pkl", "pickle", "joblib"];

fn content_name(head: &[u8]) -> &'static str {
    if head.starts_with(b"GGUF") {
        "GGUF"
    } else if looks_like_safetensors(head) {
        "safetensors"
    } else if is_pickle(head) {
        "a pickle"
    } else if head.starts_with(b"PK\x03\x04") {
        "a zip archive"
    } else {
        "something else"
    }
}

/// A file named (or listed) as one weights format whose content is something else.
fn mismatch(expected: &'static str, head: &[u8]) -> FormatError {
    FormatError::ExtensionMismatch {
        expected,
        found: content_name(head),
    }
}

fn looks_like_safetensors(head: &[u8]) -> bool {
    head.len() >= 9 && head[8] == b'{'
}

fn is_pickle(head: &[u8]) -> bool {
    head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1])
}

/// Detect the format from the first bytes (at least 16 when the file has them) and the file
/// name's extension, which must agree with the content for weight formats.
pub fn detect_format(head: &[u8], file_name: &str) -> Result<DetectedFormat, FormatError> {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if head.starts_with(b"lmgg") || head.starts_with(b"fmgg") || head.starts_with(b"tjgg") {
        return Err(FormatError::LegacyGgml);
    }
    if head.starts_with(b"PK\x03\x04") {
        let torch = head.windows(8).any(|w| w == b"data.pkl");
        return Err(FormatError::Zip(if torch {
            "PyTorch checkpoint with data.pkl"
        } else {
            "unknown contents"
        }));
    }
    if is_pickle(head) {
        return Err(FormatError::Pickle("the file"));
    }
    if PICKLE_EXTS.contains(&ext.as_str()) {
        return Err(FormatError::Pickle("a .bin/.pt/.pth/.ckpt/.pkl file"));
    }
    let found = if head.starts_with(b"GGUF") {
        DetectedFormat::Gguf
    } else if looks_like_safetensors(head) {
        DetectedFormat::Safetensors
    } else {
        DetectedFormat::Other
    };
    match (ext.as_str(), found) {
        ("gguf", DetectedFormat::Gguf) | ("safetensors", DetectedFormat::Safetensors) => Ok(found),
        ("gguf", _) => Err(mismatch("GGUF", head)),
        ("safetensors", _) => Err(mismatch("safetensors", head)),
        _ => Ok(found),
    }
}

/// A validated weights header.
#[derive(Debug, Clone)]
pub enum Header {
    Gguf(gguf::GgufHeader),
    Safetensors(safetensors::SafetensorsHeader),
}

/// Detect and validate a weights file read through `src`. `expected` is the manifest's format.
pub fn validate_weights<S: ByteSource + ?Sized>(
    src: &S,
    file_name: &str,
    expected: Option<FileFormat>,
) -> Result<Header, FormatError> {
    let size = src.size()?;
    let mut head = [0u8; 64];
    let n = size.min(head.len() as u64) as usize;
    src.read_exact_at(&mut head[..n], 0)?;
    let found = detect_format(&head[..n], file_name)?;
    match (found, expected) {
        (DetectedFormat::Gguf, None | Some(FileFormat::Gguf)) => {
            Ok(Header::Gguf(gguf::GgufHeader::read(src)?))
        }
        (DetectedFormat::Safetensors, None | Some(FileFormat::Safetensors)) => Ok(
            Header::Safetensors(safetensors::SafetensorsHeader::read(src)?),
        ),
        (_, Some(FileFormat::Gguf)) => Err(mismatch("GGUF", &head[..n])),
        (_, Some(FileFormat::Safetensors)) => Err(mismatch("safetensors", &head[..n])),
        _ => Err(FormatError::UnknownWeights),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // P1: pickles and zips are refused whatever their name.
    #[test]
    fn pickle_and_zip_refused() {
        let pickles: [(&[u8], &str); 3] = [
            (b"\x80\x02}q\x00", "model.safetensors"),
            (b"\x80\x04\x95", "x"),
            (b"(dp0\nS'a'\n", "pytorch_model.bin"),
        ];
        for (bytes, name) in pickles {
            let got = detect_format(bytes, name);
            assert!(
                matches!(got, Err(FormatError::Pickle(_))),
                "{name}: {got:?}"
            );
        }
        let zips: [(&[u8], &str); 2] = [
            (b"PK\x03\x04\x14\x00\x00\x00archive/data.pkl", "m.pt"),
            (b"PK\x03\x04", "m.zip"),
        ];
        for (bytes, name) in zips {
            let got = detect_format(bytes, name);
            assert!(matches!(got, Err(FormatError::Zip(_))), "{name}: {got:?}");
        }
    }

    // G16: legacy magic, and a .gguf name with other content.
    #[test]
    fn legacy_and_mismatched_names() {
        assert!(matches!(
            detect_format(b"tjgg\x01\x00\x00\x00", "m.gguf"),
            Err(FormatError::LegacyGgml)
        ));
        assert!(matches!(
            detect_format(b"lmgg", "m.bin"),
            Err(FormatError::LegacyGgml)
        ));
        let st = b"\x02\x00\x00\x00\x00\x00\x00\x00{}";
        assert!(matches!(
            detect_format(st, "m.gguf"),
            Err(FormatError::ExtensionMismatch {
                expected: "GGUF",
                found: "safetensors"
            })
        ));
        assert!(matches!(
            detect_format(b"GGUF\x03\x00\x00\x00", "m.safetensors"),
            Err(FormatError::ExtensionMismatch {
                expected: "safetensors",
                found: "GGUF"
            })
        ));
        assert_eq!(
            detect_format(b"GGUF\x03\x00\x00\x00", "m.gguf").unwrap(),
            DetectedFormat::Gguf
        );
        assert_eq!(
            detect_format(st, "model.safetensors").unwrap(),
            DetectedFormat::Safetensors
        );
        assert_eq!(
            detect_format(b"{\"a\":1}", "config.json").unwrap(),
            DetectedFormat::Other
        );
    }
}

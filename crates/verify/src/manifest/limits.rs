//! The schema version this candor reads and the largest manifest (or profile) it reads.

/// The manifest schema version this candor reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Manifests are small; a larger file is refused before it is parsed.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 1 << 20;

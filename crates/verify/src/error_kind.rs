//! The class of an error or a finding: what the CLI maps to its exit code. A leaf module, so
//! that every error type can name its class without importing the crate's `Error`.

/// The class of an error or a finding, which the CLI maps to its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Hash or size mismatch, missing or extra file, unsafe file, file changed after verification.
    Integrity,
    /// Refused by license, openness or policy (also: unlisted model, license not accepted).
    Refused,
    /// Malformed or unsupported model file.
    Malformed,
    /// Anything the environment did wrong (I/O).
    Io,
    /// A bad manifest, policy or argument: the user has something to fix before we can judge.
    Usage,
}

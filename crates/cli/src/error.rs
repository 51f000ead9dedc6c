//! Errors the CLI raises itself, and the mapping of every error to an exit code.

use std::fmt;

/// An error with a chosen exit code and, where known, what to do about it.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
    pub fn integrity(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
        }
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            code: 4,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// 0 success, 1 runtime, 2 usage, 3 integrity, 4 refused, 5 malformed model.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return e.code;
        }
        if let Some(e) = cause.downcast_ref::<candor_verify::Error>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<candor_engine::Error>() {
            return match e.kind() {
                candor_engine::ErrorKind::Model => 5,
                candor_engine::ErrorKind::Request => 2,
                candor_engine::ErrorKind::Runtime => match e {
                    candor_engine::Error::ChangedAfterVerification { .. } => 3,
                    _ => 1,
                },
            };
        }
        if cause.downcast_ref::<clap::Error>().is_some() {
            return 2;
        }
    }
    1
}

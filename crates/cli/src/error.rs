//! Exit codes, and the errors the CLI raises itself. [`ExitCode`] is the one list of codes: the
//! help text is generated from it and a test holds the README's table to it.

use candor_verify::{ErrorKind, Outcome, Report};
use std::fmt;

/// What `candor` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    Runtime = 1,
    Usage = 2,
    Integrity = 3,
    Refused = 4,
    Malformed = 5,
}

impl ExitCode {
    pub const ALL: [ExitCode; 6] = [
        ExitCode::Success,
        ExitCode::Runtime,
        ExitCode::Usage,
        ExitCode::Integrity,
        ExitCode::Refused,
        ExitCode::Malformed,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// What the code means, as the help text and the README say it.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Success => "success",
            ExitCode::Runtime => "runtime error",
            ExitCode::Usage => "usage error (bad arguments, manifest or policy file, empty prompt)",
            ExitCode::Integrity => "integrity failure: hash or size mismatch, missing or extra file, bad signature, file changed after verification",
            ExitCode::Refused => "refused by license, openness or policy (unlisted model without `--allow-unlisted`, license not accepted, level below the policy's minimum)",
            ExitCode::Malformed => "malformed or unsupported model file (including pickle checkpoints, which are never loaded)",
        }
    }

    /// The code for a verification that did not allow the model.
    pub fn of_outcome(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Allowed => ExitCode::Success,
            Outcome::IntegrityFailure => ExitCode::Integrity,
            Outcome::Malformed => ExitCode::Malformed,
            Outcome::Refused => ExitCode::Refused,
        }
    }

    fn of_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Io => ExitCode::Runtime,
            ErrorKind::Usage => ExitCode::Usage,
            ErrorKind::Integrity => ExitCode::Integrity,
            ErrorKind::Refused => ExitCode::Refused,
            ErrorKind::Malformed => ExitCode::Malformed,
        }
    }

    /// The code for an error: the first cause in its chain that names one.
    pub fn of(err: &anyhow::Error) -> Self {
        for cause in err.chain() {
            if let Some(e) = cause.downcast_ref::<CliError>() {
                return e.code;
            }
            if let Some(r) = cause.downcast_ref::<Refusal>() {
                return ExitCode::of_outcome(r.0.decision.outcome);
            }
            if let Some(e) = cause.downcast_ref::<candor_verify::Error>() {
                return ExitCode::of_kind(e.kind());
            }
            if let Some(e) = cause.downcast_ref::<candor_engine::Error>() {
                return match e.kind() {
                    candor_engine::ErrorKind::Model => ExitCode::Malformed,
                    candor_engine::ErrorKind::Request => ExitCode::Usage,
                    candor_engine::ErrorKind::Runtime => match e {
                        candor_engine::Error::ChangedAfterVerification { .. } => {
                            ExitCode::Integrity
                        }
                        _ => ExitCode::Runtime,
                    },
                };
            }
            if cause.downcast_ref::<clap::Error>().is_some() {
                return ExitCode::Usage;
            }
        }
        ExitCode::Runtime
    }

    /// The "Exit codes:" block of `candor --help`.
    pub fn help() -> String {
        let mut s = String::from("Exit codes:\n");
        for c in ExitCode::ALL {
            s.push_str(&format!("  {}  {}\n", c.code(), c.meaning()));
        }
        s
    }
}

/// An error with a chosen exit code and, where known, what to do about it.
#[derive(Debug)]
pub struct CliError {
    pub code: ExitCode,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Usage,
            message: message.into(),
        }
    }
    pub fn integrity(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Integrity,
            message: message.into(),
        }
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Refused,
            message: message.into(),
        }
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Runtime,
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

/// A model verification did not allow, carried up to `main`, which prints each reason and its
/// fix and exits with the outcome's code.
#[derive(Debug)]
pub struct Refusal(pub Box<Report>);

impl Refusal {
    /// "integrity check failed", "refused", "malformed model file".
    pub fn title(&self) -> &'static str {
        match self.0.decision.outcome {
            Outcome::IntegrityFailure => "integrity check failed",
            Outcome::Malformed => "malformed model file",
            Outcome::Refused | Outcome::Allowed => "refused",
        }
    }

    /// Each reason, with what would let the user go on.
    pub fn findings(&self) -> String {
        let mut s = String::new();
        for f in &self.0.decision.findings {
            s.push_str(&format!("  - {}\n", f.message));
            if let Some(fix) = &f.fix {
                s.push_str(&format!("    to proceed: {fix}\n"));
            }
        }
        s
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.title(), self.0.decision.summary())
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::ExitCode;

    /// The README's exit-code table is this type's list, row for row.
    #[test]
    fn the_readme_table_is_the_exit_code_list() {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split("### Exit codes\n")
            .nth(1)
            .expect("README has an exit-code section");
        let rows: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("| 0 "))
            .take_while(|l| l.starts_with('|'))
            .collect();
        let want: Vec<String> = ExitCode::ALL
            .iter()
            .map(|c| format!("| {} | {} |", c.code(), c.meaning()))
            .collect();
        assert_eq!(rows, want);
    }
}

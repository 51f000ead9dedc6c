//! What can be wrong with a policy file (the file and line are the error's).

/// A policy file that does not parse, or holds an empty or unknown value: the policy fails closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyProblem {
    #[error("{0}")]
    Syntax(String),
    #[error("unknown level '{0}' (expected closed, open-weights, open-weights-permissive, open-source or open-science)")]
    UnknownLevel(String),
    #[error("'{0}' is an empty list; remove the key or name at least one license")]
    EmptyList(&'static str),
    #[error("'{0}' holds an empty string")]
    EmptyValue(&'static str),
}

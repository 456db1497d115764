//! The error vocabulary every crate shares: who has to act on an error.

use std::fmt;

/// Who must act on an error, which decides how the CLI words it and whether a retry may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDomain {
    /// The user's input or command is wrong (bad file, bad flag, bad config): fix the input.
    User,
    /// An outside system failed or refused (PostgreSQL down, HTTP 404, disk full): a retry may help.
    External,
    /// A bug in tripline.
    Internal,
}

impl fmt::Display for ErrorDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::User => "input error",
            Self::External => "external error",
            Self::Internal => "internal error",
        })
    }
}

/// Implemented by each crate's error type so the binary can classify any of them.
pub trait Classify {
    /// Who must act on this error.
    fn domain(&self) -> ErrorDomain;
}

//! Row accounting: every load proves `read = written + quarantined`, and every quarantined row says why.

use std::fmt;
use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

/// How many rows a load read, wrote and set aside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowAccount {
    /// Data rows read from the source (header excluded).
    pub read: u64,
    /// Rows written to the target.
    pub written: u64,
    /// Rows sent to the quarantine file instead.
    pub quarantined: u64,
}

impl RowAccount {
    /// Whether every row read is either written or quarantined.
    pub fn balances(&self) -> bool {
        self.read == self.written + self.quarantined
    }
}

impl AddAssign for RowAccount {
    fn add_assign(&mut self, o: Self) {
        self.read += o.read;
        self.written += o.written;
        self.quarantined += o.quarantined;
    }
}

impl fmt::Display for RowAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read {} = written {} + quarantined {}",
            self.read, self.written, self.quarantined
        )
    }
}

/// A row that could not be loaded, with where it was and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedRow {
    /// Line in the source file (1-based, header is line 1) or row number for Parquet.
    pub line: u64,
    /// The column at fault, when one is.
    pub column: Option<String>,
    /// The offending value as it appeared.
    pub value: String,
    /// What was wrong and what was expected.
    pub reason: String,
    /// The whole record as it appeared, so nothing is lost.
    pub record: String,
}

/// A difference between a file's layout and the unified table schema, reported but never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDrift {
    /// The column concerned.
    pub column: String,
    /// What happened to it, e.g. "missing in file: filled with nulls".
    pub change: String,
}

impl fmt::Display for SchemaDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.column, self.change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_add_up_and_render() {
        let mut a = RowAccount {
            read: 10,
            written: 9,
            quarantined: 1,
        };
        a += RowAccount {
            read: 5,
            written: 5,
            quarantined: 0,
        };
        assert!(a.balances());
        assert_eq!(a.to_string(), "read 15 = written 14 + quarantined 1");
        assert!(
            !RowAccount {
                read: 2,
                written: 1,
                quarantined: 0
            }
            .balances()
        );
    }
}

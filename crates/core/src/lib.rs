//! Shared vocabulary of tripline: the TLC trip schemas, calendar arithmetic on trip timestamps, row accounting,
//! project configuration and the error domains every crate classifies its errors into.

pub mod account;
pub mod config;
pub mod error;
pub mod schema;
pub mod time;

pub use account::{QuarantinedRow, RowAccount, SchemaDrift};
pub use config::Config;
pub use error::{Classify, ErrorDomain};
pub use schema::{ColumnSpec, ColumnType, TripKind};
pub use time::YearMonth;

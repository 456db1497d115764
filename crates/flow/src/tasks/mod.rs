//! The built-in task types, one file each: `shell`, `download`, `flow` (subflow).

pub mod download;
pub mod shell;
pub mod subflow;

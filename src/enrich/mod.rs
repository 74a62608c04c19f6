//! enrich: what records lack, looked up from files the operator provides. Pure lookups over
//! tables loaded (and validated) at start; nothing here performs I/O after loading.

pub mod ranges;

pub use ranges::{CloudNet, CloudRanges};

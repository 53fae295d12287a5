//! The rotation run: one toolkit call per app, then read, compare and write per target, and the
//! report of what happened.

pub mod engine;
pub mod report;
pub mod service;

pub use engine::{run, RunOptions};
pub use report::Report;
pub use service::{Rotator, RunError};

//! The rotation run: one toolkit call per app, then read, compare and write per target, the
//! report of what happened, and the lock that keeps runs from overlapping.

pub mod dry_run;
pub mod engine;
pub mod key_check;
pub mod lock;
pub mod report;
pub mod revocation;
pub mod rollback;
pub mod service;
pub mod status;

pub use engine::{run, Progress, RunOptions};
pub use lock::{LockError, RunLock};
pub use report::Report;
pub use service::{Rotator, RunError};
pub use status::{StatusAnswer, StatusOptions};

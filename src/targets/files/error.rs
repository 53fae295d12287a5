//! Errors of the files kind: an I/O failure on a file, and a file's content the rotator will
//! not edit, as [`Error`]s of the right kind, each naming the file (never a value).

use crate::error::{Error, ErrorKind};
use std::io;
use std::path::Path;

/// The error for `e`, met while doing `what` on the file at `path`.
pub(super) fn io_error(path: &Path, what: &str, e: &io::Error) -> Error {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Unexpected,
    };
    let detail = match e.kind() {
        io::ErrorKind::NotFound => {
            "it does not exist (the rotator does not create files)".to_string()
        }
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    Error::new(kind, format!("file {}: {what}: {detail}", path.display()))
}

/// The error for content the format refuses (`problem` names the line).
pub(super) fn content_error(path: &Path, problem: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!(
            "file {}: {problem}; the file was left unchanged",
            path.display()
        ),
    )
}

/// The error for a file someone else changed between the rotator's read and its write.
pub(super) fn changed_meanwhile(path: &Path) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "file {} changed on disk between the rotator's read and its write; it was left as the other writer made it (the next run starts over)",
            path.display()
        ),
    )
    .with_code("FileChanged")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_io_error() {
        let p = Path::new("/etc/app/.env");
        let e = io_error(p, "reading", &io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("/etc/app/.env"), "{e}");
        let e = io_error(
            p,
            "writing",
            &io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(changed_meanwhile(p).kind(), ErrorKind::Conflict);
        assert_eq!(
            content_error(p, "line 2: x").kind(),
            ErrorKind::InvalidInput
        );
    }
}

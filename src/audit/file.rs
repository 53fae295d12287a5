//! The command line's audit sink: an append-only JSON-lines file ([`super::AUDIT_LOG_FILE`]).
//!
//! The next record chains after the file's last line, so separate runs form one chain. The
//! file is opened for appending only, a run's records go in one write, and the file is synced
//! before the append counts as done. One writer at a time: the file is not locked (the
//! crate's minimum Rust has no `File::lock`), so two command-line runs appending to one file
//! at the same moment would fork the chain, which `audit verify` then reports (never silent).

use super::{chain, Event, Head, Origin};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Appends `events` of run `run_id` to the log at `path` (made when missing), chained after
/// its last line. Every record is written or the error says why none was: the file's last
/// line is never left half-written by us, and a log whose last line is not a record is not
/// appended to (that would hide where it broke).
pub fn append(path: &Path, run_id: &str, origin: &Origin, events: &[Event]) -> Result<(), String> {
    let shown = path.display();
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot open {shown}: {e}"))?;
    let head = last_head(&mut f).map_err(|e| format!("{shown}: {e}"))?;
    let (lines, _) = chain(&head, run_id, origin, events);
    let mut out = String::new();
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    f.write_all(out.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot append to {shown}: {e}"))
}

/// The head after the file's last line ([`Head::empty`] for an empty file).
fn last_head(f: &mut File) -> Result<Head, String> {
    let mut text = String::new();
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_string(&mut text))
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.is_empty() {
        return Ok(Head::empty());
    }
    if !text.ends_with('\n') {
        return Err("its last line is incomplete (no line end): run `audit verify`".into());
    }
    let last = text
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .unwrap_or("");
    Head::after(last).map_err(|why| format!("its last line is {why}: run `audit verify`"))
}

/// The lines of the log at `path`, or why it cannot be read.
pub fn read_lines(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.lines().map(str::to_string).collect())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A `run.started` event of `app`, for the audit module's tests.
    pub(in crate::audit) fn ev(app: &str) -> Event {
        Event {
            time: "2026-12-01T06:00:00.000Z".into(),
            app: app.into(),
            target: String::new(),
            action: "run.started",
            old_key: None,
            new_key: None,
            outcome: "success",
            code: None,
            message: String::new(),
        }
    }

    #[test]
    fn separate_appends_form_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        append(&path, "r1", &Origin::default(), &[ev("a"), ev("b")]).unwrap();
        append(&path, "r2", &Origin::default(), &[ev("c")]).unwrap();
        let lines = read_lines(&path).unwrap();
        let v = super::super::verify(lines.iter().map(String::as_str)).unwrap();
        assert_eq!(v.records, 3);
    }

    #[test]
    fn a_broken_last_line_is_not_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "{\"seq\":1").unwrap();
        let e = append(&path, "r", &Origin::default(), &[ev("a")]).unwrap_err();
        assert!(e.contains("incomplete"), "{e}");
        std::fs::write(&path, "not json\n").unwrap();
        let e = append(&path, "r", &Origin::default(), &[ev("a")]).unwrap_err();
        assert!(e.contains("not an audit record"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not json\n");
    }
}

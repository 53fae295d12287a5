//! The last records of the audit trail, for the dashboard: the one place that reads the trail
//! back for display, from the sink the run writes to ([`Sink`]: the append-blob trail when it
//! applies, else the local file of [`super::AUDIT_LOG_FILE`]).

use super::{parse, Record, Sink};

/// Whether the process has an audit sink to read: without one there is no trail to show,
/// which is a fact for the page, not an error.
pub fn configured(sink: &Sink) -> bool {
    !sink.is_none()
}

/// The last `n` records of the trail, oldest first. Empty when no sink is configured or nothing
/// was written yet (no file yet); an unreadable trail, or a line among the last `n` that is not
/// a record, is an error naming the sink and the record (never the line's content).
pub async fn tail(sink: &Sink, n: usize) -> Result<Vec<Record>, String> {
    if sink.blob().is_none() && sink.file().is_none_or(|path| !path.exists()) {
        return Ok(Vec::new());
    }
    let lines = sink
        .tail_lines(n)
        .await
        .map_err(|e| format!("{}: {e}", sink.describe()))?;
    last_records(&lines, n).map_err(|e| format!("{}: {e}", sink.describe()))
}

/// The records of the last `n` non-empty lines of `lines` (a tail of the trail).
fn last_records(lines: &[String], n: usize) -> Result<Vec<Record>, String> {
    let numbered: Vec<(usize, &String)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let shown = &numbered[numbered.len().saturating_sub(n)..];
    let from_end = |i: usize| lines.len() - i;
    shown
        .iter()
        .map(|(i, l)| parse(l).map_err(|why| format!("line {} from the end: {why}", from_end(*i))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::file::{self, tests::ev};
    use crate::audit::{Origin, AUDIT_LOG_FILE};
    use crate::settings::Settings;

    /// The sink of settings naming `path` as the audit file (or nothing).
    fn settings(path: Option<&std::path::Path>) -> Sink {
        let mut raw = std::collections::BTreeMap::new();
        if let Some(p) = path {
            raw.insert(AUDIT_LOG_FILE.to_string(), p.display().to_string());
        }
        Sink::new(&Settings::from_map(raw), None)
    }

    #[tokio::test]
    async fn the_last_records_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let s = settings(Some(&path));
        assert!(configured(&s));
        // Nothing written yet: no records, no error.
        assert_eq!(tail(&s, 5).await.unwrap(), Vec::new());
        file::append(
            &path,
            "r1",
            &Origin::default(),
            &[ev("a"), ev("b"), ev("c")],
        )
        .unwrap();
        let last: Vec<String> = tail(&s, 2)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.app)
            .collect();
        assert_eq!(last, ["b", "c"]);
        assert_eq!(tail(&s, 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn no_sink_is_no_records_and_a_bad_line_is_named() {
        let s = settings(None);
        assert!(!configured(&s));
        assert!(tail(&s, 5).await.unwrap().is_empty());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        file::append(&path, "r1", &Origin::default(), &[ev("a")]).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("secret-looking garbage\n");
        std::fs::write(&path, text).unwrap();
        let e = tail(&settings(Some(&path)), 5).await.unwrap_err();
        assert!(e.contains("line 1 from the end"), "{e}");
        assert!(!e.contains("garbage"), "{e}");
        // A folder is not a trail.
        let e = tail(&settings(Some(dir.path())), 5).await.unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}

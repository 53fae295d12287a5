//! The last records of the audit trail, for the dashboard: the one place that reads the trail
//! back for display (today the local file of [`AUDIT_LOG_FILE`]; the append-blob sink when the
//! settings name it instead).

use super::{file, parse, Record, AUDIT_LOG_FILE};
use crate::settings::Settings;

/// Whether the settings name an audit sink to read: without one there is no trail to show,
/// which is a fact for the page, not an error.
pub fn configured(settings: &Settings) -> bool {
    settings.get(AUDIT_LOG_FILE).is_some()
}

/// The last `n` records of the trail, oldest first. Empty when no sink is configured or nothing
/// was written yet (a missing file); an unreadable trail, or a line among the last `n` that is
/// not a record, is an error naming the setting and the line (never its content).
pub async fn tail(settings: &Settings, n: usize) -> Result<Vec<Record>, String> {
    let Some(path) = settings.get(AUDIT_LOG_FILE) else {
        return Ok(Vec::new());
    };
    let path = std::path::PathBuf::from(path);
    // The file grows with every run: read it off the runtime's worker threads.
    let lines = tokio::task::spawn_blocking(move || {
        if !path.exists() {
            return Ok(Vec::new());
        }
        file::read_lines(&path)
    })
    .await
    .map_err(|e| format!("reading {AUDIT_LOG_FILE} failed: {e}"))?
    .map_err(|e| format!("{AUDIT_LOG_FILE}: {e}"))?;
    last_records(&lines, n)
}

/// The records of the last `n` non-empty lines of `lines`.
fn last_records(lines: &[String], n: usize) -> Result<Vec<Record>, String> {
    let numbered: Vec<(usize, &String)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    numbered[numbered.len().saturating_sub(n)..]
        .iter()
        .map(|(i, l)| parse(l).map_err(|why| format!("{AUDIT_LOG_FILE} line {}: {why}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Event, Origin};

    fn settings(path: Option<&std::path::Path>) -> Settings {
        let mut raw = std::collections::BTreeMap::new();
        if let Some(p) = path {
            raw.insert(AUDIT_LOG_FILE.to_string(), p.display().to_string());
        }
        Settings::from_map(raw)
    }

    fn ev(app: &str) -> Event {
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
        assert!(e.contains("AUDIT_LOG_FILE line 2"), "{e}");
        assert!(!e.contains("garbage"), "{e}");
        // A folder is not a trail.
        let e = tail(&settings(Some(dir.path())), 5).await.unwrap_err();
        assert!(e.starts_with("AUDIT_LOG_FILE: cannot read"), "{e}");
    }
}

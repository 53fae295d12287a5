//! The run report (PRODUCT.md §7): what was updated, what needed nothing, what failed.
//! Keys appear only as `****` plus their last four characters.

use crate::secret::ApiKey;
use serde::Serialize;
use time::OffsetDateTime;

/// The report of one run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Identifies the run in logs.
    pub run_id: String,
    /// Whether this was a plan only.
    pub dry_run: bool,
    /// Targets updated (or, in a dry run, that would be) and keys renewed.
    pub successes: Vec<ReportEntry>,
    /// Targets that needed nothing, and other notes.
    pub warnings: Vec<ReportEntry>,
    /// Targets and apps that failed.
    pub errors: Vec<ReportEntry>,
    /// Counts.
    pub summary: Summary,
    /// The run lock held during the run: `blob lease <account>/<container>/<blob>` or
    /// `local (AzureWebJobsStorage is not set)`.
    pub lock: String,
    /// When the run ended (RFC 3339, UTC, milliseconds).
    pub timestamp: String,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReportEntry {
    /// `TOOLKIT`, `KEY_VAULT`, `APPLICATION_API`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The API-manager app.
    pub app_name: String,
    /// The target (`vault/secret`, `host/path/appName`); empty for toolkit entries.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// The key concerned, redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Error code (errors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What happened, for a person.
    pub message: String,
}

impl ReportEntry {
    /// An entry without key or code.
    pub fn new(kind: &str, app_name: &str, target: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_string(),
            app_name: app_name.to_string(),
            target: target.to_string(),
            api_key: None,
            code: None,
            message: message.into(),
        }
    }

    /// Adds the redacted key.
    pub fn with_key(mut self, key: &ApiKey) -> Self {
        self.api_key = Some(key.redacted());
        self
    }

    /// Adds an error code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }
}

/// Counts of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Apps in the run.
    pub apps: usize,
    /// Targets in the run.
    pub targets: usize,
    /// Targets written (or that would be, in a dry run).
    pub updated: usize,
    /// Targets that already held the current key.
    pub unchanged: usize,
    /// Targets that failed or could not be checked.
    pub failed: usize,
    /// Keys renewed in the API manager.
    pub renewed: usize,
    /// Run time.
    pub duration_ms: u64,
}

impl Report {
    /// An empty report for a run starting now.
    pub fn new(dry_run: bool) -> Self {
        Self {
            run_id: uuid::Uuid::new_v4().to_string(),
            dry_run,
            successes: Vec::new(),
            warnings: Vec::new(),
            errors: Vec::new(),
            summary: Summary::default(),
            lock: String::new(),
            timestamp: String::new(),
        }
    }

    /// Whether anything failed.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Stamps the end time.
    pub fn finish(&mut self, started: std::time::Instant) {
        self.summary.duration_ms = started.elapsed().as_millis() as u64;
        self.timestamp = rfc3339(OffsetDateTime::now_utc());
    }

    /// A few lines for a person: counts, then each error.
    pub fn human_summary(&self) -> String {
        let s = &self.summary;
        let mut out = format!(
            "{}{} apps, {} targets: {} updated, {} unchanged, {} failed; {} keys renewed ({} ms)",
            if self.dry_run { "[dry run] " } else { "" },
            s.apps,
            s.targets,
            s.updated,
            s.unchanged,
            s.failed,
            s.renewed,
            s.duration_ms
        );
        for e in self.successes.iter().chain(&self.errors) {
            out.push_str(&format!("\n  {} {}: {}", e.kind, e.target, e.message));
        }
        out
    }
}

/// RFC 3339 in UTC with milliseconds (`2026-11-22T06:00:01.123Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_the_documented_shape() {
        let mut r = Report::new(false);
        r.successes.push(
            ReportEntry::new("KEY_VAULT", "App1", "kv/secret", "Updated")
                .with_key(&ApiKey::new("abcdefghijklmnop9M1x")),
        );
        r.errors.push(
            ReportEntry::new("KEY_VAULT", "App1", "kv/other", "denied").with_code("Forbidden"),
        );
        r.finish(std::time::Instant::now());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["successes"][0]["type"], "KEY_VAULT");
        assert_eq!(v["successes"][0]["apiKey"], "****9M1x");
        assert!(v["successes"][0].get("code").is_none());
        assert_eq!(v["errors"][0]["code"], "Forbidden");
        for k in [
            "apps",
            "targets",
            "updated",
            "unchanged",
            "failed",
            "renewed",
            "durationMs",
        ] {
            assert!(v["summary"].get(k).is_some(), "{k}");
        }
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(!serde_json::to_string(&r).unwrap().contains("abcdefgh"));
    }

    #[test]
    fn rfc3339_has_millis_and_z() {
        let t = time::macros::datetime!(2026-11-22 06:00:01.123 UTC);
        assert_eq!(rfc3339(t), "2026-11-22T06:00:01.123Z");
    }
}

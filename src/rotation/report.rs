//! The run report (PRODUCT.md §7): what was updated, what needed nothing, what failed.
//! Keys appear only as `****` plus their last four characters.

use crate::rfc3339;
use crate::secret::ApiKey;
use serde::Serialize;
use time::OffsetDateTime;

/// The report of one run.
///
/// Every target appears exactly once, in `successes`, `unchanged` or `errors`, so
/// `summary.updated + summary.unchanged + summary.failed = summary.targets`.
///
/// **Dry runs** (`dryRun: true`) plan exactly what the same run would do: every list and every
/// counter then means "would". A key the toolkit would renew counts in `summary.renewed` (its
/// `TOOLKIT` entry is in `successes`, without `apiKey`: the key does not exist yet), and every
/// target of that app counts in `summary.updated` ("Would update ..."/"Would create ..."),
/// whatever it holds now, since the renewed key would differ from all of them. Entries planned
/// for a key still to be created carry no `apiKey`.
///
/// **Compatibility with the seeds' shape**: `successes`, `warnings` and `errors` keep their
/// names and their entries' fields. Unchanged targets, which the seeds listed under `warnings`
/// ("No update needed ..."), now have their own list, `unchanged`; `warnings` holds only real
/// warnings (the run lock could not be released, ...). A consumer that read unchanged targets
/// from `warnings` reads `unchanged` instead.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Identifies the run in logs.
    pub run_id: String,
    /// Whether this was a plan only: then every entry and counter means "would".
    pub dry_run: bool,
    /// Targets updated (in a dry run: that would be) and keys renewed (that would be).
    pub successes: Vec<ReportEntry>,
    /// Real warnings: something the run did not finish cleanly that needs no failed target
    /// (the run lock's release, ...). Never the unchanged targets.
    pub warnings: Vec<ReportEntry>,
    /// Targets that already held the current key: nothing was (or would be) written.
    pub unchanged: Vec<ReportEntry>,
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

/// Counts of a run. In a dry run each counter means "would" (see [`Report`]).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Apps in the run.
    pub apps: usize,
    /// Targets in the run.
    pub targets: usize,
    /// Targets written (in a dry run: that would be written).
    pub updated: usize,
    /// Targets that already held the current key (the `unchanged` list).
    pub unchanged: usize,
    /// Targets that failed or could not be checked.
    pub failed: usize,
    /// Keys renewed in the API manager (in a dry run: that would be renewed).
    pub renewed: usize,
    /// Superseded keys revoked in the API manager (in a dry run: that would be revoked now).
    pub revoked: usize,
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
            unchanged: Vec::new(),
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
        self.timestamp = rfc3339::format(OffsetDateTime::now_utc(), rfc3339::Fraction::Millis);
    }

    /// A few lines for a person: the counts (in a dry run, what would happen), then the
    /// successes (the first [`SUCCESSES_SHOWN`]), the warnings, and every failure marked
    /// `FAILED` with its code and a hint of what to do.
    pub fn human_summary(&self) -> String {
        let s = &self.summary;
        let would = |verb: &str| {
            if self.dry_run {
                format!("would be {verb}")
            } else {
                verb.to_string()
            }
        };
        let mut out = format!(
            "{}{}, {}: {} {}, {} unchanged, {} failed; {} {} ({} ms)",
            if self.dry_run { "[dry run] " } else { "" },
            plural(s.apps, "app"),
            plural(s.targets, "target"),
            s.updated,
            would("updated"),
            s.unchanged,
            s.failed,
            plural(s.renewed, "key"),
            would("renewed"),
            s.duration_ms
        );
        if s.revoked > 0 {
            // Only when it happened: the line stays as it was for runs without revocation.
            out.push_str(&format!(
                "; {} {}",
                plural(s.revoked, "key"),
                would("revoked")
            ));
        }
        let place = |e: &ReportEntry| match (e.target.is_empty(), e.app_name.is_empty()) {
            (false, _) => format!("{} {}", e.kind, e.target),
            (true, false) => format!("{} {}", e.kind, e.app_name),
            (true, true) => e.kind.clone(),
        };
        for e in self.successes.iter().take(SUCCESSES_SHOWN) {
            out.push_str(&format!("\n  + {}: {}", place(e), e.message));
        }
        if self.successes.len() > SUCCESSES_SHOWN {
            out.push_str(&format!(
                "\n  + ... and {} more (see the report)",
                self.successes.len() - SUCCESSES_SHOWN
            ));
        }
        for e in &self.warnings {
            out.push_str(&format!("\n  WARNING {}: {}", place(e), e.message));
        }
        for e in &self.errors {
            let code = e.code.as_deref().unwrap_or("Unexpected");
            out.push_str(&format!("\n  FAILED {} [{code}]: {}", place(e), e.message));
            if let Some(hint) = hint(&e.kind, code) {
                out.push_str(&format!("\n      what to do: {hint}"));
            }
        }
        out
    }
}

/// How many successes [`Report::human_summary`] lists before "... and N more".
pub const SUCCESSES_SHOWN: usize = 20;

/// `n` and the noun, in the plural unless `n` is 1 ("1 key", "2 keys", "0 apps").
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// What to do about a failure of code `code` on a target of report type `kind` (the README's
/// "Failure handling" table, per target where the fix differs). Service codes are matched by
/// what they mean (`ForbiddenByRbac`, `AuthorizationFailed`, `PERMISSION_DENIED` are all
/// "forbidden").
pub fn hint(kind: &str, code: &str) -> Option<&'static str> {
    let c = code.to_ascii_lowercase().replace('_', "");
    let forbidden = c.contains("forbidden")
        || c.contains("authorizationfailed")
        || c.contains("permissiondenied");
    let not_found = c.contains("notfound");
    let unauthenticated = c.contains("unauthenticated") || c.contains("unauthorized");
    // A target type's own advice (its kind's folder says it); the toolkit is not a target.
    let remedies = crate::targets::TargetType::of_report(kind)
        .map(|t| t.remedies())
        .unwrap_or_default();
    Some(match (kind, c.as_str()) {
        (_, "deadlineexceeded") => {
            "run again (targets that already hold the key are not written again), or raise ROTATION_DEADLINE_SECONDS"
        }
        (_, "keyunavailable") => "fix this app's TOOLKIT error first; the target was not checked",
        (_, "toomanyrequests") => {
            "the service is throttling: run again later, or lower ROTATION_CONCURRENCY_PER_HOST"
        }
        (_, "serviceunavailable") => "the service failed or did not answer: run again later and check its health",
        (_, "pinnedkeyvaultreference") => {
            "make the Key Vault reference versionless (drop the version from its SecretUri)"
        }
        (_, "malformedkeyvaultreference") => "fix the @Microsoft.KeyVault(...) reference",
        (_, "keylocked") => "the key-value is locked in App Configuration: unlock it, or remove it from the mapping",
        (_, "preconditionfailed" | "conflict") => "it changed during the run: run again",
        (_, "noapprovedkey") => "approve the app's key and its API products in the API manager",
        (_, "keycheckfailed") => {
            "the new key was refused where the mapping's keyChecks tries it: check the check's URL and the key's API products, or raise KEY_CHECK_MAX_WAIT_SECONDS if the API manager is slow to propagate keys; the targets keep their previous key"
        }
        (_, "keywithdrawn") => {
            "the key made this run was refused by its key check and withdrawn again: fix what the KEY_CHECK entry names; the next run renews again"
        }
        (_, "nopreviouskey") => {
            "there is no still-valid key to roll back to: renew instead (rotate --app NAME --force)"
        }
        (_, "revocationblocked") => {
            "fix or update the target named, then run again: the key is revoked once every target holds the current one"
        }
        (_, "configinvalid") => "fix the setting or the company details the message names (apikey-rotator validate --settings)",
        (_, "unexpected") => "an answer could not be read: check the service, or a proxy between it and the rotator",
        ("TOOLKIT", _) if forbidden => {
            "give the sealed service account an Apigee role with apigee.developerapps.get and apigee.appkeys.create (Apigee Developer Admin)"
        }
        ("TOOLKIT", _) if not_found => {
            "check apimAppName in the mapping: the API manager has no such app for the company details' developerEmail"
        }
        ("TOOLKIT", _) if unauthenticated => "check the service-account key in the sealed company details (or TOOLKIT_APP_KEY)",
        (_, _) if forbidden && remedies.forbidden.is_some() => remedies.forbidden?,
        (_, _) if unauthenticated && remedies.unauthenticated.is_some() => {
            remedies.unauthenticated?
        }
        (_, _) if forbidden => "grant the rotator's identity the role the target needs (README: roles per target)",
        (_, _) if not_found && remedies.not_found.is_some() => remedies.not_found?,
        (_, _) if not_found => "check the names in the mapping",
        (_, _) if unauthenticated => {
            "check the rotator's credential (managed identity; in a pipeline AZURE_FEDERATED_TOKEN_FILE / AZURE_CLIENT_ID / AZURE_TENANT_ID and the app's federated credential; or AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET)"
        }
        _ => return None,
    })
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
        r.unchanged.push(ReportEntry::new(
            "KEY_VAULT",
            "App1",
            "kv/same",
            "No update needed",
        ));
        r.finish(std::time::Instant::now());
        let v = serde_json::to_value(&r).unwrap();
        let lists: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            lists[..6],
            [
                "runId",
                "dryRun",
                "successes",
                "warnings",
                "unchanged",
                "errors"
            ]
        );
        assert_eq!(v["unchanged"][0]["target"], "kv/same");
        assert_eq!(v["warnings"], serde_json::json!([]));
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
    fn plurals() {
        assert_eq!(plural(0, "key"), "0 keys");
        assert_eq!(plural(1, "key"), "1 key");
        assert_eq!(plural(2, "app"), "2 apps");
    }

    #[test]
    fn the_summary_marks_failures_with_code_and_hint() {
        let mut r = Report::new(false);
        r.summary = Summary {
            apps: 1,
            targets: 3,
            updated: 1,
            unchanged: 1,
            failed: 1,
            renewed: 1,
            duration_ms: 5,
            ..Summary::default()
        };
        r.successes.push(ReportEntry::new(
            "KEY_VAULT",
            "App1",
            "kv/a",
            "Updated secret a.",
        ));
        r.unchanged.push(ReportEntry::new(
            "KEY_VAULT",
            "App1",
            "kv/b",
            "No update needed.",
        ));
        r.errors.push(
            ReportEntry::new("WEB_APP", "App1", "site/S", "denied")
                .with_code("AuthorizationFailed"),
        );
        r.warnings.push(ReportEntry::new(
            "LOCK",
            "",
            "",
            "the lease was not released",
        ));
        let text = r.human_summary();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "1 app, 3 targets: 1 updated, 1 unchanged, 1 failed; 1 key renewed (5 ms)"
        );
        assert_eq!(lines[1], "  + KEY_VAULT kv/a: Updated secret a.");
        assert_eq!(lines[2], "  WARNING LOCK: the lease was not released");
        assert_eq!(
            lines[3],
            "  FAILED WEB_APP site/S [AuthorizationFailed]: denied"
        );
        assert!(
            lines[4]
                .trim()
                .starts_with("what to do: grant the rotator's identity Website Contributor"),
            "{text}"
        );
        assert!(
            !text.contains("No update needed"),
            "unchanged targets are only counted"
        );

        r.dry_run = true;
        assert!(r.human_summary().starts_with(
            "[dry run] 1 app, 3 targets: 1 would be updated, 1 unchanged, 1 failed; 1 key would be renewed"
        ));
    }

    #[test]
    fn hints_per_code_and_target() {
        let h = |kind, code| hint(kind, code).unwrap_or_default();
        assert!(h("KEY_VAULT", "Forbidden").contains("Key Vault Secrets Officer"));
        assert!(h("KEY_VAULT", "ForbiddenByRbac").contains("Key Vault Secrets Officer"));
        assert!(h("APP_CONFIG", "Forbidden").contains("App Configuration Data Owner"));
        assert!(h("STATIC_WEB_APP", "AuthorizationFailed").contains("Website Contributor"));
        assert!(h("TOOLKIT", "PERMISSION_DENIED").contains("Apigee"));
        assert!(h("TOOLKIT", "AppNotFound").contains("apimAppName"));
        assert!(h("KEY_VAULT", "NotFound").contains("vaultName"));
        assert!(h("FUNCTION_APP", "NotFound").contains("resourceGroup"));
        assert!(h("APP_CONFIG", "TooManyRequests").contains("run again later"));
        assert!(h("KEY_VAULT", "DeadlineExceeded").contains("ROTATION_DEADLINE_SECONDS"));
        assert!(h("WEB_APP", "PinnedKeyVaultReference").contains("versionless"));
        assert!(h("KEY_VAULT", "KeyCheckFailed").contains("keyChecks"));
        assert!(h("ROLLBACK", "NoPreviousKey").contains("--force"));
        assert!(h("TOOLKIT", "KeyWithdrawn").contains("KEY_CHECK"));
        assert!(h("REVOCATION", "RevocationBlocked").contains("every target"));
        assert_eq!(hint("KEY_VAULT", "SomethingNew"), None);
    }
}

//! The audit trail: one JSON record per event of a run (run started and ended, key created,
//! revoked, checked, rolled back, target written or failed), appended to a hash-chained,
//! append-only log: append blobs in the host storage account ([`blob`], the Functions host's
//! default) and a local file ([`file`], the command line's), through one [`Sink`].
//!
//! Each record is one line of JSON whose `prev` is the SHA-256 (lower-case hex) of the previous
//! record's exact line, and the first record's `prev` the SHA-256 of [`GENESIS`]; `seq` counts
//! from 1. [`verify`] walks a log and names the first line where the chain breaks, so an edit,
//! a deletion, an insertion or a reordering anywhere before the last line is detected. What a
//! chain alone cannot show (an edited or removed *last* record) is shown against a head kept
//! elsewhere: [`Verified::head`] is the last record's hash.
//!
//! Keys appear only as [`crate::secret::ApiKey::redacted`] (`****` and the last 4); the records
//! are built from the run's [`Report`], which carries nothing more.

pub mod blob;
pub mod file;
pub mod tail;

use crate::azure::call::Call;
use crate::azure::retry::RetryPolicy;
use crate::azure::storage::BlobClient;
use crate::rfc3339;
use crate::rotation::report::{Report, ReportEntry};
use crate::secret::sha256_hex;
use crate::settings::{SettingError, Settings};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// The setting that names the local audit file (JSON lines, appended to).
pub const AUDIT_LOG_FILE: &str = "AUDIT_LOG_FILE";

/// The setting that names the blob trail's container in the host storage account (default
/// [`AUDIT_CONTAINER`]), or turns the blob trail off (`off`).
pub const AUDIT_LOG_BLOB_CONTAINER: &str = "AUDIT_LOG_BLOB_CONTAINER";

/// The blob trail's container (the ARM template makes it with a time-based immutability
/// policy that allows protected append writes; the sink makes it when missing).
pub const AUDIT_CONTAINER: &str = "apikey-rotator-audit";

/// The setting the Functions host gives its custom handler: set, the process runs as the host's
/// handler, where the blob trail is the default.
const FUNCTIONS_PORT_SETTING: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";

/// How long one audit write (or read) may take: its own budget, since a run's records are
/// written when the run ends, its deadline perhaps passed.
pub const AUDIT_WAIT: Duration = Duration::from_secs(20);

/// The report type of a warning about the audit trail (records not written).
pub const REPORT_TYPE: &str = "AUDIT";

/// What the first record's `prev` is the SHA-256 of.
pub const GENESIS: &str = "apikey-rotator audit trail v1";

/// What started a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The `RotatorTimer` function.
    Timer,
    /// An HTTP function (`ApiKeyRotator`, `KeyRollback`).
    Http,
    /// The command line (the default: a run nobody said otherwise of).
    #[default]
    Cli,
}

impl Trigger {
    /// `timer`, `http` or `cli`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Timer => "timer",
            Trigger::Http => "http",
            Trigger::Cli => "cli",
        }
    }
}

/// Who started a run and how: what every record of the run carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Timer, HTTP or command line.
    pub trigger: Trigger,
    /// The HTTP caller's principal as the Functions host forwards it; `None`: the OS user for
    /// the command line ([`os_user`]), nobody for the timer.
    pub who: Option<String>,
}

impl Origin {
    /// Who, as recorded: the principal given, else the OS user (command line), else the
    /// trigger's own name.
    pub fn who(&self) -> String {
        match (&self.who, self.trigger) {
            (Some(w), _) => w.clone(),
            (None, Trigger::Cli) => os_user(),
            (None, Trigger::Timer) => "timer".into(),
            (None, Trigger::Http) => "unidentified caller".into(),
        }
    }
}

/// The OS user running the command line (`USER`, else `USERNAME`), or `unknown`.
pub fn os_user() -> String {
    ["USER", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// One audit record; its JSON line is what the chain hashes. Field order is the line's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Record {
    /// Position in the log, from 1.
    pub seq: u64,
    /// SHA-256 hex of the previous record's line (of [`GENESIS`] for the first).
    pub prev: String,
    /// When (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The run's id (the report's `runId`).
    pub run_id: String,
    /// `timer`, `http` or `cli`.
    pub trigger: Trigger,
    /// Who started the run.
    pub who: String,
    /// The API-manager app (empty for the run's own records).
    pub app: String,
    /// The target (empty when the event is not a target's).
    pub target: String,
    /// `run.started`, `key.created`, `target.written`, ...
    pub action: String,
    /// The key replaced or revoked, `****` and its last 4.
    pub old_key: Option<String>,
    /// The key created, written or restored, `****` and its last 4.
    pub new_key: Option<String>,
    /// `success`, `failure` or `warning`.
    pub outcome: String,
    /// The error code of a failure.
    pub code: Option<String>,
    /// What happened, for a person (the report's message: keys redacted).
    pub message: String,
}

/// A record's content before it is chained (`seq` and `prev` are the log's to give).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When.
    pub time: String,
    /// The app.
    pub app: String,
    /// The target.
    pub target: String,
    /// The action.
    pub action: &'static str,
    /// The old key, redacted.
    pub old_key: Option<String>,
    /// The new key, redacted.
    pub new_key: Option<String>,
    /// `success`, `failure` or `warning`.
    pub outcome: &'static str,
    /// The code.
    pub code: Option<String>,
    /// The message.
    pub message: String,
}

/// Where a chain continues from: the last record's `seq` and the hash of its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The last `seq` (0 for an empty log).
    pub seq: u64,
    /// The SHA-256 hex of the last line ([`genesis`] for an empty log).
    pub hash: String,
}

impl Head {
    /// The head of an empty log.
    pub fn empty() -> Self {
        Head {
            seq: 0,
            hash: genesis(),
        }
    }

    /// The head after `line`, which must be a record (else why not).
    pub fn after(line: &str) -> Result<Self, String> {
        let r = parse(line)?;
        Ok(Head {
            seq: r.seq,
            hash: sha256_hex(line.as_bytes()),
        })
    }
}

/// The SHA-256 hex of [`GENESIS`].
pub fn genesis() -> String {
    sha256_hex(GENESIS.as_bytes())
}

/// Chains `events` of run `run_id` after `head`: their lines, in order, and the new head.
pub fn chain(head: &Head, run_id: &str, origin: &Origin, events: &[Event]) -> (Vec<String>, Head) {
    let who = origin.who();
    let mut head = head.clone();
    let mut lines = Vec::with_capacity(events.len());
    for e in events {
        let record = Record {
            seq: head.seq + 1,
            prev: head.hash.clone(),
            time: e.time.clone(),
            run_id: run_id.to_string(),
            trigger: origin.trigger,
            who: who.clone(),
            app: e.app.clone(),
            target: e.target.clone(),
            action: e.action.to_string(),
            old_key: e.old_key.clone(),
            new_key: e.new_key.clone(),
            outcome: e.outcome.to_string(),
            code: e.code.clone(),
            message: e.message.clone(),
        };
        // A struct of strings and options always serialises.
        let line = serde_json::to_string(&record).expect("a record serialises");
        head = Head {
            seq: record.seq,
            hash: sha256_hex(line.as_bytes()),
        };
        lines.push(line);
    }
    (lines, head)
}

/// The events of one finished run: `run.started` at `started`, one per success, error and
/// lifecycle warning of `report`, `run.ended` at the report's end time.
pub fn events_of(report: &Report, started: OffsetDateTime) -> Vec<Event> {
    let started = rfc3339::format(started, rfc3339::Fraction::Millis);
    let ended = if report.timestamp.is_empty() {
        rfc3339::format(OffsetDateTime::now_utc(), rfc3339::Fraction::Millis)
    } else {
        report.timestamp.clone()
    };
    let run = |action, outcome, message: String, time: &str| Event {
        time: time.to_string(),
        app: String::new(),
        target: String::new(),
        action,
        old_key: None,
        new_key: None,
        outcome,
        code: None,
        message,
    };
    let mut out = vec![run("run.started", "success", String::new(), &started)];
    let lists = [
        (&report.successes, "success"),
        (&report.errors, "failure"),
        (&report.warnings, "warning"),
    ];
    for (list, outcome) in lists {
        for e in list.iter() {
            if let Some(event) = event_of(e, outcome, &ended) {
                // A rollback that reactivated the revoked key it restored says so in its
                // wording (pinned by `rotation::rollback`'s tests): one record more.
                let reactivated = event.action == "rollback"
                    && outcome == "success"
                    && e.message.contains(" (reactivated) is current again");
                let reactivation = reactivated.then(|| Event {
                    action: "key.reactivated",
                    ..event.clone()
                });
                out.push(event);
                out.extend(reactivation);
            }
        }
    }
    let s = &report.summary;
    out.push(run(
        "run.ended",
        if report.has_errors() {
            "failure"
        } else {
            "success"
        },
        format!(
            "{} apps, {} targets: {} updated, {} unchanged, {} failed; {} renewed, {} revoked",
            s.apps, s.targets, s.updated, s.unchanged, s.failed, s.renewed, s.revoked
        ),
        &ended,
    ));
    out
}

/// The event of one report entry; `None` for a warning that is not a key's (the run lock's).
fn event_of(e: &ReportEntry, outcome: &'static str, time: &str) -> Option<Event> {
    use crate::rotation::{key_check, revocation, rollback};
    let kind = e.kind.as_str();
    let (action, key_is_old) = match kind {
        "TOOLKIT" => ("key.created", false),
        k if k == revocation::REPORT_TYPE => ("key.revoked", true),
        k if k == key_check::REPORT_TYPE => ("key.checked", false),
        k if k == rollback::ROLLBACK => ("rollback", false),
        _ if outcome == "warning" => return None,
        _ if outcome == "failure" => ("target.failed", false),
        _ => ("target.written", false),
    };
    let (old_key, new_key) = match (&e.api_key, key_is_old) {
        (Some(k), true) => (Some(k.clone()), None),
        (k, _) => (None, k.clone()),
    };
    Some(Event {
        time: time.to_string(),
        app: e.app_name.clone(),
        target: if e.target.is_empty() {
            String::new()
        } else {
            format!("{} {}", e.kind, e.target)
        },
        action,
        old_key,
        new_key,
        outcome,
        code: e.code.clone(),
        message: e.message.clone(),
    })
}

/// A line as a record, or why it is not one.
pub fn parse(line: &str) -> Result<Record, String> {
    serde_json::from_str(line).map_err(|e| format!("not an audit record ({e})"))
}

/// An intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its records.
    pub records: usize,
    /// The hash of its last line: keep it elsewhere to detect a change of the last record.
    pub head: Head,
}

/// Where and why a log is not intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The line (from 1) where the chain breaks.
    pub line: usize,
    /// Why.
    pub why: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

/// Checks the chain of `lines` (a log's lines, in order, without their line ends): each a
/// record, `seq` counting from 1 without gaps, each `prev` the hash of the line before.
pub fn verify<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Verified, Broken> {
    let mut head = Head::empty();
    let mut n = 0;
    for (i, line) in lines.into_iter().enumerate() {
        let at = i + 1;
        let broken = |why: String| Broken { line: at, why };
        let r = parse(line).map_err(broken)?;
        if r.seq != head.seq + 1 {
            return Err(broken(format!(
                "seq is {}, expected {}: a record was removed, inserted or moved before here",
                r.seq,
                head.seq + 1
            )));
        }
        if r.prev != head.hash {
            return Err(broken(if at == 1 {
                "prev is not the genesis hash: this is not the log's first record".to_string()
            } else {
                format!(
                    "prev does not match line {}: that line was edited (or this one replaced)",
                    at - 1
                )
            }));
        }
        head = Head {
            seq: r.seq,
            hash: sha256_hex(line.as_bytes()),
        };
        n = at;
    }
    Ok(Verified { records: n, head })
}

/// Appends the records of a finished run to every sink of `sink` ([`Sink::new`]: the blob
/// trail, the local file; nothing when neither applies). A dry run changes nothing and is not
/// recorded. A sink that fails loses nothing silently: the report gets an [`REPORT_TYPE`]
/// warning `AuditWriteFailed` per failing sink with the count of records not written, and the
/// log an error.
pub async fn record_run(
    sink: &Sink,
    origin: &Origin,
    report: &mut Report,
    started: OffsetDateTime,
) {
    if report.dry_run || sink.is_none() {
        return;
    }
    let events = events_of(report, started);
    for (name, result) in sink.append(&report.run_id, origin, &events).await {
        let Err((written, why)) = result else {
            continue;
        };
        let missing = events.len() - written;
        tracing::error!(
            sink = %name,
            records = missing,
            "audit trail not written: {why}"
        );
        report.warnings.push(
            ReportEntry::new(
                REPORT_TYPE,
                "",
                "",
                format!("{missing} audit records not written ({name}): {why}"),
            )
            .with_code("AuditWriteFailed"),
        );
    }
}

/// Appends the record of a key ToolkitApp (or the standalone toolkit) handed out to `origin`'s
/// caller, preceded by `key.created` when the request renewed it, to every sink of `sink`.
/// The answer carries no report, so a sink that fails is logged as an error with the count of
/// records not written.
pub async fn record_handout(
    sink: &Sink,
    origin: &Origin,
    grant: &crate::toolkit::KeyGrant,
    dry_run: bool,
) {
    if sink.is_none() {
        return;
    }
    let events = handout_events(grant, dry_run, OffsetDateTime::now_utc());
    let id = uuid::Uuid::new_v4().to_string();
    for (name, result) in sink.append(&id, origin, &events).await {
        if let Err((written, why)) = result {
            let missing = events.len() - written;
            tracing::error!(
                sink = %name,
                records = missing,
                app = %grant.app_name,
                "{missing} audit records not written: {why}"
            );
        }
    }
}

/// Where audit records go: the blob trail in the host storage account ([`blob`]), the local
/// file of [`AUDIT_LOG_FILE`] ([`file`]), both, or neither.
///
/// The blob trail applies when the host storage account is set (`AzureWebJobsStorage` or its
/// identity-based form, as for the run lock) and either the process runs as the Functions host
/// (`FUNCTIONS_CUSTOMHANDLER_PORT` set) or [`AUDIT_LOG_BLOB_CONTAINER`] names a container;
/// [`AUDIT_LOG_BLOB_CONTAINER`] `off` turns it off. The file applies whenever
/// [`AUDIT_LOG_FILE`] is set. Each sink is its own chain.
#[derive(Clone, Debug, Default)]
pub struct Sink {
    file: Option<PathBuf>,
    blob: Option<blob::BlobSink>,
    policy: Arc<RetryPolicy>,
}

/// What [`AUDIT_LOG_BLOB_CONTAINER`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ContainerChoice {
    /// Unset: [`AUDIT_CONTAINER`], on the Functions host only.
    Default,
    /// `off`: no blob trail.
    Off,
    /// A container, wherever the process runs.
    Named(String),
}

fn container_choice(settings: &Settings) -> ContainerChoice {
    match settings.get(AUDIT_LOG_BLOB_CONTAINER) {
        None => ContainerChoice::Default,
        Some(v) if v.eq_ignore_ascii_case("off") => ContainerChoice::Off,
        Some(v) => ContainerChoice::Named(v.to_string()),
    }
}

/// Whether the host storage account is set (`AzureWebJobsStorage` or its identity form).
fn storage_is_set(settings: &Settings) -> bool {
    use crate::azure::storage::STORAGE_SETTING;
    [
        STORAGE_SETTING.to_string(),
        format!("{STORAGE_SETTING}__blobServiceUri"),
        format!("{STORAGE_SETTING}__accountName"),
    ]
    .iter()
    .any(|name| settings.get(name).is_some())
}

/// Whether `name` is a valid blob container name: 3 to 63 lower-case letters, digits and
/// hyphens, starting and ending with a letter or digit, no two hyphens in a row.
pub fn is_container_name(name: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&name.len())
        && name.bytes().all(|b| ok(b) || b == b'-')
        && name.bytes().next().is_some_and(ok)
        && name.bytes().last().is_some_and(ok)
        && !name.contains("--")
}

/// The audit settings' problems, each naming its setting: a run with any of them stops at its
/// start, and `validate --settings` lists them.
pub fn check_settings(settings: &Settings) -> Result<(), Vec<SettingError>> {
    let mut problems = Vec::new();
    if let ContainerChoice::Named(name) = container_choice(settings) {
        if !is_container_name(&name) {
            problems.push(SettingError {
                setting: AUDIT_LOG_BLOB_CONTAINER.into(),
                message: "not a blob container name; expected 3 to 63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit (or \"off\")".into(),
            });
        } else if !storage_is_set(settings) {
            problems.push(SettingError {
                setting: AUDIT_LOG_BLOB_CONTAINER.into(),
                message: format!(
                    "names a container, but {0} (or {0}__blobServiceUri / {0}__accountName) is not set: the blob trail lives in the host storage account",
                    crate::azure::storage::STORAGE_SETTING
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

impl Sink {
    /// No sink: nothing is recorded.
    pub fn none() -> Self {
        Self::default()
    }

    /// The sinks the settings ask for, the blob trail on `storage` (the host storage account's
    /// client, the run lock's: [`crate::rotation::lock::RunLock::blob_client`]).
    pub fn new(settings: &Settings, storage: Option<&BlobClient>) -> Self {
        let under_host = settings.get(FUNCTIONS_PORT_SETTING).is_some();
        let container = match container_choice(settings) {
            ContainerChoice::Named(name) => Some(name),
            ContainerChoice::Default if under_host => Some(AUDIT_CONTAINER.to_string()),
            _ => None,
        };
        Self {
            file: settings.get(AUDIT_LOG_FILE).map(PathBuf::from),
            blob: storage
                .zip(container)
                .map(|(client, container)| blob::BlobSink::new(client.clone(), &container)),
            policy: Arc::new(RetryPolicy::from_limits(&settings.outbound)),
        }
    }

    /// [`Sink::new`] on a client of its own, for a reader that has no
    /// [`crate::rotation::Rotator`] at hand (the storage client is built as the run lock's).
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        Ok(Self::new(settings, storage_client(settings)?.as_ref()))
    }

    /// Whether no sink applies.
    pub fn is_none(&self) -> bool {
        self.file.is_none() && self.blob.is_none()
    }

    /// The blob trail, when it applies.
    pub fn blob(&self) -> Option<&blob::BlobSink> {
        self.blob.as_ref()
    }

    /// The local file, when it applies.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// What the sinks are, for the log: `blob <account>/<container>, file <path>` or `none`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = &self.blob {
            parts.push(b.describe());
        }
        if let Some(f) = &self.file {
            parts.push(format!("file {}", f.display()));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// The call of one audit write or read: this process's retry policy and its own
    /// [`AUDIT_WAIT`] (a run's records are written after its deadline may have passed).
    pub fn call(&self) -> Call {
        Call::new(self.policy.clone(), Some(Instant::now() + AUDIT_WAIT))
    }

    /// Appends `events` of `run_id` to each sink: its name for messages, and `Ok` or the count
    /// of records written and why not the rest.
    async fn append(
        &self,
        run_id: &str,
        origin: &Origin,
        events: &[Event],
    ) -> Vec<(String, Result<(), (usize, String)>)> {
        let mut out = Vec::new();
        if let Some(b) = &self.blob {
            let call = self.call();
            let now = OffsetDateTime::now_utc();
            let result = within(&call, b.append(&call, run_id, origin, events, now))
                .await
                .unwrap_or_else(|late| Err((0, late)));
            out.push((b.describe(), result));
        }
        if let Some(path) = &self.file {
            let (path, run_id, origin, events) = (
                path.clone(),
                run_id.to_string(),
                origin.clone(),
                events.to_vec(),
            );
            // The file's I/O blocks: off the async workers.
            let result =
                tokio::task::spawn_blocking(move || file::append(&path, &run_id, &origin, &events))
                    .await
                    .unwrap_or_else(|e| Err(format!("the write did not finish: {e}")))
                    .map_err(|why| (0, why));
            out.push((AUDIT_LOG_FILE.to_string(), result));
        }
        out
    }

    /// Every line of the trail, in order: the blob trail's (all its blobs in name order) when it
    /// applies, else the file's; an error when neither applies or the trail cannot be read.
    pub async fn read_lines(&self) -> Result<Vec<String>, String> {
        if let Some(b) = &self.blob {
            let call = self.call();
            let blobs = within(&call, b.read(&call))
                .await
                .map_err(|late| format!("{}: {late}", b.describe()))??;
            return Ok(blobs.into_iter().flat_map(|b| b.lines).collect());
        }
        if let Some(path) = self.file.clone() {
            return tokio::task::spawn_blocking(move || file::read_lines(&path))
                .await
                .unwrap_or_else(|e| Err(format!("the read did not finish: {e}")));
        }
        Err(format!(
            "no audit trail: set {AUDIT_LOG_FILE}, or run as the Functions host with {} set",
            crate::azure::storage::STORAGE_SETTING
        ))
    }
}

impl Sink {
    /// The last `n` lines of the trail [`Sink::read_lines`] reads (fewer when it has fewer);
    /// for the blob trail only the last blobs needed are read.
    pub async fn tail_lines(&self, n: usize) -> Result<Vec<String>, String> {
        if let Some(b) = &self.blob {
            let call = self.call();
            return within(&call, b.tail(&call, n))
                .await
                .map_err(|late| format!("{}: {late}", b.describe()))?;
        }
        let mut lines = self.read_lines().await?;
        let skip = lines.len().saturating_sub(n);
        Ok(lines.split_off(skip))
    }
}

/// `work` within `call`'s deadline ([`AUDIT_WAIT`] from [`Sink::call`]), or why not.
async fn within<T>(call: &Call, work: impl std::future::Future<Output = T>) -> Result<T, String> {
    let deadline = call.deadline().unwrap_or_else(Instant::now);
    tokio::time::timeout_at(deadline.into(), work)
        .await
        .map_err(|_| format!("no answer within {} s", AUDIT_WAIT.as_secs()))
}

/// Every line of the audit trail the settings name, in order ([`Sink::read_lines`] of
/// [`Sink::from_settings`]): what the dashboard's audit tail reads.
pub async fn read_lines(settings: &Settings) -> Result<Vec<String>, String> {
    Sink::from_settings(settings)?.read_lines().await
}

/// The blob trail of the host storage account the settings name, for the command line's
/// `audit verify|export --storage` (wherever it runs): `None` when no storage account is set.
pub fn storage_trail(settings: &Settings) -> Result<Option<blob::BlobSink>, String> {
    let container = match container_choice(settings) {
        ContainerChoice::Off => {
            return Err(format!(
                "{AUDIT_LOG_BLOB_CONTAINER} is off: there is no blob trail to read"
            ))
        }
        ContainerChoice::Named(name) => name,
        ContainerChoice::Default => AUDIT_CONTAINER.to_string(),
    };
    Ok(storage_client(settings)?.map(|c| blob::BlobSink::new(c, &container)))
}

/// The host storage account's client, built from the settings alone exactly as the run lock
/// builds it (connection string, or identity-based `AzureWebJobsStorage__*`).
fn storage_client(settings: &Settings) -> Result<Option<BlobClient>, String> {
    if !storage_is_set(settings) {
        return Ok(None);
    }
    let ca = settings
        .trusted_ca_file
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|e| {
                format!(
                    "{}: cannot read {}: {e}",
                    crate::azure::http::TRUSTED_CA_SETTING,
                    path.display()
                )
            })
        })
        .transpose()?;
    let http = crate::azure::http::build_client(ca.as_deref(), settings.outbound.request_timeout)
        .map_err(|e| e.to_string())?;
    let credential = crate::azure::credential::build(settings, &http);
    let lock = crate::rotation::lock::RunLock::from_settings(settings, Ok(&http), credential)
        .map_err(|e| e.to_string())?;
    Ok(lock.blob_client().cloned())
}

/// The events of one handout: `key.created` when it renewed the key (not in a dry run, which
/// renews nothing), then `key.handedOut`.
fn handout_events(
    grant: &crate::toolkit::KeyGrant,
    dry_run: bool,
    now: OffsetDateTime,
) -> Vec<Event> {
    let event = |action, message: String| Event {
        time: rfc3339::format(now, rfc3339::Fraction::Millis),
        app: grant.app_name.clone(),
        target: String::new(),
        action,
        old_key: None,
        new_key: Some(grant.api_key.redacted()),
        outcome: "success",
        code: None,
        message,
    };
    let mut out = Vec::new();
    if grant.renewed && !dry_run {
        out.push(event("key.created", grant.message.clone()));
    }
    let what = if dry_run { " (dry run)" } else { "" };
    out.push(event(
        "key.handedOut",
        format!("{} handed out{what}", grant.api_key),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::report::ReportEntry;
    use time::macros::datetime;

    fn event(app: &str, action: &'static str) -> Event {
        Event {
            time: "2026-12-01T06:00:00.000Z".into(),
            app: app.into(),
            target: String::new(),
            action,
            old_key: None,
            new_key: Some("****x7K2".into()),
            outcome: "success",
            code: None,
            message: "m".into(),
        }
    }

    fn log(n: usize) -> Vec<String> {
        let events: Vec<Event> = (0..n)
            .map(|i| event(&format!("app{i}"), "key.created"))
            .collect();
        chain(&Head::empty(), "run-1", &Origin::default(), &events).0
    }

    fn check(lines: &[String]) -> Result<Verified, Broken> {
        verify(lines.iter().map(String::as_str))
    }

    #[test]
    fn an_intact_chain_verifies_and_continues_across_runs() {
        let lines = log(4);
        let v = check(&lines).unwrap();
        assert_eq!(v.records, 4);
        assert_eq!(v.head, Head::after(&lines[3]).unwrap());
        let first = parse(&lines[0]).unwrap();
        assert_eq!((first.seq, first.prev.as_str()), (1, genesis().as_str()));
        // A second run chains after the first's last line.
        let (more, _) = chain(
            &v.head,
            "run-2",
            &Origin::default(),
            &[event("b", "run.ended")],
        );
        let all: Vec<String> = lines.into_iter().chain(more).collect();
        assert_eq!(check(&all).unwrap().records, 5);
        assert!(check(&[]).is_ok());
    }

    #[test]
    fn an_edited_field_is_detected_at_the_next_line() {
        let mut lines = log(4);
        lines[1] = lines[1].replace("app1", "appX");
        assert!(lines[1].contains("appX"));
        let b = check(&lines).unwrap_err();
        assert_eq!(b.line, 3, "{b}");
        assert!(b.why.contains("line 2"), "{b}");
    }

    #[test]
    fn a_deleted_line_is_detected() {
        let mut lines = log(4);
        lines.remove(1);
        assert_eq!(check(&lines).unwrap_err().line, 2);
        let mut first_gone = log(3);
        first_gone.remove(0);
        assert_eq!(check(&first_gone).unwrap_err().line, 1);
    }

    #[test]
    fn swapped_lines_are_detected() {
        let mut lines = log(4);
        lines.swap(1, 2);
        assert_eq!(check(&lines).unwrap_err().line, 2);
    }

    #[test]
    fn an_inserted_line_is_detected() {
        let mut lines = log(4);
        // Even a well-formed record chained after line 1 breaks the chain at the next line.
        let head = Head::after(&lines[0]).unwrap();
        let (forged, _) = chain(
            &head,
            "run-x",
            &Origin::default(),
            &[event("x", "key.revoked")],
        );
        lines.insert(1, forged[0].clone());
        let b = check(&lines).unwrap_err();
        assert_eq!(b.line, 3, "{b}");
        let mut garbage = log(2);
        garbage.insert(1, "{}".into());
        assert_eq!(check(&garbage).unwrap_err().line, 2);
    }

    #[test]
    fn a_rehashed_edit_is_still_detected_at_the_next_line() {
        // Whoever edits a line and recomputes its successor's prev breaks the one after.
        let mut lines = log(4);
        lines[1] = lines[1].replace("app1", "appX");
        let mut r = parse(&lines[2]).unwrap();
        r.prev = sha256_hex(lines[1].as_bytes());
        lines[2] = serde_json::to_string(&r).unwrap();
        assert_eq!(check(&lines).unwrap_err().line, 4);
    }

    #[test]
    fn a_report_maps_to_one_event_per_entry() {
        let mut report = Report::new(false);
        report.timestamp = "2026-12-01T06:00:02.000Z".into();
        let key = crate::secret::ApiKey::new("a-full-key-value-x7K2".to_string());
        report.successes = vec![
            ReportEntry::new("TOOLKIT", "A", "", "renewed").with_key(&key),
            ReportEntry::new("KEY_VAULT", "A", "kv/s", "updated").with_key(&key),
            ReportEntry::new("REVOCATION", "A", "", "revoked").with_key(&key),
            ReportEntry::new("KEY_CHECK", "A", "", "accepted").with_key(&key),
            ReportEntry::new("ROLLBACK", "A", "", "rolled back").with_key(&key),
        ];
        report.errors =
            vec![ReportEntry::new("APPLICATION_API", "B", "h/p", "refused").with_code("Forbidden")];
        report.warnings = vec![ReportEntry::new("LOCK", "", "", "not released")];
        let events = events_of(&report, datetime!(2026-12-01 06:00:00 UTC));
        let actions: Vec<&str> = events.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                "run.started",
                "key.created",
                "target.written",
                "key.revoked",
                "key.checked",
                "rollback",
                "target.failed",
                "run.ended"
            ]
        );
        assert_eq!(events[0].time, "2026-12-01T06:00:00.000Z");
        assert_eq!(events[3].old_key.as_deref(), Some("****x7K2"));
        assert_eq!(events[2].new_key.as_deref(), Some("****x7K2"));
        assert_eq!(events[2].target, "KEY_VAULT kv/s");
        assert_eq!(events[6].code.as_deref(), Some("Forbidden"));
        assert_eq!(events[7].outcome, "failure");
        let (lines, _) = chain(&Head::empty(), &report.run_id, &Origin::default(), &events);
        assert!(lines.iter().all(|l| !l.contains("a-full-key-value")));
    }

    #[test]
    fn a_rollback_that_reactivated_its_key_records_the_reactivation() {
        let issued = |k: &str| crate::toolkit::IssuedKey {
            key: crate::secret::ApiKey::new(k),
            issued_at: None,
            expires_at: None,
            approved: true,
            api_products: Vec::new(),
            unfinished: false,
            made_by_rotator: true,
            revoked: false,
            replaces: None,
            pinned_at: None,
            withdrawn_at: None,
        };
        let mut outcome = crate::toolkit::RollbackOutcome {
            restored: issued("RESTOREDRESTOREDRESTORED0001"),
            withdrawn: issued("WITHDRAWNWITHDRAWNWITHDR0002"),
            reactivated: true,
            done_before: false,
        };
        let actions = |outcome: &crate::toolkit::RollbackOutcome| -> Vec<&str> {
            let mut report = Report::new(false);
            report.successes = vec![crate::rotation::rollback::entry("A", outcome, false)];
            events_of(&report, datetime!(2026-12-01 06:00:00 UTC))
                .iter()
                .map(|e| e.action)
                .collect()
        };
        assert_eq!(
            actions(&outcome),
            ["run.started", "rollback", "key.reactivated", "run.ended"]
        );
        outcome.reactivated = false;
        assert_eq!(actions(&outcome), ["run.started", "rollback", "run.ended"]);
    }

    #[test]
    fn who_is_the_principal_else_the_os_user() {
        let http = Origin {
            trigger: Trigger::Http,
            who: Some("principal ci@contoso.com (0b5c)".into()),
        };
        assert_eq!(http.who(), "principal ci@contoso.com (0b5c)");
        assert_eq!(Origin::default().who(), os_user());
        let (lines, _) = chain(&Head::empty(), "r", &http, &[event("a", "run.started")]);
        let r = parse(&lines[0]).unwrap();
        assert_eq!(
            (r.trigger, r.who.as_str()),
            (Trigger::Http, http.who().as_str())
        );
        assert!(lines[0].contains("\"trigger\":\"http\""));
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_blob_trail_is_the_hosts_default_and_a_setting_names_or_stops_it() {
        let storage = crate::azure::storage::BlobClient::new(
            reqwest::Client::new(),
            crate::azure::storage::StorageAccount::from_connection_string(
                "UseDevelopmentStorage=true",
            )
            .unwrap(),
        );
        let cs = ("AzureWebJobsStorage", "UseDevelopmentStorage=true");
        let host = ("FUNCTIONS_CUSTOMHANDLER_PORT", "7071");
        let container = |pairs: &[(&str, &str)]| {
            Sink::new(&settings(pairs), Some(&storage))
                .blob()
                .map(|b| b.container().to_string())
        };
        assert_eq!(container(&[cs, host]).as_deref(), Some(AUDIT_CONTAINER));
        // The command line writes the blob trail only when the container is named.
        assert_eq!(container(&[cs]), None);
        assert_eq!(
            container(&[cs, ("AUDIT_LOG_BLOB_CONTAINER", "audit-trail")]).as_deref(),
            Some("audit-trail")
        );
        assert_eq!(
            container(&[cs, host, ("AUDIT_LOG_BLOB_CONTAINER", "OFF")]),
            None
        );
        // Without a storage account, no blob trail whatever the settings.
        assert!(Sink::new(&settings(&[host]), None).blob().is_none());
        // The file applies beside it.
        let both = Sink::new(
            &settings(&[cs, host, ("AUDIT_LOG_FILE", "/tmp/a.jsonl")]),
            Some(&storage),
        );
        assert_eq!(
            both.describe(),
            "blob devstoreaccount1/apikey-rotator-audit, file /tmp/a.jsonl"
        );
        assert!(Sink::none().is_none());
    }

    #[test]
    fn a_bad_container_setting_names_it() {
        let cs = ("AzureWebJobsStorage", "UseDevelopmentStorage=true");
        assert!(check_settings(&settings(&[])).is_ok());
        assert!(check_settings(&settings(&[("AUDIT_LOG_BLOB_CONTAINER", "off")])).is_ok());
        assert!(check_settings(&settings(&[cs, ("AUDIT_LOG_BLOB_CONTAINER", "my-audit")])).is_ok());
        for bad in ["Audit", "ab", "a--b", "-abc", "abc-", "a_b"] {
            let e =
                check_settings(&settings(&[cs, ("AUDIT_LOG_BLOB_CONTAINER", bad)])).unwrap_err();
            assert_eq!(e[0].setting, AUDIT_LOG_BLOB_CONTAINER, "{bad}");
            assert!(e[0].message.contains("container name"), "{bad}: {}", e[0]);
        }
        let e = check_settings(&settings(&[("AUDIT_LOG_BLOB_CONTAINER", "my-audit")])).unwrap_err();
        assert!(e[0].message.contains("AzureWebJobsStorage"), "{}", e[0]);
        assert!(is_container_name(AUDIT_CONTAINER));
    }

    #[test]
    fn a_handout_records_the_key_created_first_when_it_renewed() {
        let grant = crate::toolkit::KeyGrant {
            app_name: "A".into(),
            api_key: crate::secret::ApiKey::new("a-full-key-value-x7K2"),
            issued_at: None,
            expires_at: None,
            renewed: true,
            message: "renewed".into(),
        };
        let now = datetime!(2026-12-01 06:00:00 UTC);
        let actions = |dry| -> Vec<&str> {
            handout_events(&grant, dry, now)
                .iter()
                .map(|e| e.action)
                .collect()
        };
        assert_eq!(actions(false), ["key.created", "key.handedOut"]);
        assert_eq!(actions(true), ["key.handedOut"]);
        let e = &handout_events(&grant, false, now)[1];
        assert_eq!(e.new_key.as_deref(), Some("****x7K2"));
        assert!(!e.message.contains("a-full-key-value"), "{}", e.message);
    }
}

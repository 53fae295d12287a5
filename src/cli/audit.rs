//! `apikey-rotator audit verify|export`: checks the audit trail's chain (the local file, or the
//! append blobs in the host storage account), and exports its records as CSV or JSON lines
//! ([`crate::audit`]).

use crate::audit::blob::TrailBlob;
use crate::audit::{self, AUDIT_LOG_FILE};
use crate::azure::storage::STORAGE_SETTING;
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The `audit` command's arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: AuditAction,
}

/// `audit verify` and `audit export`.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check that the audit log is intact: every record chained to the one before.
    ///
    /// Exit 0 when intact (prints the count and the last record's hash, to keep elsewhere),
    /// 1 when a line was edited, removed, inserted or moved (names the line and why), 2 when
    /// the log cannot be read.
    Verify {
        /// The log (default: the AUDIT_LOG_FILE setting).
        #[arg(long, conflicts_with = "storage")]
        file: Option<PathBuf>,
        /// Read the blob trail in the host storage account instead (AzureWebJobsStorage or its
        /// AzureWebJobsStorage__* form; the container of AUDIT_LOG_BLOB_CONTAINER). The default
        /// when AUDIT_LOG_FILE is not set and the storage account is.
        #[arg(long)]
        storage: bool,
    },
    /// Print the audit log's records on stdout, as CSV (with a header) or JSON lines.
    ///
    /// Only an intact log is exported (exit 1 otherwise, as `verify`); exit 2 when it cannot
    /// be read or an option is invalid.
    Export {
        /// The log (default: the AUDIT_LOG_FILE setting).
        #[arg(long, conflicts_with = "storage")]
        file: Option<PathBuf>,
        /// Read the blob trail in the host storage account instead (as `verify --storage`).
        #[arg(long)]
        storage: bool,
        /// The output format.
        #[arg(long, value_enum)]
        format: Format,
        /// Only records at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only records before this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
}

/// The export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Comma-separated, one header line, RFC 4180 quoting.
    Csv,
    /// The log's own lines, unchanged.
    Jsonl,
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 14] = [
    "time", "seq", "runId", "trigger", "who", "app", "target", "action", "oldKey", "newKey",
    "outcome", "code", "message", "prev",
];

/// Runs `audit`; the process exits with the returned code.
pub fn run(args: AuditArgs) -> ExitCode {
    match args.action {
        AuditAction::Verify { file, storage } => {
            let trail = match read(file, storage) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let lines = trail.lines();
            match audit::verify(lines.iter().map(String::as_str)) {
                Ok(v) => {
                    println!(
                        "intact: {} records{}; last seq {} sha256 {}",
                        v.records,
                        trail.where_(),
                        v.head.seq,
                        v.head.hash
                    );
                    ExitCode::SUCCESS
                }
                Err(b) => {
                    eprintln!("error: the audit log is not intact: {}", trail.broken(&b));
                    ExitCode::from(1)
                }
            }
        }
        AuditAction::Export {
            file,
            storage,
            format,
            since,
            until,
        } => {
            let (since, until) = match (bound("--since", since), bound("--until", until)) {
                (Ok(s), Ok(u)) => (s, u),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let trail = match read(file, storage) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let lines = trail.lines();
            if let Err(b) = audit::verify(lines.iter().map(String::as_str)) {
                eprintln!(
                    "error: the audit log is not intact, not exported: {}",
                    trail.broken(&b)
                );
                return ExitCode::from(1);
            }
            let mut out = std::io::stdout().lock();
            if matches!(format, Format::Csv) {
                let _ = writeln!(out, "{}", CSV_COLUMNS.join(","));
            }
            for line in &lines {
                // verify parsed every line already.
                let Ok(r) = audit::parse(line) else { continue };
                let t = OffsetDateTime::parse(&r.time, &Rfc3339).ok();
                let in_range =
                    t.is_some_and(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u));
                if !in_range {
                    continue;
                }
                let _ = match format {
                    Format::Jsonl => writeln!(out, "{line}"),
                    Format::Csv => writeln!(out, "{}", csv_row(&r)),
                };
            }
            ExitCode::SUCCESS
        }
    }
}

/// A trail as read: the file's lines, or the blobs of the blob trail.
enum Trail {
    /// The local file's lines.
    File(Vec<String>),
    /// The blob trail's blobs, in name order, in `container`.
    Blobs {
        /// Where they are: `blob <account>/<container>`.
        describe: String,
        /// The blobs.
        blobs: Vec<TrailBlob>,
    },
}

impl Trail {
    fn lines(&self) -> Vec<String> {
        match self {
            Trail::File(lines) => lines.clone(),
            Trail::Blobs { blobs, .. } => blobs.iter().flat_map(|b| b.lines.clone()).collect(),
        }
    }

    /// ` in 3 blobs of blob <account>/<container>` for the blob trail; nothing for a file.
    fn where_(&self) -> String {
        match self {
            Trail::File(_) => String::new(),
            Trail::Blobs { describe, blobs } => {
                format!(
                    " in {} of {describe}",
                    crate::rotation::report::plural(blobs.len(), "blob")
                )
            }
        }
    }

    /// Where the chain breaks: `line N: why` in a file, `<blob> line N: why` in the blob trail
    /// (the line counted within its blob; the why's own line numbers are the trail's).
    fn broken(&self, b: &audit::Broken) -> String {
        match self {
            Trail::File(_) => b.to_string(),
            Trail::Blobs { blobs, .. } => match audit::blob::locate(blobs, b.line) {
                Some((name, line)) => {
                    format!(
                        "{name} line {line} (line {} of the trail): {}",
                        b.line, b.why
                    )
                }
                None => b.to_string(),
            },
        }
    }
}

/// The trail (the file of `--file` or AUDIT_LOG_FILE, or with `storage` or by default when
/// only the storage account is set, the blob trail), or the exit code 2 after saying why it
/// cannot be read.
fn read(file: Option<PathBuf>, storage: bool) -> Result<Trail, ExitCode> {
    let fail = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    };
    let path = file.or_else(|| {
        std::env::var_os(AUDIT_LOG_FILE)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let (Some(path), false) = (&path, storage) {
        return audit::file::read_lines(path).map(Trail::File).map_err(fail);
    }
    let settings = crate::settings::Settings::from_env();
    let Some(trail) = audit::storage_trail(&settings).map_err(fail)? else {
        return Err(fail(if storage {
            format!("--storage: {STORAGE_SETTING} (or its {STORAGE_SETTING}__* form) is not set")
        } else {
            format!("no audit log: pass --file, set {AUDIT_LOG_FILE}, or set {STORAGE_SETTING} (with --storage)")
        }));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the async runtime: {e}")))?;
    let sink = audit::Sink::none();
    let blobs = runtime
        .block_on(async {
            let call = sink.call();
            let deadline = call.deadline().unwrap_or_else(std::time::Instant::now);
            tokio::time::timeout_at(deadline.into(), trail.read(&call))
                .await
                .unwrap_or_else(|_| Err(format!("{}: no answer in time", trail.describe())))
        })
        .map_err(fail)?;
    Ok(Trail::Blobs {
        describe: trail.describe(),
        blobs,
    })
}

fn bound(option: &str, value: Option<String>) -> Result<Option<OffsetDateTime>, String> {
    value
        .map(|v| {
            OffsetDateTime::parse(v.trim(), &Rfc3339).map_err(|_| {
                format!(
                    "{option}: expected an RFC 3339 time such as 2026-11-01T00:00:00Z, got \"{v}\""
                )
            })
        })
        .transpose()
}

/// One CSV row of `r`, in [`CSV_COLUMNS`]' order.
fn csv_row(r: &audit::Record) -> String {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    [
        r.time.clone(),
        r.seq.to_string(),
        r.run_id.clone(),
        r.trigger.as_str().to_string(),
        r.who.clone(),
        r.app.clone(),
        r.target.clone(),
        r.action.clone(),
        opt(&r.old_key),
        opt(&r.new_key),
        r.outcome.clone(),
        opt(&r.code),
        r.message.clone(),
        r.prev.clone(),
    ]
    .iter()
    .map(|f| csv_field(f))
    .collect::<Vec<_>>()
    .join(",")
}

/// RFC 4180: a field with a comma, quote or line end is quoted, its quotes doubled.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn bounds_are_rfc3339() {
        assert!(bound("--since", Some("2026-11-01T00:00:00Z".into()))
            .unwrap()
            .is_some());
        let e = bound("--until", Some("yesterday".into())).unwrap_err();
        assert!(e.contains("--until") && e.contains("yesterday"), "{e}");
    }
}

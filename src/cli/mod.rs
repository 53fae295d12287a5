//! The command line (PRODUCT.md §8): `serve`, `rotate`, `status`, `validate`, `seal`, `toolkit`,
//! `sandbox`, `demo`, `completions` (`sandbox` and `demo` with the `sandbox` feature only, so the deployable
//! binary carries no sandbox code).
//!
//! Output for people and for programs: a command's result on stdout (the report as JSON, a
//! sealed value); logs, the progress bar and the human summary on stderr. Logs are text for a
//! person at a terminal and JSON lines otherwise ([`crate::logging::choose_format`],
//! `--log-format` to choose).

mod audit;
#[cfg(feature = "sandbox")]
mod demo;
mod progress;
mod seal;
mod status;
mod toolkit;
mod validate;

use crate::functions;
use crate::logging::{self, LogFormat, LogStream};
use crate::rotation::{Rotator, RunError, RunOptions};
use crate::settings::{Settings, MAPPING_SETTINGS};
use clap::{CommandFactory, Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// API Key Rotator for Azure: renews API keys in the API manager before they expire and
/// writes them into Key Vault and the apps' own APIs. Settings come from the environment
/// (the function app's app settings); see the README for the list.
#[derive(Debug, Parser)]
#[command(name = "apikey-rotator", version, propagate_version = true)]
pub struct Cli {
    /// What to do. Without a command, `serve` when FUNCTIONS_CUSTOMHANDLER_PORT is set.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Log lines as text (for a person) or json (one object per line). Default: text when
    /// the logs go to a terminal, json when they are piped or redirected and under the
    /// Functions host.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Azure Functions custom handler (what the Functions host starts).
    Serve {
        /// Port on 127.0.0.1; the host passes FUNCTIONS_CUSTOMHANDLER_PORT.
        #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT", default_value_t = 7071)]
        port: u16,
    },
    /// Run one rotation now and print the report as JSON on stdout.
    ///
    /// On stderr: a progress bar (on a terminal only) and, with text logs, a summary that
    /// marks each failure with its code and what to do. Exit 1 when a target failed, 2 when
    /// the run could not start, 3 when another run is in progress.
    Rotate {
        /// Read the apps mapping from this file instead of APIKEYROTATIONAPPS(2,3).
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Plan only: read and compare, renew nothing, write nothing. The report says what the
        /// run would do (the renewals and every write they cause), counted as "would".
        #[arg(long)]
        dry_run: bool,
        /// Only this API-manager app.
        #[arg(long)]
        app: Option<String>,
        /// With --app: renew the key now, whatever its expiry (emergency rotation).
        #[arg(long, requires = "app")]
        force: bool,
        /// With --force --app: `immediate` reads every written target back, then revokes the
        /// replaced (leaked) key at once, grace period ignored; it does not revoke, and says
        /// why, unless every target holds the new key.
        #[arg(long, value_name = "WHEN", value_parser = ["immediate"], requires = "force")]
        revoke: Option<String>,
    },
    /// Check the apps mapping, or with --settings / --env everything a run needs.
    ///
    /// By default the mapping alone (no settings needed: the settings it names are listed as
    /// notes). With --settings or --env, also every setting, the sealed company details and
    /// the settings the mapping names. Every problem is printed on stderr with its setting or
    /// JSON path, what is valid on stdout; exit 2 when there is a problem.
    Validate {
        /// Read the apps mapping from this file instead of APIKEYROTATIONAPPS(2,3).
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Also check every setting of the process environment: formats, COMPANYDETAILS
        /// unsealed with TOOLKITUUID, the location binding against WEBSITE_SITE_NAME, the
        /// credential, and that the settings the mapping names exist.
        #[arg(long)]
        settings: bool,
        /// Like --settings, with the Values of this Core Tools local.settings.json
        /// ({"IsEncrypted": false, "Values": {...}}) over the process environment.
        #[arg(long, value_name = "FILE")]
        env: Option<PathBuf>,
    },
    /// Seal company details into the COMPANYDETAILS value, or --check a sealed value.
    ///
    /// Sealing reads the company-details JSON and prints the value of the COMPANYDETAILS app
    /// setting; invalid details are refused with the field's path. --check shows what a
    /// sealed value contains, its secrets redacted.
    Seal {
        /// The toolkit UUID (TOOLKITUUID); when sealing without it, a new one is generated and
        /// printed on stderr.
        #[arg(long)]
        uuid: Option<String>,
        /// The company-details JSON file, or - for standard input.
        #[arg(
            long = "in",
            value_name = "FILE",
            required_unless_present = "check",
            conflicts_with = "check"
        )]
        input: Option<PathBuf>,
        /// Check a sealed value instead: open it with --uuid and print its contents as JSON,
        /// the private key, client e-mail and IDs redacted; with WEBSITE_SITE_NAME set, also
        /// check its location binding. Exit 2 when it does not open or is invalid.
        #[arg(long, requires = "uuid")]
        check: bool,
        /// With --check: the sealed value (standard input when absent or -).
        #[arg(long, requires = "check", value_name = "SEALED")]
        value: Option<String>,
    },
    /// Run the standalone (on-premises) toolkit: POST https://localhost:PORT/getkey.
    ///
    /// Answers {"appName": "..."} as ToolkitApp does (renewing the key first when it is due),
    /// from the sealed company details (COMPANYDETAILS or --company-details) opened with --uuid.
    /// Serves a self-signed certificate made on the first start and kept in the instance's
    /// state folder (printed at start), or --cert/--key. Runs until ctrl-c or SIGTERM; exit 2
    /// when it cannot start (port in use, incorrect Toolkit UUID).
    Toolkit(toolkit::ToolkitArgs),
    /// Start the local doubles of every outside service and write DIR/sandbox.json.
    ///
    /// Runs until stopped (ctrl-c).
    #[cfg(feature = "sandbox")]
    Sandbox {
        /// Where to write ca.pem and sandbox.json.
        #[arg(long, default_value = ".sandbox")]
        dir: PathBuf,
        /// Seed a bulk workload of this many apps (three targets each) instead of the demo data.
        #[arg(long, value_name = "APPS", value_parser = clap::value_parser!(u32).range(1..=100_000))]
        workload: Option<u32>,
        /// Milliseconds added to every answer of every double (the admin endpoint excepted).
        #[arg(long, value_name = "MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
        latency_ms: u64,
        /// The services' published limits: `off`, or a time factor that multiplies every refill
        /// rate (`1`: the published numbers). Default: `1` with --workload, `off` without.
        #[arg(long, value_name = "off|FACTOR", value_parser = crate::sandbox::Throttling::parse)]
        limits: Option<crate::sandbox::Throttling>,
        /// Once started, also write a Core Tools local.settings.json (default: in the current
        /// folder) holding every setting of the sandbox, for `func start` against it.
        #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "local.settings.json")]
        write_local_settings: Option<PathBuf>,
    },
    /// Start the sandbox and the handler and run ApiKeyRotator twice over HTTP.
    ///
    /// The first run renews and updates, the second finds nothing to do; prints what
    /// happened.
    #[cfg(feature = "sandbox")]
    Demo {
        /// Where to write the sandbox's files (a temporary folder when absent).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Show every app's keys, which one is current and why, when it is due for renewal, and
    /// which key each target holds.
    ///
    /// Reads exactly what `rotate --dry-run` reads and writes nothing (it takes no run lock).
    /// Prints a table per app on stdout, the targets that do not hold their app's current key
    /// (drift) first; with --json, the KeyStatus function's body. Exit 0 when every target
    /// holds its app's current key, 1 on drift or when something could not be read, 2 when it
    /// could not start (settings, mapping, an --app not in the mapping, TOOLKIT_APP_URL set).
    Status {
        /// Read the apps mapping from this file instead of APIKEYROTATIONAPPS(2,3).
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Only this API-manager app.
        #[arg(long)]
        app: Option<String>,
        /// Print the answer as JSON (the body of GET /api/KeyStatus) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Write the Dashboard function's page to a file: every app's keys on an expiry timeline,
    /// drift, the last runs and the audit tail (from AUDIT_LOG_FILE), as one self-contained
    /// HTML page.
    ///
    /// Reads what `status` reads and writes nothing else. Exit 0 when the page was written, 2
    /// when it could not be (as `status`'s 2, or the file).
    Dashboard {
        /// The HTML file to write.
        #[arg(long)]
        out: PathBuf,
        /// Read the apps mapping from this file instead of APIKEYROTATIONAPPS(2,3).
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Only this API-manager app.
        #[arg(long)]
        app: Option<String>,
    },
    /// Roll an app back to the key its current key replaced, and redistribute it.
    ///
    /// For a new key that turned out bad: the previous key (still valid; reactivated when it
    /// was revoked) becomes current again and stays current (renewals hold off until a forced
    /// renewal, or its last 7 days); every target gets it; the bad key is withdrawn and
    /// revoked once every target holds the previous one. Prints the report as `rotate` does,
    /// with the same exit codes; `status` shows the result. Running it again finishes an
    /// interrupted rollback and changes nothing more.
    Rollback {
        /// The API-manager app to roll back.
        #[arg(long)]
        app: String,
        /// Read the apps mapping from this file instead of APIKEYROTATIONAPPS(2,3).
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Plan only: say which keys would change and which targets would get the restored
        /// key; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a shell completion script on stdout.
    ///
    /// For example `apikey-rotator completions bash > /etc/bash_completion.d/apikey-rotator`,
    /// or `apikey-rotator completions zsh > "${fpath[1]}/_apikey-rotator"`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Check the audit trail (`verify`) or export it (`export --format csv|jsonl`).
    Audit(audit::AuditArgs),
}

/// Runs the command line; the process exits with the returned code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    let command = match cli.command {
        Some(c) => c,
        None if std::env::var_os("FUNCTIONS_CUSTOMHANDLER_PORT").is_some() => Command::Serve {
            port: std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(7071),
        },
        None => {
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match command {
        #[cfg(feature = "sandbox")]
        Command::Demo { dir } => return demo::run(dir, log_format),
        Command::Seal {
            uuid,
            input,
            check,
            value,
        } => {
            return if check {
                let site = std::env::var("WEBSITE_SITE_NAME")
                    .ok()
                    .filter(|s| !s.trim().is_empty());
                seal::check(uuid.as_deref().unwrap_or_default(), value, site.as_deref())
            } else {
                seal::seal(uuid, input.as_deref().unwrap_or(Path::new("-")))
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "apikey-rotator",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Validate {
            mapping,
            settings,
            env,
        } => return validate(mapping, settings, env.as_deref()),
        Command::Audit(args) => return audit::run(args),
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        match command {
            Command::Serve { port } => {
                let terminal = std::io::stdout().is_terminal();
                logging::init(
                    logging::choose_format(log_format, true, terminal),
                    LogStream::Stdout,
                    terminal,
                );
                let state = Arc::new(Rotator::new(Settings::from_env()));
                let served = functions::serve(state, port).await;
                crate::telemetry::shutdown().await;
                match served {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("cannot serve on port {port}: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            Command::Rotate {
                mapping,
                dry_run,
                app,
                force,
                revoke,
            } => {
                let options = RunOptions {
                    dry_run,
                    app,
                    force,
                    revoke: match revoke {
                        Some(_) => crate::rotation::revocation::RevokeMode::Immediately,
                        None => Default::default(),
                    },
                    ..Default::default()
                };
                rotate_with(mapping, options, log_format).await
            }
            Command::Rollback {
                app,
                mapping,
                dry_run,
            } => {
                let options = RunOptions {
                    dry_run,
                    app: Some(app),
                    rollback: true,
                    ..Default::default()
                };
                rotate_with(mapping, options, log_format).await
            }
            Command::Status { mapping, app, json } => {
                init_cli_logging(log_format);
                let settings = match settings_with_mapping(std::env::vars().collect(), mapping) {
                    Ok(s) => s,
                    Err(code) => return code,
                };
                let options = crate::rotation::StatusOptions {
                    app,
                    ..Default::default()
                };
                status::run(Rotator::new(settings), options, json).await
            }
            Command::Dashboard { out, mapping, app } => {
                init_cli_logging(log_format);
                let settings = match settings_with_mapping(std::env::vars().collect(), mapping) {
                    Ok(s) => s,
                    Err(code) => return code,
                };
                let options = crate::rotation::StatusOptions {
                    app,
                    ..Default::default()
                };
                let written = match crate::dashboard::page(&Rotator::new(settings), &options).await
                {
                    Ok(html) => std::fs::write(&out, html)
                        .map_err(|e| format!("cannot write {}: {e}", out.display())),
                    Err(e) => Err(e.to_string()),
                };
                match written {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            Command::Toolkit(args) => {
                init_cli_logging(log_format);
                toolkit::run(args).await
            }
            #[cfg(feature = "sandbox")]
            Command::Sandbox {
                dir,
                workload,
                latency_ms,
                limits,
                write_local_settings,
            } => {
                init_cli_logging(log_format);
                let options = crate::sandbox::SandboxOptions {
                    dir,
                    workload: workload.map(|n| n as usize),
                    latency: std::time::Duration::from_millis(latency_ms),
                    throttling: limits,
                };
                sandbox(options, write_local_settings).await
            }
            #[cfg(feature = "sandbox")]
            Command::Demo { .. } => unreachable!("handled above"),
            Command::Seal { .. }
            | Command::Completions { .. }
            | Command::Validate { .. }
            | Command::Audit(_) => {
                unreachable!("handled above")
            }
        }
    })
}

/// Logs on stderr, text for a person at a terminal, JSON lines otherwise (or as `flag` says).
/// Under the host (FUNCTIONS_CUSTOMHANDLER_PORT set) every command logs JSON.
fn init_cli_logging(flag: Option<LogFormat>) -> LogFormat {
    let terminal = std::io::stderr().is_terminal();
    let under_host = std::env::var_os("FUNCTIONS_CUSTOMHANDLER_PORT").is_some();
    let format = logging::choose_format(flag, under_host, terminal);
    logging::init(format, LogStream::Stderr, terminal);
    format
}

/// The settings of `env`, with the mapping read from `file` when given.
fn settings_with_mapping(
    env: BTreeMap<String, String>,
    file: Option<PathBuf>,
) -> Result<Settings, ExitCode> {
    env_with_mapping(env, file).map(Settings::from_map)
}

/// `env`, with the mapping read from `file` when given (replacing APIKEYROTATIONAPPS(2,3)).
fn env_with_mapping(
    mut env: BTreeMap<String, String>,
    file: Option<PathBuf>,
) -> Result<BTreeMap<String, String>, ExitCode> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(&file).map_err(|e| {
            eprintln!("error: --mapping {}: {e}", file.display());
            ExitCode::from(2)
        })?;
        for name in MAPPING_SETTINGS {
            env.remove(name);
        }
        env.insert(MAPPING_SETTINGS[0].to_string(), text);
    }
    Ok(env)
}

/// `rotate` and `rollback`: the process environment's settings, with the mapping from `mapping`
/// when given, then one run with `options`.
async fn rotate_with(
    mapping: Option<PathBuf>,
    options: RunOptions,
    log_format: Option<LogFormat>,
) -> ExitCode {
    let format = init_cli_logging(log_format);
    let settings = match settings_with_mapping(std::env::vars().collect(), mapping) {
        Ok(s) => s,
        Err(code) => return code,
    };
    rotate(Rotator::new(settings), options, format).await
}

async fn rotate(rotator: Rotator, mut options: RunOptions, format: LogFormat) -> ExitCode {
    let bar = progress::wanted(
        std::io::stderr().is_terminal(),
        std::env::var("TERM").ok().as_deref(),
    )
    .then(|| Arc::new(progress::Bar::start()));
    options.progress = bar.clone().map(|b| b as Arc<dyn crate::rotation::Progress>);
    let result = rotator.run(&options).await;
    // Its connections and caches are done with: free them before the report is written.
    drop(rotator);
    if let Some(bar) = &bar {
        bar.finish(result.is_ok());
    }
    match result {
        Ok(report) => {
            // Written as it is serialised: a report of thousands of targets is megabytes,
            // and a string of it would double the run's peak memory at its very end.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = serde_json::to_writer_pretty(&mut out, &report)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
                .and_then(|()| out.flush());
            drop(out);
            if let Err(e) = written {
                eprintln!("error: the report could not be written to stdout: {e}");
                return ExitCode::from(2);
            }
            // With JSON logs the "rotation run finished" line and the report say it all.
            if format == LogFormat::Text {
                eprintln!("{}", report.human_summary());
            }
            if report.has_errors() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(RunError::InProgress(m)) => {
            eprintln!("error: a run is in progress: {m}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `validate`: the mapping alone, or with `--settings`/`--env` everything a run needs. Every
/// problem is printed on stderr, what is valid on stdout.
fn validate(mapping: Option<PathBuf>, settings: bool, env_file: Option<&Path>) -> ExitCode {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    if let Some(file) = env_file {
        let values = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|text| validate::local_settings(&text));
        match values {
            Ok(values) => env.extend(values),
            Err(e) => {
                eprintln!("error: --env {}: {e}", file.display());
                return ExitCode::from(2);
            }
        }
    }
    let settings_mode = settings || env_file.is_some();
    let Ok(raw) = env_with_mapping(env, mapping) else {
        return ExitCode::from(2);
    };
    let findings = if settings_mode {
        validate::with_settings(&raw)
    } else {
        validate::mapping_only(&raw)
    };
    for line in &findings.valid {
        println!("{line}");
    }
    for note in &findings.notes {
        eprintln!("note: {note}");
    }
    for problem in &findings.problems {
        eprintln!("error: {problem}");
    }
    if findings.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{} found",
            crate::rotation::report::plural(findings.problems.len(), "problem")
        );
        ExitCode::from(2)
    }
}

#[cfg(feature = "sandbox")]
async fn sandbox(
    options: crate::sandbox::SandboxOptions,
    local_settings: Option<PathBuf>,
) -> ExitCode {
    let dir = options.dir.clone();
    let sandbox = match crate::sandbox::Sandbox::start(options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the sandbox: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &local_settings {
        let text = local_settings_json(&sandbox.info().env);
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: --write-local-settings {}: {e}", path.display());
            sandbox.shutdown().await;
            return ExitCode::from(2);
        }
        eprintln!(
            "wrote {} (Core Tools settings for this sandbox; `func start` reads it)",
            path.display()
        );
    }
    println!(
        "sandbox running; endpoints and settings in {}",
        dir.join("sandbox.json").display()
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&sandbox.info().endpoints).unwrap_or_default()
    );
    let _ = tokio::signal::ctrl_c().await;
    sandbox.shutdown().await;
    ExitCode::SUCCESS
}

/// A Core Tools `local.settings.json` for the sandbox: the custom-handler runtime, Azurite
/// for the host's storage, then every setting of the sandbox's `env` (which win).
#[cfg(feature = "sandbox")]
fn local_settings_json(env: &BTreeMap<String, String>) -> String {
    let mut values = serde_json::Map::new();
    values.insert("FUNCTIONS_WORKER_RUNTIME".into(), "custom".into());
    values.insert(
        "AzureWebJobsStorage".into(),
        "UseDevelopmentStorage=true".into(),
    );
    for (k, v) in env {
        values.insert(k.clone(), v.clone().into());
    }
    let file = serde_json::json!({ "IsEncrypted": false, "Values": values });
    serde_json::to_string_pretty(&file).expect("JSON serialises") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    #[cfg(feature = "sandbox")]
    fn local_settings_hold_the_runtime_and_every_sandbox_setting() {
        let env: BTreeMap<String, String> =
            [("TOOLKITUUID", "u"), ("FUNCTIONS_WORKER_RUNTIME", "custom")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let v: serde_json::Value = serde_json::from_str(&local_settings_json(&env)).unwrap();
        assert_eq!(v["IsEncrypted"], false);
        assert_eq!(v["Values"]["FUNCTIONS_WORKER_RUNTIME"], "custom");
        assert_eq!(
            v["Values"]["AzureWebJobsStorage"],
            "UseDevelopmentStorage=true"
        );
        assert_eq!(v["Values"]["TOOLKITUUID"], "u");
        let keys: Vec<&String> = v["Values"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys[..2],
            ["FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"]
        );
    }
}

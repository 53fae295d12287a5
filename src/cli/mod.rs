//! The command line (PRODUCT.md §8): `serve`, `rotate`, `validate`, `seal`, `sandbox`, `demo`.

mod demo;

use crate::functions;
use crate::logging::{self, LogTarget};
use crate::rotation::{Rotator, RunError, RunOptions};
use crate::settings::{Settings, MAPPING_SETTINGS};
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
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
    /// Run one rotation now and print the report as JSON on stdout (exit 1 when a target
    /// failed, 2 when the run could not start, 3 when another run is in progress).
    Rotate {
        /// Read the apps mapping from this file instead of APIKEYROTATIONAPPS(2,3).
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Plan only: read and compare, renew nothing, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only this API-manager app.
        #[arg(long)]
        app: Option<String>,
        /// With --app: renew the key now, whatever its expiry (emergency rotation).
        #[arg(long, requires = "app")]
        force: bool,
    },
    /// Check the settings and the apps mapping, listing every problem with its JSON path.
    Validate {
        /// Read the apps mapping from this file instead of APIKEYROTATIONAPPS(2,3).
        #[arg(long)]
        mapping: Option<PathBuf>,
    },
    /// Seal company details (JSON) into the value of the COMPANYDETAILS app setting.
    Seal {
        /// The toolkit UUID (TOOLKITUUID); a new one is generated and printed on stderr when absent.
        #[arg(long)]
        uuid: Option<String>,
        /// The company-details JSON file, or - for standard input.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
    },
    /// Start the local doubles of every outside service and write DIR/sandbox.json; runs until
    /// stopped (ctrl-c).
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
    },
    /// Start the sandbox and the handler, run ApiKeyRotator twice over HTTP (the first run
    /// renews and updates, the second finds nothing to do) and print what happened.
    Demo {
        /// Where to write the sandbox's files (a temporary folder when absent).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs the command line; the process exits with the returned code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        None if std::env::var_os("FUNCTIONS_CUSTOMHANDLER_PORT").is_some() => Command::Serve {
            port: std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(7071),
        },
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match command {
        Command::Demo { dir } => return demo::run(dir),
        Command::Seal { uuid, input } => return seal(uuid, &input),
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
                logging::init(LogTarget::StdoutJson);
                let state = Arc::new(Rotator::new(Settings::from_env()));
                match functions::serve(state, port).await {
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
            } => {
                init_cli_logging();
                let settings = match settings_with_mapping(mapping) {
                    Ok(s) => s,
                    Err(code) => return code,
                };
                rotate(
                    Rotator::new(settings),
                    RunOptions {
                        dry_run,
                        app,
                        force,
                        ..Default::default()
                    },
                )
                .await
            }
            Command::Validate { mapping } => {
                init_cli_logging();
                match settings_with_mapping(mapping) {
                    Ok(s) => validate(&s),
                    Err(code) => code,
                }
            }
            Command::Sandbox {
                dir,
                workload,
                latency_ms,
            } => {
                init_cli_logging();
                let options = crate::sandbox::SandboxOptions {
                    dir,
                    workload: workload.map(|n| n as usize),
                    latency: std::time::Duration::from_millis(latency_ms),
                };
                sandbox(options).await
            }
            Command::Demo { .. } | Command::Seal { .. } => unreachable!("handled above"),
        }
    })
}

fn init_cli_logging() {
    logging::init(if std::io::stderr().is_terminal() {
        LogTarget::StderrText
    } else {
        LogTarget::StderrJson
    });
}

/// The process environment, with the mapping read from `file` when given.
fn settings_with_mapping(file: Option<PathBuf>) -> Result<Settings, ExitCode> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
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
    Ok(Settings::from_map(env))
}

async fn rotate(rotator: Rotator, options: RunOptions) -> ExitCode {
    match rotator.run(&options).await {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("a report serialises")
            );
            eprintln!("{}", report.human_summary());
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

fn validate(settings: &Settings) -> ExitCode {
    let rotator = Rotator::new(settings.clone());
    let mut ok = true;
    for p in settings.check_for_rotation() {
        ok = false;
        eprintln!("setting {p}");
    }
    match rotator.mapping() {
        Ok(m) => println!(
            "mapping valid: {} apps, {} targets",
            m.apim_app_names().len(),
            m.target_count()
        ),
        Err(RunError::Mapping(errors)) => {
            ok = false;
            for e in errors.0 {
                eprintln!("mapping {}: {}: {}", e.setting, e.path, e.message);
            }
        }
        Err(e) => {
            ok = false;
            eprintln!("{e}");
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn seal(uuid: Option<String>, input: &std::path::Path) -> ExitCode {
    use std::io::Read;
    let mut text = Vec::new();
    let read = if input.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut text).map(|_| ())
    } else {
        std::fs::read(input).map(|t| text = t)
    };
    if let Err(e) = read {
        eprintln!("error: --in {}: {e}", input.display());
        return ExitCode::from(2);
    }
    let uuid = uuid.unwrap_or_else(|| {
        let generated = uuid::Uuid::new_v4().to_string();
        eprintln!("TOOLKITUUID={generated}");
        generated
    });
    // Invalid details are refused now, not at the first run.
    let sealed = crate::toolkit::sealed::parse_details(&text)
        .and_then(|_| crate::toolkit::sealed::seal(&uuid, &text));
    let sealed = match sealed {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{sealed}");
    ExitCode::SUCCESS
}

async fn sandbox(options: crate::sandbox::SandboxOptions) -> ExitCode {
    let dir = options.dir.clone();
    let sandbox = match crate::sandbox::Sandbox::start(options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the sandbox: {e}");
            return ExitCode::from(2);
        }
    };
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

//! `apikey-rotator demo`: the sandbox and the handler in one process, ApiKeyRotator called
//! twice over HTTP, and a short account of what happened.

use crate::functions::router;
use crate::logging::{self, LogFormat, LogStream};
use crate::rotation::report::plural;
use crate::rotation::Rotator;
use crate::sandbox::{Sandbox, SandboxInfo, SandboxOptions};
use crate::settings::Settings;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Runs the demo; exit 0 when the first run succeeded and the second found nothing to do.
/// Its account is for a person, so logs (warnings only, unless `RUST_LOG` says otherwise) are
/// text unless `log_format` asks for JSON.
pub fn run(dir: Option<PathBuf>, log_format: Option<LogFormat>) -> ExitCode {
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    logging::init(
        log_format.unwrap_or(LogFormat::Text),
        LogStream::Stderr,
        terminal,
    );
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("apikey-rotator-demo-{}", std::process::id()))
    });
    let info = match start_sandbox(dir) {
        Ok(info) => info,
        Err(e) => {
            eprintln!("error: cannot start the sandbox: {e}");
            return ExitCode::from(2);
        }
    };
    // The managed-identity credential of azure_identity reads IDENTITY_ENDPOINT and
    // IDENTITY_HEADER from the process environment, as it does in a function app. This runs
    // before the handler's runtime exists; the sandbox's threads never read the environment.
    for (name, value) in &info.env {
        std::env::set_var(name, value);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        match drive(&info).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        }
    })
}

/// Starts the sandbox on a runtime of its own that lives until the process ends.
fn start_sandbox(dir: PathBuf) -> Result<SandboxInfo, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => return drop(tx.send(Err(e.to_string()))),
        };
        runtime.block_on(async move {
            match Sandbox::start(SandboxOptions::new(dir)).await {
                Ok(sandbox) => {
                    let _ = tx.send(Ok(sandbox.info().clone()));
                    std::future::pending::<()>().await;
                }
                Err(e) => drop(tx.send(Err(e.to_string()))),
            }
        })
    });
    rx.recv()
        .map_err(|_| "the sandbox thread ended".to_string())?
}

async fn drive(info: &SandboxInfo) -> Result<bool, String> {
    let rotator = Arc::new(Rotator::new(Settings::from_map(info.env.clone())));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/api/ApiKeyRotator",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move { axum::serve(listener, router(rotator)).await });

    println!(
        "API Key Rotator demo: sandbox running, settings in {}",
        info.ca_cert_file.with_file_name("sandbox.json").display()
    );
    println!("Apigee X double: {}", info.endpoints.apigee);
    for (vault, endpoint) in &info.endpoints.key_vaults {
        println!("Key Vault {vault}: {endpoint}");
    }
    for (store, endpoint) in &info.endpoints.app_configurations {
        println!(
            "App Configuration {store}: {}",
            endpoint["endpoint"].as_str().unwrap_or_default()
        );
    }
    println!(
        "Resource Manager (sites, slots, static sites): {}",
        info.endpoints.resource_manager
    );
    for (name, endpoint) in &info.endpoints.application_apis {
        println!("Application API {name}: {endpoint}");
    }
    let client = reqwest::Client::new();
    let mut reports = Vec::new();
    for run in 1..=2 {
        let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let report: Value = response.json().await.map_err(|e| e.to_string())?;
        println!("\n== Run {run}: GET /api/ApiKeyRotator -> HTTP {status}");
        println!("{}", describe(&report));
        reports.push((status, report));
    }
    println!("\n== Reports");
    for (_, report) in &reports {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    }
    let first_ok = reports[0].0 == 200 && reports[0].1["summary"]["updated"].as_u64() > Some(0);
    let second_idle = reports[1].0 == 200
        && reports[1].1["summary"]["updated"] == 0
        && reports[1].1["summary"]["renewed"] == 0;
    println!(
        "\n{}",
        if first_ok && second_idle {
            "Demo passed: the first run renewed and rotated keys, the second found nothing to do."
        } else {
            "Demo FAILED: see the reports above."
        }
    );
    Ok(first_ok && second_idle)
}

/// A few lines for a person from a report (or an error body).
fn describe(report: &Value) -> String {
    if let Some(error) = report.get("error") {
        return format!("  error {}: {}", error["code"], error["message"]);
    }
    let s = &report["summary"];
    let n = |k: &str| s[k].as_u64().unwrap_or_default() as usize;
    let mut out = format!(
        "  {}, {}: {} updated, {} unchanged, {} failed; {} renewed",
        plural(n("apps"), "app"),
        plural(n("targets"), "target"),
        n("updated"),
        n("unchanged"),
        n("failed"),
        plural(n("renewed"), "key")
    );
    for (list, mark) in [
        ("successes", "+"),
        ("unchanged", "="),
        ("warnings", "WARNING"),
        ("errors", "FAILED"),
    ] {
        for e in report[list].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "\n  {mark} [{}] {}",
                e["type"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            ));
        }
    }
    out
}

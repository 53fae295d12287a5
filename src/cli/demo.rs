//! `apikey-rotator demo`: the sandbox and the handler in one process, ApiKeyRotator called
//! twice over HTTP, and a short account of what happened. Its on-premises part: two local files
//! (a `.env` and a `.properties`) in the demo's folder, rotated as `files` targets, and the
//! standalone toolkit (`apikey-rotator toolkit`, the same code) on a free port answering
//! `POST /getkey`.

use crate::functions::router;
use crate::logging::{self, LogFormat, LogStream};
use crate::rotation::report::plural;
use crate::rotation::Rotator;
use crate::sandbox::{Sandbox, SandboxInfo, SandboxOptions};
use crate::secret::redact;
use crate::settings::{Settings, MAPPING_SETTINGS, TOOLKIT_UUID};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Runs the demo; exit 0 when the first run succeeded, the second found nothing to do, the
/// on-premises files were rotated and the on-premises toolkit serves the key they hold.
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
    let info = match start_sandbox(dir.clone()).and_then(|info| {
        // The files kind resolves paths (symlinks followed): the folder as it resolves.
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        on_premises_files(&dir, info)
    }) {
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
    let dir = dir.canonicalize().unwrap_or(dir);
    runtime.block_on(async move {
        match drive(&info, &dir).await {
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

async fn drive(info: &SandboxInfo, dir: &Path) -> Result<bool, String> {
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
    let toolkit = start_toolkit(info, dir).await?;
    let files = demo_files(dir);
    println!(
        "On premises: toolkit https://localhost:{}/getkey (certificate {}); files {}",
        toolkit.port,
        toolkit.cert_file.display(),
        files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let before: Vec<Option<String>> = files.iter().map(DemoFile::key).collect();
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
    println!("\n== On premises: the files");
    let mut files_rotated = true;
    for (file, before) in files.iter().zip(&before) {
        let after = file.key();
        let shown = |k: &Option<String>| k.as_deref().map_or("(none)".to_string(), redact);
        println!(
            "  {} {}: {} -> {}",
            file.path.display(),
            file.name,
            shown(before),
            shown(&after)
        );
        files_rotated &= after.is_some() && after != *before;
    }
    let (status, answer) = getkey(&toolkit, ON_PREMISES_APP).await?;
    let served = answer["apiKey"].as_str().map(str::to_string);
    println!(
        "\n== On premises: POST https://localhost:{}/getkey {{\"appName\": \"{ON_PREMISES_APP}\"}} -> HTTP {status}",
        toolkit.port
    );
    let mut shown = answer.clone();
    if let Some(key) = &served {
        shown["apiKey"] = Value::String(redact(key));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&shown).unwrap_or_default()
    );
    // The toolkit hands out the very key the run wrote into the .properties file.
    let served_written = status == 200 && served.is_some() && served == files[1].key();
    println!(
        "  the key it serves is the one in {}: {}",
        files[1].path.display(),
        if served_written { "yes" } else { "NO" }
    );
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
    let passed = first_ok && second_idle && files_rotated && served_written;
    println!(
        "\n{}",
        if passed {
            "Demo passed: the first run renewed and rotated keys (in Azure and on premises), the second found nothing to do, and the on-premises toolkit serves the current key."
        } else {
            "Demo FAILED: see the reports above."
        }
    );
    Ok(passed)
}

/// The app whose key the on-premises toolkit is asked for (it is in the .properties file).
const ON_PREMISES_APP: &str = "APIKeyRotator_TestApp1_Sandbox";
/// The folder of the demo's on-premises files, inside the demo's folder.
const ON_PREMISES_FOLDER: &str = "on-premises";

/// One of the demo's local files and the entry holding a key.
struct DemoFile {
    path: PathBuf,
    format: &'static str,
    name: &'static str,
    app: &'static str,
    text: &'static str,
}

impl DemoFile {
    /// The value of the entry (`name=value` or `name = value`), if the file has it.
    fn key(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        text.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            (name.trim() == self.name).then(|| value.trim().to_string())
        })
    }
}

/// The two files of the on-premises part: an app's `.env` with App2's key and a Java service's
/// `.properties` with App1's, both holding a stale key and settings the rotator leaves alone.
fn demo_files(dir: &Path) -> [DemoFile; 2] {
    let folder = dir.join(ON_PREMISES_FOLDER);
    [
        DemoFile {
            path: folder.join("orders.env"),
            format: "env",
            name: "ORDERS_API_KEY",
            app: "APIKeyRotator_TestApp2_Sandbox",
            text: "# The orders worker on the build server (apikey-rotator demo, on premises)\n\
                   ORDERS_API_URL=https://api.contoso.example/v1\n\
                   ORDERS_API_KEY=stale-key-from-the-last-quarter\n",
        },
        DemoFile {
            path: folder.join("healthcheck.properties"),
            format: "properties",
            name: "healthcheck.apiKey",
            app: ON_PREMISES_APP,
            text: "# The health-check service (apikey-rotator demo, on premises)\n\
                   healthcheck.url=https://api.contoso.example/health\n\
                   healthcheck.apiKey=stale-key-from-the-last-quarter\n\
                   healthcheck.intervalSeconds=30\n",
        },
    ]
}

/// Writes the on-premises files into `dir`, and adds them to the demo's settings (and to
/// `sandbox.json`): a `files` section in the mapping, `FILES_ALLOWED_ROOTS` set to their folder.
fn on_premises_files(dir: &Path, mut info: SandboxInfo) -> Result<SandboxInfo, String> {
    let folder = dir.join(ON_PREMISES_FOLDER);
    std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    let mut section = Vec::new();
    for file in demo_files(dir) {
        std::fs::write(&file.path, file.text)
            .map_err(|e| format!("{}: {e}", file.path.display()))?;
        section.push(json!({
            "path": file.path, "format": file.format,
            "keys": [{"key": file.name, "apimAppName": file.app}],
        }));
    }
    let mapping_setting = MAPPING_SETTINGS[0];
    let mut mapping: Value = info
        .env
        .get(mapping_setting)
        .and_then(|m| serde_json::from_str(m).ok())
        .ok_or("the sandbox gave no mapping")?;
    mapping["files"] = Value::Array(section);
    info.env
        .insert(mapping_setting.to_string(), mapping.to_string());
    info.env.insert(
        crate::targets::files::ALLOWED_ROOTS_SETTING.to_string(),
        folder.display().to_string(),
    );
    let json = serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?;
    let sandbox_json = info.ca_cert_file.with_file_name("sandbox.json");
    std::fs::write(&sandbox_json, json).map_err(|e| format!("{}: {e}", sandbox_json.display()))?;
    Ok(info)
}

/// Starts the standalone toolkit (the code of `apikey-rotator toolkit`) on a free port, with
/// the demo's sealed details and its certificate kept in the demo's folder.
async fn start_toolkit(info: &SandboxInfo, dir: &Path) -> Result<OnPremisesToolkit, String> {
    let args = super::toolkit::ToolkitArgs {
        uuid: info.env.get(TOOLKIT_UUID).cloned().unwrap_or_default(),
        port: 0,
        instance: "demo".into(),
        state_dir: Some(dir.join("toolkit")),
        cert: None,
        key: None,
        company_details: None,
    };
    let toolkit = super::toolkit::listen(info.env.clone(), &args)
        .await
        .map_err(|e| format!("the on-premises toolkit: {e}"))?;
    let started = OnPremisesToolkit {
        port: toolkit.port,
        cert_file: toolkit.cert_file.clone(),
    };
    // It serves until the demo's process ends.
    tokio::spawn(toolkit.serve(std::future::pending()));
    Ok(started)
}

/// Where the demo's on-premises toolkit listens, and the certificate to trust.
struct OnPremisesToolkit {
    port: u16,
    cert_file: PathBuf,
}

/// `POST https://localhost:<port>/getkey` with `{"appName": app}`, trusting the toolkit's own
/// certificate: the status and the JSON answer.
async fn getkey(toolkit: &OnPremisesToolkit, app: &str) -> Result<(u16, Value), String> {
    let pem = std::fs::read(&toolkit.cert_file)
        .map_err(|e| format!("{}: {e}", toolkit.cert_file.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .tls_certs_merge(certs)
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(format!("https://localhost:{}/getkey", toolkit.port))
        .json(&json!({ "appName": app }))
        .send()
        .await
        .map_err(|e| format!("the on-premises toolkit: {e}"))?;
    let status = response.status().as_u16();
    let answer = response.json().await.map_err(|e| e.to_string())?;
    Ok((status, answer))
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

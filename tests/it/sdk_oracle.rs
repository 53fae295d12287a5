//! An oracle we did not write (issue 11, point 5): the official Azure SDKs for Python drive the
//! App Configuration and Resource Manager doubles through every operation the product uses, and
//! every request of those SDKs and of the product's own clients is checked against excerpts of
//! the official REST specifications (`tests/fixtures/specs/`): method, path template,
//! api-version and the query parameters the operation declares.
//!
//! The SDKs are installed once per machine into a virtualenv at
//! `$HOME/.cache/apikey-rotator/venv-oracle`, pinned to the exact versions of [`REQUIREMENTS`]
//! (recorded in its `.requirements`, reinstalled when they change). Without Python 3 or PyPI the
//! tests fail and say so; none is skipped.

use crate::common;

use common::{Env, Handler};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The official packages and every dependency they pull in, at exact versions (one per line;
/// `.ci/run` installs the same file into the same venv).
const REQUIREMENTS_TXT: &str = include_str!("../oracle/requirements.txt");

fn requirements() -> Vec<&'static str> {
    REQUIREMENTS_TXT
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The venv's Python, installed at most once per test process (and per machine, under a lock);
/// `app_insights.rs` runs the official Application Insights exporter with it.
pub(crate) fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(install_venv)
}

fn install_venv() -> PathBuf {
    let home = std::env::var("HOME").expect("HOME is set");
    let venv = PathBuf::from(home).join(".cache/apikey-rotator/venv-oracle");
    let python = venv.join("bin/python");
    let marker = venv.join(".requirements");
    let wanted = REQUIREMENTS_TXT.to_string();
    let installed =
        || python.is_file() && std::fs::read_to_string(&marker).ok() == Some(wanted.clone());
    if installed() {
        return python;
    }
    std::fs::create_dir_all(venv.parent().unwrap()).unwrap();
    // Test binaries run side by side: a directory created atomically is the install lock.
    let _lock = common::azurite::DirLock::take(&venv.with_extension("install.lock"));
    if installed() {
        return python;
    }
    let run = |command: &mut Command, what: &str| {
        let out = command.output().unwrap_or_else(|e| {
            panic!("{what}: cannot run it ({e}); Python 3 with venv is needed")
        });
        assert!(
            out.status.success(),
            "{what} failed ({}); the SDK oracle needs Python 3 and PyPI to install {}:\n{}{}",
            out.status,
            requirements().join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(requirements()),
        "pip install",
    );
    std::fs::write(&marker, &wanted).unwrap();
    python
}

/// Runs `tests/oracle/oracle.py GROUP sandbox.json` against `env`; its JSON report.
async fn oracle(env: &Env, group: &str) -> Value {
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/oracle.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(group)
        .arg(env.dir.path().join("sandbox.json"))
        // Trusted through connection_verify; no proxy may stand between the SDK and loopback.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("REQUESTS_CA_BUNDLE", &env.info.ca_cert_file)
        .output()
        .await
        .expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the official SDK failed against the double ({group}):\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{group}: {e}: {stdout}"))
}

/// One operation of a specification excerpt.
#[derive(Debug)]
struct SpecOperation {
    method: String,
    template: String,
    operation_id: String,
    /// Query parameters by lower-case name, with whether they are required.
    query: Vec<(String, bool)>,
    /// The file it came from and the api-version it documents.
    source: String,
    version: String,
}

/// Every operation of the excerpts in `tests/fixtures/specs/` whose name starts with `prefix`.
fn spec(prefix: &str) -> Vec<SpecOperation> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/specs");
    let mut ops = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    files.sort();
    for file in files {
        let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert!(
            doc["provenance"]["repository"].is_string() && doc["provenance"]["commit"].is_string(),
            "{}: provenance",
            file.display()
        );
        let resolve = |p: &Value| -> Value {
            match p["$ref"].as_str() {
                Some(r) => doc["parameters"][r.trim_start_matches("#/parameters/")].clone(),
                None => p.clone(),
            }
        };
        for (template, methods) in doc["paths"].as_object().unwrap() {
            for (method, op) in methods.as_object().unwrap() {
                let query = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(resolve)
                    .inspect(|p| assert!(p["name"].is_string(), "{template}: unresolved {p}"))
                    .filter(|p| p["in"] == "query")
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap().to_ascii_lowercase(),
                            p["required"] == true,
                        )
                    })
                    .collect();
                ops.push(SpecOperation {
                    method: method.to_ascii_uppercase(),
                    template: template.clone(),
                    operation_id: op["operationId"].as_str().unwrap().to_string(),
                    query,
                    source: file.file_name().unwrap().to_string_lossy().into_owned(),
                    version: doc["info"]["version"].as_str().unwrap().to_string(),
                });
            }
        }
    }
    assert!(!ops.is_empty(), "no specification excerpt named {prefix}*");
    ops
}

/// Whether `path` fits `template`: literal segments equal without regard to case (ARM and App
/// Configuration route that way), `{name}` any one non-empty segment.
fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') && t.ends_with('}') {
                !p.is_empty()
            } else {
                t.eq_ignore_ascii_case(p)
            }
        })
}

/// The operation a logged request is, or why it is none: its method and path must fit a
/// template, every required query parameter must be there and every one sent declared.
fn conforms<'a>(ops: &'a [SpecOperation], r: &Value) -> Result<&'a SpecOperation, String> {
    let method = r["method"].as_str().unwrap_or_default();
    let path = r["path"].as_str().unwrap_or_default();
    let sent: Vec<(String, String)> =
        url::form_urlencoded::parse(r["query"].as_str().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
            .collect();
    let op = ops
        .iter()
        .find(|op| op.method == method && path_matches(&op.template, path))
        .ok_or_else(|| format!("{method} {path}: no operation of the specification"))?;
    for (name, required) in &op.query {
        if *required && !sent.iter().any(|(k, _)| k == name) {
            return Err(format!(
                "{method} {path}: {} requires `{name}`",
                op.operation_id
            ));
        }
    }
    for (name, _) in &sent {
        if !op.query.iter().any(|(n, _)| n == name) {
            return Err(format!(
                "{method} {path}: `{name}` is not a query parameter of {}",
                op.operation_id
            ));
        }
    }
    Ok(op)
}

fn of<'a>(requests: &'a [Value], service: &str) -> Vec<&'a Value> {
    requests
        .iter()
        .filter(|r| r["service"] == service)
        .collect()
}

/// Every request `service` received conforms to the excerpts named `prefix*`; the
/// operationIds seen.
fn assert_conform(requests: &[Value], service: &str, prefix: &str) -> Vec<String> {
    let ops = spec(prefix);
    let mut seen: Vec<String> = of(requests, service)
        .into_iter()
        .map(|r| match conforms(&ops, r) {
            Ok(op) => op.operation_id.clone(),
            Err(e) => panic!("{service}: {e} ({r})"),
        })
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

/// App Configuration with HMAC (the store's connection string): add, get, set with If-Match
/// (a stale ETag refused), get with If-None-Match, list with key and label filters. Each signed
/// request of the SDK was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_configuration_with_hmac_passes_the_python_sdk() {
    let env = Env::start().await;
    let report = oracle(&env, "appconfig-hmac").await;
    let done = report["result"]["done"].as_array().unwrap();
    assert_eq!(done.len(), 8, "{report}");
    let requests = env.requests().await;
    let config = of(&requests, "appConfiguration");
    assert!(config.len() >= 10, "{config:#?}");
    assert!(
        config.iter().all(|r| r["status"] != 401),
        "an HMAC-signed request of the SDK was refused: {config:#?}"
    );
    let state = env.state().await;
    let kv = &state["appConfigurations"]["appcs-partners"]["keyValues"]
        ["oracle-hmac:ApiKey?label=oracle"];
    assert_eq!(kv["value"], "v2", "{kv}");
    let seen = assert_conform(&requests, "appConfiguration", "appconfiguration");
    assert_eq!(seen, ["GetKeyValue", "GetKeyValues", "PutKeyValue"]);
}

/// The same operations with an Entra ID token from the managed-identity endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_configuration_with_entra_passes_the_python_sdk() {
    let env = Env::start().await;
    let report = oracle(&env, "appconfig-entra").await;
    assert_eq!(
        report["result"]["done"].as_array().unwrap().len(),
        8,
        "{report}"
    );
    let requests = env.requests().await;
    assert!(!of(&requests, "identity").is_empty());
    let config = of(&requests, "appConfiguration");
    assert!(config.iter().all(|r| r["status"] != 401), "{config:#?}");
    let state = env.state().await;
    let kv = &state["appConfigurations"]["appcs-consumers"]["keyValues"]
        ["oracle-entra:ApiKey?label=oracle"];
    assert_eq!(kv["value"], "v2", "{kv}");
    let seen = assert_conform(&requests, "appConfiguration", "appconfiguration");
    assert_eq!(seen, ["GetKeyValue", "GetKeyValues", "PutKeyValue"]);
}

/// The site counts one restart per app-settings PUT, and its settings are what the SDK wrote.
async fn assert_replaced(env: &Env, site: &str, report: &Value) {
    let state = env.state().await;
    let s = &state["resourceManager"]["sites"][site];
    assert_eq!(s["restarts"], 1, "{site}: {s}");
    let mut names: Vec<&String> = s["appSettings"].as_object().unwrap().keys().collect();
    names.sort();
    let after: Vec<&str> = report["after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, after, "{site}");
    assert!(
        s["appSettings"]["ORACLE_SETTING"].is_string(),
        "{site}: {s}"
    );
}

/// `web_apps.list_application_settings` / `update_application_settings` on a Function App and a
/// Web App; a missing site is ResourceNotFound, one without a role AuthorizationFailed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_manager_sites_pass_the_python_sdk() {
    let env = Env::start().await;
    let report = oracle(&env, "arm-sites").await;
    assert_replaced(&env, "func-orders", &report["result"]["functionApp"]).await;
    assert_replaced(&env, "app-storefront", &report["result"]["webApp"]).await;
    let requests = env.requests().await;
    let seen = assert_conform(&requests, "resourceManager", "WebApps");
    assert_eq!(
        seen,
        [
            "WebApps_ListApplicationSettings",
            "WebApps_UpdateApplicationSettings"
        ]
    );
}

/// The `_slot` variants on both sites' staging slots; a missing slot is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_manager_slots_pass_the_python_sdk() {
    let env = Env::start().await;
    let report = oracle(&env, "arm-slots").await;
    assert_replaced(
        &env,
        "func-orders/slots/staging",
        &report["result"]["function_app"],
    )
    .await;
    assert_replaced(
        &env,
        "app-storefront/slots/staging",
        &report["result"]["web_app"],
    )
    .await;
    let state = env.state().await;
    assert_eq!(
        state["resourceManager"]["sites"]["func-orders"]["restarts"],
        0
    );
    let requests = env.requests().await;
    let seen = assert_conform(&requests, "resourceManager", "WebApps");
    assert_eq!(
        seen,
        [
            "WebApps_ListApplicationSettingsSlot",
            "WebApps_UpdateApplicationSettingsSlot"
        ]
    );
}

/// `static_sites.list_static_site_app_settings` / `create_or_update_static_site_app_settings`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_manager_static_sites_pass_the_python_sdk() {
    let env = Env::start().await;
    let report = oracle(&env, "arm-static-sites").await;
    assert_replaced(&env, "swa-portal", &report["result"]["staticSite"]).await;
    let requests = env.requests().await;
    let seen = assert_conform(&requests, "resourceManager", "StaticSites");
    assert_eq!(
        seen,
        [
            "StaticSites_CreateOrUpdateStaticSiteAppSettings",
            "StaticSites_ListStaticSiteAppSettings"
        ]
    );
}

/// A `rotate` run of the real binary: every request its App Configuration and ARM clients send
/// is an operation of the official specifications, with the query parameters it declares; App
/// Configuration's api-version is the specification's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_product_sends_only_specified_requests() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    let requests = env.requests().await;

    let config_ops = spec("appconfiguration");
    for r in of(&requests, "appConfiguration") {
        let op = conforms(&config_ops, r).unwrap_or_else(|e| panic!("{e}"));
        let version = url::form_urlencoded::parse(r["query"].as_str().unwrap().as_bytes())
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.into_owned());
        assert_eq!(version.as_deref(), Some(op.version.as_str()), "{r}");
    }
    let seen = assert_conform(&requests, "appConfiguration", "appconfiguration");
    assert_eq!(
        seen,
        ["GetKeyValue", "PutKeyValue"],
        "the demo reads and writes"
    );

    let mut arm_ops = spec("WebApps");
    arm_ops.extend(spec("StaticSites"));
    arm_ops.extend(spec("AppService_KeyVaultReferences"));
    let mut seen = Vec::new();
    for r in of(&requests, "resourceManager") {
        let op = conforms(&arm_ops, r).unwrap_or_else(|e| panic!("{e}"));
        seen.push(format!("{} ({})", op.operation_id, op.source));
    }
    seen.sort();
    seen.dedup();
    for wanted in [
        "WebApps_ListApplicationSettings",
        "WebApps_ListApplicationSettingsSlot",
        "WebApps_UpdateApplicationSettingsSlot",
        "StaticSites_ListStaticSiteAppSettings",
        "StaticSites_CreateOrUpdateStaticSiteAppSettings",
        // The demo's Web App holds a Key Vault reference whose secret the run renewed.
        "Docs_RefreshKeyVaultReferences",
    ] {
        assert!(
            seen.iter().any(|s| s.starts_with(&format!("{wanted} "))),
            "{wanted} not among {seen:#?}"
        );
    }
}

/// The matcher itself: a request off the specification is named as such.
#[test]
fn requests_off_the_specification_are_refused() {
    let ops = spec("appconfiguration");
    let req = |method: &str, path: &str, query: &str| serde_json::json!({"method": method, "path": path, "query": query});
    assert!(conforms(&ops, &req("GET", "/kv/a", "label=x&api-version=2023-11-01")).is_ok());
    assert!(conforms(&ops, &req("GET", "/KV/a", "api-version=2023-11-01")).is_ok());
    let e = conforms(&ops, &req("GET", "/kv/a", "label=x")).unwrap_err();
    assert!(e.contains("requires `api-version`"), "{e}");
    let e = conforms(&ops, &req("GET", "/kv/a", "api-version=1&labels=x")).unwrap_err();
    assert!(e.contains("`labels` is not a query parameter"), "{e}");
    let e = conforms(&ops, &req("DELETE", "/kv/a", "api-version=1")).unwrap_err();
    assert!(e.contains("no operation"), "{e}");
    let e = conforms(&ops, &req("GET", "/kv/a/b", "api-version=1")).unwrap_err();
    assert!(e.contains("no operation"), "{e}");
    let web = spec("WebApps");
    let list = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/x/config/appsettings/list";
    assert!(conforms(&web, &req("POST", list, "api-version=2026-03-15")).is_ok());
    assert!(conforms(&web, &req("GET", list, "api-version=2026-03-15")).is_err());
}

/// Google's official client for Apigee (google-api-python-client with the Apigee v1 discovery
/// document it ships, google-auth's service-account credentials) against the Apigee double and
/// its OAuth token endpoint: every key operation the product uses, with the service account
/// from the sandbox's sealed company details.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apigee_passes_the_google_api_client() {
    let env = Env::start().await;
    let details = apikey_rotator::toolkit::sealed::open(
        &env.info.env["TOOLKITUUID"],
        &env.info.env["COMPANYDETAILS"],
    )
    .expect("the sandbox's company details open");
    let apikey_rotator::toolkit::registry::IssuerDetails::ApigeeX(apigee) = &details.issuer else {
        panic!("the sandbox's sealed details name Apigee X");
    };
    let sa = &apigee.service_account_key;
    let sa_file = env.dir.path().join("service-account.json");
    std::fs::write(
        &sa_file,
        serde_json::json!({
            "type": "service_account",
            "project_id": sa.project_id,
            "private_key_id": sa.private_key_id,
            "private_key": sa.private_key.expose(),
            "client_email": sa.client_email,
            "client_id": sa.client_id,
            "token_uri": sa.token_uri.as_str(),
        })
        .to_string(),
    )
    .unwrap();
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/apigee_oracle.py");
    env.clear_requests().await;
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(env.dir.path().join("sandbox.json"))
        .arg(&sa_file)
        .arg(&apigee.organization)
        .arg(&apigee.developer_email)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .await
        .expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Google's API client failed against the Apigee double:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        report["operations"].as_array().unwrap().len(),
        7,
        "{report}"
    );
    // The token came from the double's OAuth endpoint, and nothing was refused for auth.
    let log = env.requests().await;
    assert!(
        log.iter()
            .any(|r| r["service"] == "apigee" && r["path"].as_str().unwrap().contains("token")),
        "{log:?}"
    );
    assert!(!log.iter().any(|r| r["status"] == 401), "{log:?}");
}

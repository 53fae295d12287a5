//! Shared test harness: a sandbox in a temporary folder, the real `apikey-rotator` binary
//! started against it as the Functions host would, and helpers to read the sandbox's request
//! log and the handler's captured output.
#![allow(dead_code)]

pub mod apigee;
pub mod azurite;
pub mod issuer;

use apikey_rotator::sandbox::{Sandbox, SandboxInfo, SandboxOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// A running sandbox and the folder it lives in.
pub struct Env {
    pub sandbox: Option<Sandbox>,
    pub info: SandboxInfo,
    pub dir: tempfile::TempDir,
    pub admin: reqwest::Client,
}

impl Env {
    /// Starts a sandbox with the demo data.
    pub async fn start() -> Env {
        Self::start_with(None).await
    }

    /// Starts a sandbox with a bulk workload of `apps` apps instead of the demo data.
    pub async fn start_workload(apps: usize) -> Env {
        Self::start_with(Some(apps)).await
    }

    async fn start_with(workload: Option<usize>) -> Env {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let options = SandboxOptions {
            workload,
            ..SandboxOptions::new(dir.path())
        };
        let sandbox = Sandbox::start(options).await.expect("sandbox starts");
        let info = sandbox.info().clone();
        Env {
            sandbox: Some(sandbox),
            info,
            dir,
            admin: reqwest::Client::new(),
        }
    }

    /// The handler's settings for this sandbox, with `overrides` applied (an empty value removes).
    pub fn settings(&self, overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut env = self.info.env.clone();
        for (k, v) in overrides {
            if v.is_empty() {
                env.remove(*k);
            } else {
                env.insert(k.to_string(), v.to_string());
            }
        }
        env
    }

    /// The handler's settings for a service principal instead of the managed identity (no
    /// `IDENTITY_ENDPOINT`; the sandbox's client ID and secret), with `overrides` applied.
    pub fn service_principal_settings(
        &self,
        overrides: &[(&str, &str)],
    ) -> BTreeMap<String, String> {
        let (client_id, secret) = (
            self.info.env["SANDBOX_CLIENT_ID"].clone(),
            self.info.env["SANDBOX_CLIENT_SECRET"].clone(),
        );
        let mut all = vec![
            ("IDENTITY_ENDPOINT", ""),
            ("IDENTITY_HEADER", ""),
            ("AZURE_CLIENT_ID", client_id.as_str()),
            ("AZURE_CLIENT_SECRET", secret.as_str()),
        ];
        all.extend_from_slice(overrides);
        self.settings(&all)
    }

    /// Injects a fault (`POST /faults`, PRODUCT.md §9).
    pub async fn add_fault(&self, spec: &Value) {
        let url = format!("{}/faults", self.info.endpoints.admin);
        let r = self.admin.post(url).json(spec).send().await.unwrap();
        assert!(r.status().is_success(), "{spec}: {}", r.status());
    }

    /// Clears every injected fault.
    pub async fn clear_faults(&self) {
        let url = format!("{}/faults", self.info.endpoints.admin);
        let r = self.admin.delete(url).send().await.unwrap();
        assert!(r.status().is_success(), "DELETE /faults: {}", r.status());
    }

    /// A client that trusts the sandbox CA.
    pub fn tls_client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.info.ca_cert_file).unwrap();
        reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
            .build()
            .unwrap()
    }

    /// `GET` of the admin endpoint's `path`, as JSON.
    async fn admin_get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let url = format!("{}{path}", self.info.endpoints.admin);
        self.admin
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The sandbox's request log: (service, method, path, status).
    pub async fn requests(&self) -> Vec<Value> {
        self.admin_get("/requests").await
    }

    /// Connections each service accepted so far.
    pub async fn connections(&self) -> BTreeMap<String, u64> {
        self.admin_get("/connections").await
    }

    /// Clears the request log.
    pub async fn clear_requests(&self) {
        let url = format!("{}/requests", self.info.endpoints.admin);
        assert!(self
            .admin
            .delete(url)
            .send()
            .await
            .unwrap()
            .status()
            .is_success());
    }

    /// The doubles' stored state.
    pub async fn state(&self) -> Value {
        self.admin_get("/state").await
    }

    /// Requests that changed something (anything but GET, the token endpoints, the issuers'
    /// reads and ARM's app-settings list calls, which are POSTs that only read).
    pub async fn writes(&self) -> Vec<Value> {
        self.requests()
            .await
            .into_iter()
            .filter(|r| {
                r["method"] != "GET"
                    && r["service"] != "identity"
                    && r["service"] != "authority"
                    && !issuer::ISSUERS.iter().any(|i| i.only_reads(r))
                    && !is_arm_list(r)
            })
            .collect()
    }

    /// Every full key the API managers hold (all issuers, apps, credentials).
    pub async fn all_keys(&self) -> Vec<String> {
        let state = self.state().await;
        let mut keys: Vec<String> = issuer::ISSUERS
            .iter()
            .flat_map(|i| i.all_keys(&state))
            .collect();
        keys.sort();
        keys.dedup();
        assert!(
            keys.len() >= 6,
            "expected the demo's keys in the sandbox state, got {}",
            keys.len()
        );
        keys
    }
}

/// An ARM `POST .../config/appsettings/list` or `POST .../staticSites/{name}/listAppSettings`.
pub fn is_arm_list(r: &Value) -> bool {
    r["service"] == "resourceManager"
        && r["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/appsettings/list") || p.ends_with("/listAppSettings"))
}

/// The real binary, serving as the Functions host starts it, with its output captured.
pub struct Handler {
    pub child: Child,
    pub base: String,
    pub output: Arc<Mutex<String>>,
    pub client: reqwest::Client,
}

impl Handler {
    /// Starts `apikey-rotator` with exactly `settings` (plus PATH and HOME) and
    /// FUNCTIONS_CUSTOMHANDLER_PORT, and waits until it listens and `GET /` answers. A port
    /// taken by another process between choosing and binding it (tests start handlers side by
    /// side) means another port.
    pub async fn start(settings: &BTreeMap<String, String>) -> Handler {
        for _ in 0..5 {
            if let Some(handler) = Self::start_on(settings, free_port()).await {
                return handler;
            }
        }
        panic!("the handler found no free port in 5 tries");
    }

    /// [`Handler::start`] on `port`; `None` when the port was taken.
    async fn start_on(settings: &BTreeMap<String, String>, port: u16) -> Option<Handler> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_apikey-rotator"));
        command
            .env_clear()
            .envs(settings)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env(
                "RUST_LOG",
                "debug,hyper=info,h2=info,rustls=info,reqwest=info",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        for mut pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        for _ in 0..200 {
            if child.try_wait().unwrap().is_some() {
                // Let the pipes drain before reading why.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let output = output.lock().unwrap().clone();
                assert!(
                    output.contains("Address already in use"),
                    "the handler exited; output:\n{output}"
                );
                return None;
            }
            // Only once this process listens can the answer be its own.
            let listening = output.lock().unwrap().contains("custom handler listening");
            if listening
                && client
                    .get(&base)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            {
                return Some(Handler {
                    child,
                    base,
                    output,
                    client,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the handler did not answer GET / ; output:\n{}",
            output.lock().unwrap()
        );
    }

    /// `GET /api/ApiKeyRotator?{query}`: status and JSON body.
    pub async fn rotate(&self, query: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}/api/ApiKeyRotator?{query}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// `POST /api/ToolkitApp` with a raw body: status and JSON body.
    pub async fn toolkit(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/api/ToolkitApp", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }

    /// `POST /RotatorTimer` with an invocation body: status and JSON body.
    pub async fn timer(&self, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/RotatorTimer", self.base))
            .header("content-type", "application/json; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Everything the handler printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Asserts that no full key appears in the output or in `texts`, and that the output is
    /// one JSON object per line.
    pub fn assert_no_key_leaked(&self, keys: &[String], texts: &[&str]) {
        let output = self.output();
        for key in keys {
            assert!(
                !output.contains(key.as_str()),
                "a full key ({}) appears in the handler's logs",
                &key[key.len() - 4..]
            );
            for t in texts {
                assert!(
                    !t.contains(key.as_str()),
                    "a full key ({}) appears in a report",
                    &key[key.len() - 4..]
                );
            }
        }
        for line in output.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object()),
                "log line is not a JSON object: {line}"
            );
        }
    }
}

/// The report's entry types that are no target: an app's lifecycle steps (a key check names
/// the gateway URL it tried in `target`, but it is no target) and the run's own warnings
/// (`LOCK`, `AUDIT`, `NOTIFY`).
pub const STEP_TYPES: [&str; 7] = [
    "TOOLKIT",
    "KEY_CHECK",
    "REVOCATION",
    "ROLLBACK",
    "LOCK",
    "AUDIT",
    "NOTIFY",
];

/// Whether a report entry is a target's, not a step's ([`STEP_TYPES`]).
pub fn is_target(e: &Value) -> bool {
    e["type"].as_str().is_some_and(|t| !STEP_TYPES.contains(&t))
}

/// The official Key Vault client for the sandbox vault `vault` (a name of
/// `endpoints.key_vaults`), trusting the sandbox CA and signing in as the sandbox's service
/// principal with the official client-secret credential: what tests use to change a target
/// behind the rotator's back.
pub fn vault_sdk_client(env: &Env, vault: &str) -> azure_security_keyvault_secrets::SecretClient {
    use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
    use azure_core::http::{ClientOptions, Transport};
    use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = env.info.env["AZURE_AUTHORITY_HOST"].clone();
    let transport = || Some(Transport::new(Arc::new(env.tls_client())));
    let credential = azure_identity::ClientSecretCredential::new(
        &env.info.env["AZURE_TENANT_ID"],
        env.info.env["SANDBOX_CLIENT_ID"].clone(),
        env.info.env["SANDBOX_CLIENT_SECRET"].clone().into(),
        Some(azure_identity::ClientSecretCredentialOptions {
            client_options: ClientOptions {
                transport: transport(),
                cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
                ..Default::default()
            },
        }),
    )
    .unwrap();
    let options = SecretClientOptions {
        client_options: ClientOptions {
            transport: transport(),
            ..Default::default()
        },
        // The vault listens on 127.0.0.1, not a subdomain of vault.azure.net.
        verify_challenge_resource: Some(false),
        ..Default::default()
    };
    SecretClient::new(
        &env.info.endpoints.key_vaults[vault],
        credential,
        Some(options),
    )
    .unwrap()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A file of the shared reference pack.
pub fn reference(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/reference/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The real binary with an empty environment (PATH only): what a user's shell gives it,
/// without the test runner's settings.
pub fn binary() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_apikey-rotator"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

/// Asserts that `settings` are refused with a message containing `expected`, changing nothing:
/// `validate --settings` exits 2 naming it, `rotate` fails at its start naming it, and the
/// sandbox saw no write. Returns what `rotate` printed (stdout, then stderr).
pub async fn assert_settings_refused(
    env: &Env,
    settings: &BTreeMap<String, String>,
    expected: &str,
) -> String {
    let out = binary()
        .envs(settings)
        .args(["validate", "--settings"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(expected) || stderr.contains(expected),
        "{stdout}\n{stderr}"
    );
    let out = binary().envs(settings).arg("rotate").output().unwrap();
    let (stdout, stderr) = text(&out);
    let all = format!("{stdout}\n{stderr}");
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(all.contains(expected), "{all}");
    assert!(env.writes().await.is_empty(), "a refused run wrote");
    all
}

/// A finished command's stdout and stderr as text.
pub fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

//! `apikey-rotator toolkit` (issue 17): the real binary's standalone toolkit against the
//! sandbox's Apigee double. `POST https://localhost:<port>/getkey` over TLS with the certificate
//! it made (and kept) answers byte for byte what ToolkitApp answers for the same state; the
//! seed's start-up failures (port in use, incorrect Toolkit UUID) exit 2 with the seed's words;
//! SIGTERM stops it with exit 0; nothing it prints holds a full key or the UUID.

use crate::common;

use common::{Env, Handler};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
const APP3: &str = "ApiKeyRotator_TestApp3_Sandbox";

/// A running `apikey-rotator toolkit`, its output captured.
struct Toolkit {
    child: Child,
    port: u16,
    output: Arc<Mutex<String>>,
}

/// Starts `apikey-rotator toolkit --port 0 <args>` with exactly `settings` (plus PATH), and
/// waits until it says where it listens, or until it exits.
async fn spawn(settings: &BTreeMap<String, String>, args: &[&str]) -> (Child, Arc<Mutex<String>>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_apikey-rotator"));
    command
        .env_clear()
        .envs(settings)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("toolkit")
        .args(args)
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
    (child, output)
}

impl Toolkit {
    async fn start(settings: &BTreeMap<String, String>, args: &[&str]) -> Toolkit {
        let mut all = vec!["--port", "0"];
        all.extend_from_slice(args);
        let (mut child, output) = spawn(settings, &all).await;
        const MARK: &str = "Toolkit listening on https://localhost:";
        for _ in 0..400 {
            let text = output.lock().unwrap().clone();
            if let Some(rest) = text.split(MARK).nth(1) {
                let port = rest.split('/').next().unwrap().parse().unwrap();
                return Toolkit {
                    child,
                    port,
                    output,
                };
            }
            if child.try_wait().unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                panic!("the toolkit exited; output:\n{}", output.lock().unwrap());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the toolkit did not start; output:\n{}",
            output.lock().unwrap()
        );
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// `POST /getkey` with `body`, trusting `cert` only as far as a client must: status,
    /// `Cache-Control` and the body's bytes.
    async fn getkey(&self, cert: &Path, body: &str) -> (u16, String, Vec<u8>) {
        let pem = std::fs::read(cert).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let r = client
            .post(format!("https://localhost:{}/getkey", self.port))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let cache = r.headers()["cache-control"].to_str().unwrap().to_string();
        (status, cache, r.bytes().await.unwrap().to_vec())
    }

    /// Sends SIGTERM and waits for the exit code.
    async fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().unwrap() as i32;
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the toolkit stops on SIGTERM")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        (status.code(), self.output())
    }
}

/// The sandbox's settings without TOOLKITUUID (the command takes it as --uuid), and the UUID.
fn toolkit_settings(env: &Env, overrides: &[(&str, &str)]) -> (BTreeMap<String, String>, String) {
    let uuid = env.info.env["TOOLKITUUID"].clone();
    let mut all = vec![("TOOLKITUUID", "")];
    all.extend_from_slice(overrides);
    (env.settings(&all), uuid)
}

/// What ToolkitApp (the real handler on the same sandbox) answers to `body`: status,
/// Cache-Control and the body's bytes.
async fn toolkit_app(handler: &Handler, body: &str) -> (u16, String, Vec<u8>) {
    let r = handler
        .client
        .post(format!("{}/api/ToolkitApp", handler.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cache = r.headers()["cache-control"].to_str().unwrap().to_string();
    (status, cache, r.bytes().await.unwrap().to_vec())
}

fn assert_nothing_leaked(output: &str, keys: &[String], uuid: &str) {
    assert!(
        !output.contains(uuid),
        "the UUID appears in the output:\n{output}"
    );
    for key in keys {
        assert!(
            !output.contains(key.as_str()),
            "a full key (****{}) appears in the output",
            &key[key.len() - 4..]
        );
    }
    assert!(!output.contains("panicked"), "{output}");
}

/// App1's key is due: the toolkit renews it in Apigee and hands it out; after that, /getkey
/// and ToolkitApp give the same bytes for the same app (a current key, a bad request); the
/// certificate it made is kept across restarts (the second start reads the sealed details from
/// --company-details instead of COMPANYDETAILS); SIGTERM stops it with exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn getkey_answers_as_toolkit_app_does() {
    let env = Env::start().await;
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let (settings, uuid) = toolkit_settings(&env, &[]);
    let toolkit = Toolkit::start(&settings, &["--uuid", &uuid, "--state-dir", state_dir]).await;
    let cert: PathBuf = state.path().join("default").join("toolkit-cert.pem");
    assert!(
        toolkit.output().contains(cert.to_str().unwrap()),
        "the output says where the certificate is:\n{}",
        toolkit.output()
    );
    let renew = format!(r#"{{"appName":"{APP1}"}}"#);
    let (status, cache, body) = toolkit.getkey(&cert, &renew).await;
    let renewed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, cache.as_str()), (200, "no-store"), "{renewed}");
    assert_eq!(renewed["renewed"], true, "{renewed}");
    let key = renewed["apiKey"].as_str().unwrap().to_string();
    let keys = env.all_keys().await;
    assert!(keys.contains(&key), "the key handed out is Apigee's");

    let handler = Handler::start(&env.settings(&[])).await;
    for body in [
        renew.clone(),
        format!(r#"{{"appName":"{APP3}"}}"#),
        format!(r#"{{"appname":"{APP3}"}}"#),
        "[]".to_string(),
        r#"{"appName":"NoSuchApp"}"#.to_string(),
    ] {
        let expected = toolkit_app(&handler, &body).await;
        let got = toolkit.getkey(&cert, &body).await;
        assert_eq!(
            got,
            expected,
            "{body}: /getkey {} vs ToolkitApp {}",
            String::from_utf8_lossy(&got.2),
            String::from_utf8_lossy(&expected.2)
        );
    }
    let (status, _, current) = toolkit.getkey(&cert, &renew).await;
    let current: Value = serde_json::from_slice(&current).unwrap();
    assert_eq!(
        (status, current["apiKey"].as_str()),
        (200, Some(key.as_str()))
    );
    assert_eq!(current["renewed"], false);

    let (code, output) = toolkit.terminate().await;
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("toolkit stopped"), "{output}");
    let keys = env.all_keys().await;
    assert_nothing_leaked(&output, &keys, &uuid);

    // A second start keeps the certificate: a client that trusted it still connects.
    let details = state.path().join("company-details.txt");
    std::fs::write(&details, &env.info.env["COMPANYDETAILS"]).unwrap();
    let (settings, _) = toolkit_settings(&env, &[("COMPANYDETAILS", "")]);
    let toolkit = Toolkit::start(
        &settings,
        &[
            "--uuid",
            &uuid,
            "--state-dir",
            state_dir,
            "--company-details",
            details.to_str().unwrap(),
        ],
    )
    .await;
    let (status, _, again) = toolkit.getkey(&cert, &renew).await;
    let again: Value = serde_json::from_slice(&again).unwrap();
    assert_eq!(
        (status, again["apiKey"].as_str()),
        (200, Some(key.as_str()))
    );
    let (code, output) = toolkit.terminate().await;
    assert_eq!(code, Some(0), "{output}");
    assert_nothing_leaked(&output, &keys, &uuid);
}

/// A port another program holds: the seed's message with how to pick another, exit 2, and
/// no stack trace.
#[tokio::test(flavor = "multi_thread")]
async fn a_port_in_use_says_so_and_how_to_pick_another() {
    let env = Env::start().await;
    let state = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (settings, uuid) = toolkit_settings(&env, &[]);
    let (mut child, output) = spawn(
        &settings,
        &[
            "--uuid",
            &uuid,
            "--port",
            &port,
            "--state-dir",
            state.path().to_str().unwrap(),
        ],
    )
    .await;
    let status = child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let output = output.lock().unwrap().clone();
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("Error: Port already in use!"), "{output}");
    assert!(output.contains(&format!("port {port}")), "{output}");
    assert!(output.contains("--port <port-number>"), "{output}");
    assert_nothing_leaked(&output, &[], &uuid);
    drop(taken);
}

/// A UUID that does not open the sealed details: the seed's message, exit 2, the UUID given
/// never printed, and nothing asked of Apigee.
#[tokio::test(flavor = "multi_thread")]
async fn an_incorrect_uuid_says_so() {
    let env = Env::start().await;
    let state = tempfile::tempdir().unwrap();
    let (settings, uuid) = toolkit_settings(&env, &[]);
    let wrong = "0b5c6d7e-0000-4000-8000-00000000c1a0";
    assert_ne!(wrong, uuid);
    env.clear_requests().await;
    for given in [wrong, "not-a-uuid-at-all"] {
        let (mut child, output) = spawn(
            &settings,
            &[
                "--uuid",
                given,
                "--state-dir",
                state.path().to_str().unwrap(),
            ],
        )
        .await;
        let status = child.wait().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let output = output.lock().unwrap().clone();
        assert_eq!(status.code(), Some(2), "{output}");
        assert!(
            output.contains("Error: Incorrect Toolkit UUID has been provided"),
            "{output}"
        );
        assert_nothing_leaked(&output, &[], given);
        assert_nothing_leaked(&output, &[], &uuid);
    }
    let apigee: Vec<Value> = env
        .requests()
        .await
        .into_iter()
        .filter(|r| r["service"] == "apigee")
        .collect();
    assert!(apigee.is_empty(), "{apigee:?}");
    assert!(
        !state.path().join("default").exists(),
        "nothing is made before the details open"
    );
}

/// SIGTERM while a request is in flight (Apigee is slow to answer): the request still gets its
/// key, then the toolkit exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_request_in_flight_finish() {
    let env = Env::start().await;
    let state = tempfile::tempdir().unwrap();
    let (settings, uuid) = toolkit_settings(&env, &[]);
    let toolkit = Toolkit::start(
        &settings,
        &[
            "--uuid",
            &uuid,
            "--state-dir",
            state.path().to_str().unwrap(),
        ],
    )
    .await;
    let cert = state.path().join("default").join("toolkit-cert.pem");
    // Long enough for the test to see the request waiting and send SIGTERM meanwhile.
    env.add_fault(&serde_json::json!({"service": "apigee", "method": "GET", "match": APP3, "delayMs": 5000, "times": 1}))
        .await;
    let port = toolkit.port;
    let asking = {
        let cert = cert.clone();
        tokio::spawn(async move {
            let pem = std::fs::read(&cert).unwrap();
            let client = reqwest::Client::builder()
                .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
                .build()
                .unwrap();
            let r = client
                .post(format!("https://localhost:{port}/getkey"))
                .body(format!(r#"{{"appName":"{APP3}"}}"#))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    let mut waiting = false;
    for _ in 0..400 {
        waiting = env.requests().await.iter().any(|r| {
            r["service"] == "apigee"
                && r["status"].is_null()
                && r["path"].as_str().is_some_and(|p| p.contains(APP3))
        });
        if waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waiting, "the request never reached Apigee");
    let (code, output) = toolkit.terminate().await;
    let (status, body) = asking.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body["apiKey"].as_str().is_some_and(|k| k.len() >= 32),
        "{body}"
    );
    assert_eq!(code, Some(0), "{output}");
    let keys = env.all_keys().await;
    assert_nothing_leaked(&output, &keys, &uuid);
}

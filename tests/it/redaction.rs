//! Secrets never leak, whatever breaks (PRODUCT.md §7): the real binary is run against the
//! sandbox while one service at a time answers with an error status, resets the connection,
//! hangs, or sends a malformed body. No full key or consumer secret may appear in the handler's
//! logs, the reports or the error answers; every run ends in bounded time with a complete report
//! (each mapped target exactly once) or a JSON error; and once the fault is cleared, a run
//! converges and the next one writes nothing.

use crate::common;

use common::{Env, Handler};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SERVICES: [&str; 7] = [
    "keyVault",
    "appConfiguration",
    "resourceManager",
    "apigee",
    "applicationApi",
    "identity",
    "authority",
];

/// The app whose key ToolkitApp is asked for in the Apigee cases.
const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";

/// The longest a faulted run may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The longest a run may take while the managed-identity endpoint fails or resets every call:
/// the token request is retried with backoff once per audience (the targets waiting behind a
/// failed fetch share its failure), so such a run is bounded like any other.
const IDENTITY_DOWN_LIMIT: Duration = RUN_LIMIT;

/// Faults that make a run wait for retries for a long time, so they get their own sandbox and
/// run side by side with the rest.
fn slow(fault: &Value) -> bool {
    fault["service"] == "identity"
        && fault["kind"] != "malformed"
        && fault["status"] != 403
        && fault["status"] != 409
        && fault.get("delayMs").is_none()
}

/// The faults that answer: error statuses, throttling, resets, malformed bodies and slow
/// answers. Each lasts until cleared.
fn faults(service: &str) -> Vec<Value> {
    vec![
        json!({"service": service, "kind": "status", "status": 500}),
        json!({"service": service, "kind": "status", "status": 429, "retryAfterSeconds": 1}),
        json!({"service": service, "kind": "status", "status": 403}),
        json!({"service": service, "kind": "status", "status": 409}),
        json!({"service": service, "kind": "reset"}),
        json!({"service": service, "kind": "malformed"}),
        json!({"service": service, "delayMs": 300}),
    ]
}

/// Every secret the sandbox holds: the API manager's keys and its consumer secrets.
async fn secrets(env: &Env) -> Vec<String> {
    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("consumerKey" | "consumerSecret", Value::String(s)) => out.push(s.clone()),
                        _ => collect(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut out = env.all_keys().await;
    let before = out.len();
    collect(&env.state().await["apigee"], &mut out);
    out.sort();
    out.dedup();
    assert!(out.len() > before, "the consumer secrets are in the state");
    out
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The (type, target) of every target entry of a report, app-level entries (TOOLKIT, KEY_CHECK, ...) left out.
fn targets(report: &Value) -> Vec<(String, String)> {
    let mut out: Vec<_> = ["successes", "unchanged", "errors"]
        .iter()
        .flat_map(|list| report[list].as_array().cloned().unwrap_or_default())
        .filter(common::is_target)
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["target"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A sandbox, the mapped targets of its demo mapping, and everything printed or answered so far.
struct Bench {
    env: Env,
    settings: BTreeMap<String, String>,
    targets: Vec<(String, String)>,
    /// Every report and error body seen, and every handler's output.
    texts: Vec<String>,
}

impl Bench {
    async fn start() -> Bench {
        let env = Env::start().await;
        let settings = env.settings(&[]);
        let handler = Handler::start(&settings).await;
        let (status, plan) = handler.rotate("dryRun=true").await;
        assert_eq!(status, 200, "{plan:#}");
        let targets = targets(&plan);
        assert_eq!(targets.len(), 17, "the demo mapping's targets: {targets:?}");
        let mut texts = vec![plan.to_string()];
        texts.push(handler.output());
        Bench {
            env,
            settings,
            targets,
            texts,
        }
    }

    /// One ApiKeyRotator run on a fresh handler (so tokens are fetched again and identity faults
    /// bite), checked for completeness and time; the handler's output is kept.
    async fn faulted_run(&mut self, case: &str, toolkit_too: bool, limit: Duration) {
        let handler = Handler::start(&self.settings).await;
        let started = Instant::now();
        // Not the harness's client: its own 60 s timeout would hide how long the run took.
        let run = async {
            let r = reqwest::get(format!("{}/api/ApiKeyRotator", handler.base))
                .await
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        };
        let (status, body) = tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
            panic!(
                "{case}: the run took more than {limit:?}; the handler's output ends with:\n{}",
                tail(&handler.output(), 15)
            )
        });
        match status {
            200 | 207 => assert_eq!(
                targets(&body),
                self.targets,
                "{case}: every mapped target exactly once: {body:#}"
            ),
            _ => assert!(
                body["error"]["code"].is_string() && body["error"]["message"].is_string(),
                "{case}: {status} is not a report, so it is a JSON error: {body:#}"
            ),
        }
        if status == 200 {
            assert!(body["errors"].as_array().is_some_and(Vec::is_empty));
        }
        self.texts.push(body.to_string());
        if toolkit_too {
            let call = handler.toolkit(json!({ "appName": APP1 }).to_string());
            let (status, body) = tokio::time::timeout(RUN_LIMIT, call)
                .await
                .unwrap_or_else(|_| panic!("{case}: ToolkitApp took more than {RUN_LIMIT:?}"));
            // A successful ToolkitApp answer is the one place a key appears in full.
            if status != 200 {
                assert!(body["error"]["code"].is_string(), "{case}: {body:#}");
                self.texts.push(body.to_string());
            }
        }
        eprintln!("{case}: {status} in {:?}", started.elapsed());
        self.texts.push(handler.output());
    }

    /// With the faults cleared, a run converges (no errors) and the next one writes nothing.
    async fn converges(&mut self, case: &str) {
        self.env.clear_faults().await;
        let handler = Handler::start(&self.settings).await;
        let (status, body) = handler.rotate("").await;
        assert_eq!(
            status, 200,
            "{case}: the clean run after the fault: {body:#}"
        );
        assert_eq!(targets(&body), self.targets, "{case}: {body:#}");
        self.texts.push(body.to_string());
        self.env.clear_requests().await;
        let (status, body) = handler.rotate("").await;
        assert_eq!(status, 200, "{case}: {body:#}");
        assert_eq!(body["summary"]["updated"], 0, "{case}: {body:#}");
        assert_eq!(
            self.env.writes().await,
            Vec::<Value>::new(),
            "{case}: a second clean run writes nothing"
        );
        self.texts.push(body.to_string());
        self.texts.push(handler.output());
    }

    /// No secret of the sandbox, as it is now, appears in anything seen so far.
    async fn assert_nothing_leaked(&self) {
        let secrets = secrets(&self.env).await;
        for text in &self.texts {
            for s in &secrets {
                assert!(
                    !text.contains(s.as_str()),
                    "a full secret (****{}) leaked into: {}",
                    &s[s.len() - 4..],
                    text.chars().take(2000).collect::<String>()
                );
            }
        }
    }
}

/// Every quick fault, in every service, one at a time: nothing leaks, every run is complete and
/// bounded, and each converges once the fault is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaks_whatever_fails() {
    let mut bench = Bench::start().await;
    for service in SERVICES {
        for fault in faults(service) {
            let case = fault.to_string();
            if slow(&fault) {
                continue;
            }
            bench.env.add_fault(&fault).await;
            bench
                .faulted_run(&case, service == "apigee", RUN_LIMIT)
                .await;
            bench.converges(&case).await;
        }
        // Keys renewed by the runs so far count too.
        bench.assert_nothing_leaked().await;
    }
    // The checks above are only worth something if the texts held keys' neighbours: the
    // reports show the last four characters of the keys they wrote.
    assert!(bench.texts.iter().any(|t| t.contains("\"apiKey\":\"****")));
}

/// The faults that keep a run waiting: a service that never answers (once per run), in every
/// service, and a managed-identity endpoint that keeps failing. The run still ends within its
/// limit with a complete report, nothing leaks, and it converges afterwards. Each case has its
/// own sandbox and they run side by side, since most of the time is spent waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaks_when_a_service_hangs_or_identity_fails() {
    let hangs = SERVICES.map(|service| json!({"service": service, "kind": "timeout", "times": 1}));
    let identity = faults("identity").into_iter().filter(slow);
    let cases = hangs.into_iter().chain(identity).map(|fault| async move {
        let mut bench = Bench::start().await;
        let case = fault.to_string();
        let limit = if fault["service"] == "identity" && fault["kind"] != "timeout" {
            IDENTITY_DOWN_LIMIT
        } else {
            RUN_LIMIT
        };
        bench.env.add_fault(&fault).await;
        bench
            .faulted_run(&case, fault["service"] == "apigee", limit)
            .await;
        bench.converges(&case).await;
        bench.assert_nothing_leaked().await;
    });
    futures::future::join_all(cases).await;
}

//! Apigee renewals that are interrupted, against the sandbox with the real binary: the handler is
//! killed (`kill -9`) while each step of a renewal hangs — after the key was created, after its
//! API products were attached, after the pending association was approved — or the clean-up of
//! a failed renewal fails; the next run finishes that key (never a second one) and distributes
//! it once. Every request our Apigee client sent is checked against the Apigee v1 discovery
//! document (`tests/fixtures/reference/apigee/apigee-x-v1.discovery-excerpt.methods.txt`).
//!
//! In the demo, App1's key is inside the renewal window and its product,
//! `healthcheck-product`, has `approvalType: manual`: a new key's association with it starts
//! `pending`, so a renewal is create (marked `unfinished`), add products (marked
//! `productsAttached`), approve.

use crate::common;

use common::{Env, Handler};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
const PRODUCT: &str = "healthcheck-product";
const STATE_ATTRIBUTE: &str = "ApiKeyRotatorState";
/// Longer than any test: the hanging request is never answered (nor applied) while it matters.
const HANG_MS: u64 = 600_000;

/// App1's credentials in the sandbox's Apigee.
async fn credentials(env: &Env) -> Vec<Value> {
    env.state().await["apigee"]["apps"][APP1]["credentials"]
        .as_array()
        .unwrap()
        .clone()
}

/// App1's keys that are not among `before`.
async fn new_keys(env: &Env, before: &[Value]) -> Vec<Value> {
    let old: BTreeSet<&str> = before
        .iter()
        .map(|c| c["consumerKey"].as_str().unwrap())
        .collect();
    credentials(env)
        .await
        .into_iter()
        .filter(|c| !old.contains(c["consumerKey"].as_str().unwrap()))
        .collect()
}

fn state_mark(c: &Value) -> Option<&str> {
    c["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == STATE_ATTRIBUTE)?["value"]
        .as_str()
}

fn is_key_creation(r: &Value) -> bool {
    r["service"] == "apigee"
        && r["method"] == "POST"
        && r["path"]
            .as_str()
            .is_some_and(|p| p.ends_with(&format!("/apps/{APP1}/keys")))
}

/// POSTs to `.../keys/{key}` without a query (`keys.updateDeveloperAppKey` with a body: the
/// products, then the mark).
fn key_updates(log: &[Value]) -> Vec<&Value> {
    log.iter()
        .filter(|r| {
            r["method"] == "POST"
                && r["query"].is_null()
                && r["path"].as_str().is_some_and(|p| {
                    p.contains(&format!("{APP1}/keys/")) && !p.contains("/apiproducts/")
                })
        })
        .collect()
}

/// Starts a rotation of App1 and kills the handler (SIGKILL) once `hanging` says the step is
/// in flight at the sandbox (given the request log); returns the request log of that run.
async fn kill_during(env: &Env, hanging: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut handler = Handler::start(&env.settings(&[])).await;
    let client = handler.client.clone();
    let url = format!("{}/api/ApiKeyRotator?app={APP1}", handler.base);
    let run = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    let mut seen = false;
    for _ in 0..2400 {
        if hanging(&env.requests().await) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        seen,
        "the step never started; log: {:#?}\noutput:\n{}",
        env.requests().await,
        handler.output()
    );
    handler.child.kill().await.unwrap();
    assert!(
        run.await.unwrap().is_err(),
        "the run was killed, it cannot answer"
    );
    env.requests().await
}

/// The run after the interruption: it finishes the interrupted key (when it was not complete
/// yet: `finished`) instead of making another, hands it out, and writes every App1 target once
/// with it; a run after that writes nothing. Returns every Apigee request of that run.
async fn converges(env: &Env, before: &[Value], interrupted: &Value, finished: bool) -> Vec<Value> {
    env.clear_faults().await;
    env.clear_requests().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, report) = handler.rotate(&format!("app={APP1}")).await;
    assert_eq!(status, 200, "{report:#}");
    let requests = env.requests().await;
    assert!(
        !requests.iter().any(is_key_creation),
        "no second key is created: {requests:#?}"
    );

    // One new key, complete: approved, its product approved, the mark says so.
    let new = new_keys(env, before).await;
    assert_eq!(new.len(), 1, "exactly one new key: {new:#?}");
    let key = &new[0];
    assert_eq!(key["consumerKey"], interrupted["consumerKey"]);
    assert_eq!(key["status"], "approved");
    assert_eq!(
        key["apiProducts"],
        json!([{"apiproduct": PRODUCT, "status": "approved"}])
    );
    assert_eq!(state_mark(key), Some("productsAttached"));
    let key = key["consumerKey"].as_str().unwrap().to_string();
    let shown = format!("****{}", &key[key.len() - 4..]);

    // Distributed: every App1 target updated with it, none failed.
    assert_eq!(report["errors"], json!([]), "{report:#}");
    let toolkit: Vec<&Value> = report["successes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "TOOLKIT")
        .collect();
    // A key this run finished is reported as renewed; a complete one is just the current key.
    assert_eq!(toolkit.len(), usize::from(finished), "{report:#}");
    if finished {
        assert_eq!(toolkit[0]["apiKey"], shown.as_str(), "{report:#}");
    }
    assert_eq!(
        report["summary"]["renewed"],
        u64::from(finished),
        "{report:#}"
    );
    let targets: Vec<&Value> = report["successes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| common::is_target(e))
        .collect();
    assert!(!targets.is_empty(), "{report:#}");
    for t in &targets {
        assert_eq!(t["appName"], APP1, "{t}");
        assert_eq!(t["apiKey"], shown.as_str(), "{t}");
    }
    // ... once: no container written twice.
    let writes: Vec<String> = env
        .writes()
        .await
        .iter()
        .filter(|r| r["service"] != "apigee")
        .map(|r| format!("{} {} {}", r["method"], r["path"], r["query"]))
        .collect();
    let distinct: BTreeSet<&String> = writes.iter().collect();
    assert_eq!(
        distinct.len(),
        writes.len(),
        "a write repeated: {writes:#?}"
    );
    assert!(!writes.is_empty());
    let state = env.state().await;
    assert_eq!(
        state["keyVaults"]["kv-consumers-prd"]["healthcheck-prd-apikey"],
        key.as_str()
    );

    // Converged: the next run changes nothing.
    let apigee: Vec<Value> = requests
        .into_iter()
        .filter(|r| r["service"] == "apigee")
        .collect();
    env.clear_requests().await;
    let (status, last) = handler.rotate(&format!("app={APP1}")).await;
    assert_eq!(status, 200, "{last:#}");
    assert_eq!(last["summary"]["renewed"], 0, "{last:#}");
    assert_eq!(env.writes().await, Vec::<Value>::new(), "{last:#}");

    let all_keys = env.all_keys().await;
    handler.assert_no_key_leaked(&all_keys, &[&report.to_string(), &last.to_string()]);
    apigee
}

/// The request log holds no write to any target: nothing was distributed.
fn nothing_distributed(log: &[Value]) {
    let target_writes: Vec<&Value> = log
        .iter()
        .filter(|r| {
            r["method"] != "GET"
                && !["apigee", "identity", "authority"].contains(&r["service"].as_str().unwrap())
                && !common::is_arm_list(r)
        })
        .collect();
    assert!(
        target_writes.is_empty(),
        "a target was written: {target_writes:#?}"
    );
}

/// Every Apigee request in `log` (but the OAuth token endpoint) is a method of the discovery
/// document, and every method a renewal needs was used.
fn check_against_discovery(log: &[Value], expected: &[&str]) {
    let discovery = Discovery::load();
    let mut used = BTreeSet::new();
    for r in log.iter().filter(|r| r["service"] == "apigee") {
        let path = r["path"].as_str().unwrap();
        if path == "/token" {
            assert_eq!(r["method"], "POST", "{r}");
            continue;
        }
        match discovery.method_for(
            r["method"].as_str().unwrap(),
            path,
            r["query"].as_str().unwrap_or(""),
        ) {
            Ok(id) => {
                used.insert(id);
            }
            Err(why) => panic!("{} {path}: {why}", r["method"]),
        }
    }
    for id in expected {
        assert!(used.contains(*id), "{id} was not used: {used:#?}");
    }
}

const GET_APP: &str = "apigee.organizations.developers.apps.get";
const CREATE: &str = "apigee.organizations.developers.apps.keys.create";
const GET_KEY: &str = "apigee.organizations.developers.apps.keys.get";
const UPDATE: &str = "apigee.organizations.developers.apps.keys.updateDeveloperAppKey";
const APPROVE: &str =
    "apigee.organizations.developers.apps.keys.apiproducts.updateDeveloperAppKeyApiProduct";
const DELETE: &str = "apigee.organizations.developers.apps.keys.delete";

/// Killed after the key was created, before its products were attached: the key exists with
/// no products, marked unfinished; nothing got it. The next run attaches the product, approves
/// it and distributes the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_create() {
    let env = Env::start().await;
    let before = credentials(&env).await;
    env.add_fault(&json!({"service": "apigee", "method": "POST", "match": format!("{APP1}/keys/"), "delayMs": HANG_MS, "times": 1}))
        .await;
    // The products POST hangs.
    let killed = kill_during(&env, |log| {
        key_updates(log)
            .first()
            .is_some_and(|r| r["status"].is_null())
    })
    .await;
    nothing_distributed(&killed);
    let half = new_keys(&env, &before).await;
    assert_eq!(half.len(), 1, "{half:#?}");
    assert_eq!(half[0].get("apiProducts"), None, "no products yet");
    assert_eq!(state_mark(&half[0]), Some("unfinished"));

    let next = converges(&env, &before, &half[0], true).await;
    check_against_discovery(&killed, &[GET_APP, CREATE]);
    check_against_discovery(&next, &[GET_APP, GET_KEY, UPDATE, APPROVE]);
}

/// Killed after the products were attached, while the approval of the pending association
/// hangs: the key has the product, pending. The next run approves it and distributes the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_products() {
    let env = Env::start().await;
    let before = credentials(&env).await;
    env.add_fault(&json!({"service": "apigee", "method": "POST", "match": "/apiproducts/", "delayMs": HANG_MS, "times": 1}))
        .await;
    let killed = kill_during(&env, |log| {
        log.iter().any(|r| {
            r["status"].is_null()
                && r["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("/apiproducts/"))
        })
    })
    .await;
    nothing_distributed(&killed);
    let half = new_keys(&env, &before).await;
    assert_eq!(half.len(), 1, "{half:#?}");
    assert_eq!(
        half[0]["apiProducts"],
        json!([{"apiproduct": PRODUCT, "status": "pending"}]),
        "a manual product's association starts pending"
    );
    assert_eq!(state_mark(&half[0]), Some("productsAttached"));

    let next = converges(&env, &before, &half[0], true).await;
    check_against_discovery(&killed, &[GET_APP, CREATE, UPDATE]);
    check_against_discovery(&next, &[GET_APP, GET_KEY, APPROVE]);
}

/// Killed after the association was approved, while the first read of a target hangs: the key
/// is complete in Apigee and nothing got it. The next run takes it as the current key (no new
/// key, no Apigee write) and distributes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_approve() {
    let env = Env::start().await;
    let before = credentials(&env).await;
    const TARGETS: [&str; 4] = [
        "keyVault",
        "appConfiguration",
        "resourceManager",
        "applicationApi",
    ];
    for service in TARGETS {
        env.add_fault(&json!({"service": service, "delayMs": HANG_MS}))
            .await;
    }
    let killed = kill_during(&env, |log| {
        let approved = log.iter().any(|r| {
            r["status"] == 200
                && r["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("/apiproducts/"))
        });
        approved
            && log
                .iter()
                .any(|r| r["status"].is_null() && TARGETS.contains(&r["service"].as_str().unwrap()))
    })
    .await;
    nothing_distributed(&killed);
    let done = new_keys(&env, &before).await;
    assert_eq!(done.len(), 1, "{done:#?}");
    assert_eq!(
        done[0]["apiProducts"],
        json!([{"apiproduct": PRODUCT, "status": "approved"}])
    );

    let next = converges(&env, &before, &done[0], false).await;
    assert!(
        next.iter()
            .all(|r| r["method"] == "GET" || r["path"] == "/token"),
        "nothing left to do in Apigee: {next:#?}"
    );
    check_against_discovery(&killed, &[GET_APP, CREATE, UPDATE, APPROVE]);
    check_against_discovery(&next, &[GET_APP]);
}

/// Attaching the products fails and so does deleting the half-made key: the run reports the
/// failure and distributes nothing; the key stays, marked unfinished, and is never current. The
/// next run finishes it and distributes it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_clean_up_is_finished_by_the_next_run() {
    let env = Env::start().await;
    let before = credentials(&env).await;
    env.add_fault(&json!({"service": "apigee", "method": "POST", "match": format!("{APP1}/keys/"), "status": 400, "times": 1}))
        .await;
    env.add_fault(&json!({"service": "apigee", "method": "DELETE", "match": format!("{APP1}/keys/"), "status": 503}))
        .await;
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, report) = handler.rotate(&format!("app={APP1}")).await;
    assert_eq!(status, 207, "{report:#}");
    let failed = env.requests().await;
    nothing_distributed(&failed);
    let toolkit = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "TOOLKIT")
        .cloned()
        .unwrap_or_else(|| panic!("{report:#}"));
    let message = toolkit["message"].as_str().unwrap();
    assert!(message.contains("could not be deleted"), "{message}");
    let half = new_keys(&env, &before).await;
    assert_eq!(half.len(), 1, "{half:#?}");
    assert_eq!(state_mark(&half[0]), Some("unfinished"));
    let all_keys = env.all_keys().await;
    handler.assert_no_key_leaked(&all_keys, &[&report.to_string()]);
    drop(handler);

    let next = converges(&env, &before, &half[0], true).await;
    check_against_discovery(&failed, &[GET_APP, CREATE, UPDATE, DELETE]);
    check_against_discovery(&next, &[GET_APP, GET_KEY, UPDATE, APPROVE]);
}

/// A renewal that nothing interrupts: create, products, approve; every call a method of the
/// discovery document, and no key-level approval (keys start approved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninterrupted_renewal_uses_only_discovery_methods() {
    let env = Env::start().await;
    let before = credentials(&env).await;
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, report) = handler.rotate(&format!("app={APP1}")).await;
    assert_eq!(status, 200, "{report:#}");
    let log = env.requests().await;
    let shapes: Vec<String> = log
        .iter()
        .filter(|r| r["service"] == "apigee" && r["method"] != "GET" && r["path"] != "/token")
        .map(|r| {
            let path = r["path"].as_str().unwrap();
            let tail = path.split(&format!("/apps/{APP1}")).nth(1).unwrap();
            let tail: Vec<&str> = tail
                .split('/')
                .enumerate()
                .map(|(i, s)| if i == 2 { "{key}" } else { s })
                .collect();
            format!(
                "{} {}{}",
                r["method"].as_str().unwrap(),
                tail.join("/"),
                match r["query"].as_str() {
                    Some(q) => format!("?{q}"),
                    None => String::new(),
                }
            )
        })
        .collect();
    assert_eq!(
        shapes,
        [
            "POST /keys",
            "POST /keys/{key}",
            &format!("POST /keys/{{key}}/apiproducts/{PRODUCT}?action=approve"),
        ]
    );
    let new = new_keys(&env, &before).await;
    assert_eq!(new.len(), 1);
    assert_eq!(state_mark(&new[0]), Some("productsAttached"));
    assert_eq!(
        new[0]["apiProducts"],
        json!([{"apiproduct": PRODUCT, "status": "approved"}])
    );
    check_against_discovery(&log, &[GET_APP, CREATE, UPDATE, APPROVE]);
}

/// The oracle refuses what the discovery document does not define, so the checks above mean
/// something.
#[test]
fn the_discovery_oracle_refuses_other_shapes() {
    let d = Discovery::load();
    let app = "/v1/organizations/o/developers/d@x.example/apps/a";
    assert_eq!(d.method_for("GET", app, "").unwrap(), GET_APP);
    assert_eq!(
        d.method_for(
            "POST",
            &format!("{app}/keys/k/apiproducts/p"),
            "action=approve"
        )
        .unwrap(),
        APPROVE
    );
    assert_eq!(
        d.method_for("POST", &format!("{app}/keys"), "").unwrap(),
        CREATE
    );
    assert!(d
        .method_for("PUT", &format!("{app}/keys/k/apiproducts/p"), "")
        .is_err());
    assert!(d.method_for("GET", &format!("{app}/keys"), "").is_err());
    assert!(d
        .method_for("POST", &format!("{app}/keys/k"), "action=enable")
        .is_err());
    assert!(d
        .method_for("POST", &format!("{app}/keys/k"), "force=true")
        .is_err());
    assert!(d.method_for("GET", "/v2/organizations/o", "").is_err());
}

/// The methods of the discovery excerpt: id, HTTP method, flat path, query parameters.
struct Discovery {
    methods: Vec<(String, String, Vec<String>, Vec<String>)>,
}

impl Discovery {
    fn load() -> Discovery {
        let text = String::from_utf8(common::reference(
            "apigee/apigee-x-v1.discovery-excerpt.methods.txt",
        ))
        .unwrap();
        let mut methods: Vec<(String, String, Vec<String>, Vec<String>)> = Vec::new();
        for line in text.lines() {
            if line.starts_with("apigee.") {
                let id = line.split_whitespace().next().unwrap().to_string();
                methods.push((id, String::new(), Vec::new(), Vec::new()));
                continue;
            }
            let Some(m) = methods.last_mut() else {
                continue;
            };
            let trimmed = line.trim_start();
            let mut words = trimmed.split_whitespace();
            match words.next() {
                Some(verb @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE")) if m.1.is_empty() => {
                    m.1 = verb.to_string();
                    m.2 = words
                        .next()
                        .unwrap()
                        .split('/')
                        .map(str::to_string)
                        .collect();
                }
                Some("query:") => m.3 = query_params(&trimmed["query:".len()..]),
                _ => {}
            }
        }
        assert!(methods.len() >= 15, "parsed {} methods", methods.len());
        assert!(methods.iter().all(|m| !m.1.is_empty() && !m.2.is_empty()));
        Discovery { methods }
    }

    /// The discovery method a request is, or why it is none. A path template segment `{x}`
    /// stands for one non-empty segment; of several matches the most literal wins (`keys/create`
    /// over `keys/{keysId}`). Every query parameter must be one the method declares; `action`
    /// must be `approve` or `revoke`, as the method descriptions say.
    fn method_for(&self, method: &str, path: &str, query: &str) -> Result<&str, String> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let best = self
            .methods
            .iter()
            .filter(|(_, verb, template, _)| {
                verb == method
                    && template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(t, s)| {
                        if t.starts_with('{') {
                            !s.is_empty()
                        } else {
                            t == s
                        }
                    })
            })
            .max_by_key(|(_, _, template, _)| {
                template.iter().filter(|t| !t.starts_with('{')).count()
            })
            .ok_or_else(|| "no discovery method has this HTTP method and path".to_string())?;
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if !best.3.iter().any(|p| *p == name) {
                return Err(format!("{}: no query parameter {name}", best.0));
            }
            if name == "action" && value != "approve" && value != "revoke" {
                return Err(format!(
                    "{}: action {value} is neither approve nor revoke",
                    best.0
                ));
            }
        }
        Ok(&best.0)
    }
}

/// The names of a `query:` line: `count (…), expand (bool)` or `action "…"`; commas inside
/// parentheses or quotes do not separate.
fn query_params(line: &str) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let (mut depth, mut quoted) = (0, false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if depth == 0 && !quoted => {
                pieces.push(String::new());
                continue;
            }
            _ => {}
        }
        pieces.last_mut().unwrap().push(c);
    }
    pieces
        .iter()
        .filter_map(|p| p.split_whitespace().next())
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

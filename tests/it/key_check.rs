//! Key checks before distribution (issue 15): the real binary against the sandbox, whose API
//! gateway double accepts a key exactly when the Apigee double holds it approved for the
//! proxy's product. A check passes before any target of its app is written; a failing one
//! writes nothing of its app and withdraws the key the run created; the gateway's propagation
//! delay (refusals injected with `POST /faults`) is waited for, within a bound; a dry run
//! sends none. Request counts come from the sandbox's request log.

use crate::common;

use common::{Env, Handler};
use serde_json::{json, Value};

const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
const APP2: &str = "APIKeyRotator_TestApp2_Sandbox";

/// The demo's mapping with these `keyChecks` (each `(app, path, how)`, where `how` is
/// `header` or `queryParameter` and the key goes in `x-apikey` / `apikey`).
fn mapping(env: &Env, checks: &[(&str, &str, &str)]) -> String {
    let mut m: Value = serde_json::from_str(&env.info.env["APIKEYROTATIONAPPS"]).unwrap();
    let gateway = &env.info.endpoints.api_gateway;
    m["keyChecks"] = checks
        .iter()
        .map(|(app, path, how)| {
            let name = if *how == "header" {
                "x-apikey"
            } else {
                "apikey"
            };
            json!({"apimAppName": app, "url": format!("{gateway}{path}"), how.to_string(): name})
        })
        .collect();
    m.to_string()
}

async fn start(env: &Env, checks: &[(&str, &str, &str)], extra: &[(&str, &str)]) -> Handler {
    let text = mapping(env, checks);
    let mut settings = vec![("APIKEYROTATIONAPPS", text.as_str())];
    settings.extend_from_slice(extra);
    Handler::start(&env.settings(&settings)).await
}

fn list<'a>(report: &'a Value, name: &str) -> &'a [Value] {
    report[name].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn key_check<'a>(report: &'a Value, name: &str, app: &str) -> Option<&'a Value> {
    list(report, name)
        .iter()
        .find(|e| e["type"] == "KEY_CHECK" && e["appName"] == app)
}

async fn gateway_requests(env: &Env) -> Vec<Value> {
    env.requests()
        .await
        .into_iter()
        .filter(|r| r["service"] == "apiGateway")
        .collect()
}

/// App1's keys in the Apigee double: (consumerKey, expiresAt) in stored order.
async fn app_keys(env: &Env, app: &str) -> Vec<String> {
    env.state().await["apigee"]["apps"][app]["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["consumerKey"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_check_comes_before_distribution() {
    let env = Env::start().await;
    let handler = start(
        &env,
        &[
            (APP1, "/healthcheck/v1/ping", "header"),
            (APP2, "/orders/v1/status", "queryParameter"),
        ],
        &[],
    )
    .await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    for app in [APP1, APP2] {
        let entry = key_check(&report, "successes", app).unwrap_or_else(|| panic!("{report:#}"));
        assert!(
            entry["message"]
                .as_str()
                .unwrap()
                .starts_with("The gateway accepted the key at 127.0.0.1:"),
            "{entry}"
        );
        assert!(
            entry["apiKey"].as_str().unwrap().starts_with("****"),
            "{entry}"
        );
    }
    assert!(
        list(&report, "errors")
            .iter()
            .all(|e| e["code"] != "KeyCheckFailed"),
        "{report:#}"
    );
    // One try per app, and App1's before App1's first write.
    let log = env.requests().await;
    let checks: Vec<usize> = (0..log.len())
        .filter(|i| log[*i]["service"] == "apiGateway")
        .collect();
    assert_eq!(checks.len(), 2, "{log:#?}");
    let first_write = log
        .iter()
        .position(|r| {
            r["method"] == "PUT"
                && r["path"]
                    .as_str()
                    .unwrap()
                    .contains("/secrets/healthcheck-prd-apikey")
        })
        .expect("App1's secret is written");
    assert!(checks
        .iter()
        .any(|i| *i < first_write && log[*i]["path"] == "/healthcheck/v1/ping"));
    let new_key = list(&report, "successes")
        .iter()
        .find(|e| e["type"] == "TOOLKIT" && e["appName"] == APP1)
        .unwrap()["apiKey"]
        .as_str()
        .unwrap()
        .trim_start_matches('*')
        .to_string();
    let vault = &env.state().await["keyVaults"]["kv-consumers-prd"]["healthcheck-prd-apikey"];
    assert!(
        vault.as_str().unwrap().ends_with(&new_key),
        "the new key is distributed"
    );
    let keys = env.all_keys().await;
    handler.assert_no_key_leaked(&keys, &[&report.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_writes_nothing_of_its_app_and_withdraws_the_new_key() {
    let env = Env::start().await;
    let before = app_keys(&env, APP1).await;
    let state_before = env.state().await;
    // App1's key is not approved for the reference product: refused for good.
    let handler = start(
        &env,
        &[(APP1, "/reference/v1/ping", "header")],
        &[("KEY_CHECK_MAX_WAIT_SECONDS", "0")],
    )
    .await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 207, "{report:#}");
    let entry = key_check(&report, "errors", APP1).unwrap_or_else(|| panic!("{report:#}"));
    let message = entry["message"].as_str().unwrap();
    assert_eq!(entry["code"], "KeyCheckFailed");
    assert!(
        message.contains("status 401 (oauth.v2.InvalidApiKeyForGivenResource)"),
        "{message}"
    );
    assert!(
        message.contains("was withdrawn from the API manager"),
        "{message}"
    );
    assert!(!message.contains('?'), "no query in the report: {message}");
    // Every App1 target that would have been written is an error; nothing of App1 was written.
    let app1_errors: Vec<&Value> = list(&report, "errors")
        .iter()
        .filter(|e| e["appName"] == APP1 && e["type"] != "KEY_CHECK")
        .collect();
    assert!(app1_errors.len() >= 5, "{report:#}");
    assert!(app1_errors.iter().all(|e| e["code"] == "KeyCheckFailed"
        && e["message"]
            .as_str()
            .unwrap()
            .contains("still holds its previous key")));
    // The key made and withdrawn is a TOOLKIT warning, no renewal (and no "renewal done"
    // notice or key.created success follows from it); no entry of App1 is a success.
    assert!(
        list(&report, "successes")
            .iter()
            .all(|e| e["appName"] != APP1),
        "{report:#}"
    );
    let made = list(&report, "warnings")
        .iter()
        .find(|e| e["type"] == "TOOLKIT" && e["appName"] == APP1)
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(made["code"], "KeyWithdrawn", "{report:#}");
    assert!(
        made["message"]
            .as_str()
            .unwrap()
            .contains("Then withdrawn: its key check failed"),
        "{report:#}"
    );
    assert_eq!(report["summary"]["renewed"], 0, "{report:#}");
    // (The API manager's own writes, creating and withdrawing the key, are not targets.)
    let writes: Vec<Value> = env
        .writes()
        .await
        .into_iter()
        .filter(|r| r["service"] != "apigee")
        .collect();
    assert!(
        writes.iter().all(|r| {
            let path = r["path"].as_str().unwrap_or("");
            !path.contains("healthcheck") && r["service"] != "applicationApi"
        }),
        "a write reached an App1 target: {writes:#?}"
    );
    let state = env.state().await;
    for (section, store, name) in [
        ("keyVaults", "kv-consumers-prd", "healthcheck-prd-apikey"),
        ("keyVaults", "kv-consumers-prd", "webapp-ref-apikey"),
    ] {
        assert_eq!(
            state[section][store][name], state_before[section][store][name],
            "{store}/{name}"
        );
    }
    assert!(state["applicationApis"].get("healthcheck-api").is_none());
    // The new key is gone; the old ones are as they were, the seeded current one still current.
    assert_eq!(
        app_keys(&env, APP1).await,
        before,
        "the new key was withdrawn"
    );
    // The other apps went on: App2's stale targets were updated.
    assert!(
        list(&report, "successes")
            .iter()
            .any(|e| e["appName"] == APP2 && e["type"] == "KEY_VAULT"),
        "{report:#}"
    );
    assert_eq!(gateway_requests(&env).await.len(), 1, "0 tries once");
    let keys = env.all_keys().await;
    handler.assert_no_key_leaked(&keys, &[&report.to_string()]);

    // The next run renews again and checks again: it converges once the gateway accepts.
    drop(handler);
    let handler = start(&env, &[(APP1, "/healthcheck/v1/ping", "header")], &[]).await;
    let (_, again) = handler.rotate("").await;
    assert!(key_check(&again, "successes", APP1).is_some(), "{again:#}");
    assert_eq!(app_keys(&env, APP1).await.len(), before.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_not_renewed_in_this_run_is_not_withdrawn() {
    let env = Env::start().await;
    let before = app_keys(&env, APP2).await;
    // App2 is not due: its stale targets need its current key, which the orders product has,
    // not the health check's.
    let handler = start(
        &env,
        &[(APP2, "/healthcheck/v1/ping", "header")],
        &[("KEY_CHECK_MAX_WAIT_SECONDS", "0")],
    )
    .await;
    let (_, report) = handler.rotate("").await;
    let entry = key_check(&report, "errors", APP2).unwrap_or_else(|| panic!("{report:#}"));
    let message = entry["message"].as_str().unwrap();
    assert!(
        message.contains("not created by this run, so it is not withdrawn"),
        "{message}"
    );
    assert_eq!(app_keys(&env, APP2).await, before);
    assert!(list(&report, "errors").iter().any(|e| e["appName"] == APP2
        && e["code"] == "KeyCheckFailed"
        && e["type"] == "KEY_VAULT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_delay_is_waited_for() {
    let env = Env::start().await;
    let handler = start(&env, &[(APP1, "/healthcheck/v1/ping", "header")], &[]).await;
    env.add_fault(&json!({"service": "apiGateway", "status": 401, "times": 2}))
        .await;
    let (_, report) = handler.rotate("").await;
    let entry = key_check(&report, "successes", APP1).unwrap_or_else(|| panic!("{report:#}"));
    assert!(
        entry["message"].as_str().unwrap().contains("after 3 tries"),
        "{entry}"
    );
    let checks = gateway_requests(&env).await;
    let statuses: Vec<u64> = checks
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [401, 401, 200], "{checks:#?}");
    assert!(list(&report, "successes")
        .iter()
        .any(|e| e["appName"] == APP1 && e["type"] == "KEY_VAULT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_reached_fails_the_check() {
    let env = Env::start().await;
    let before = app_keys(&env, APP1).await;
    let handler = start(
        &env,
        &[(APP1, "/healthcheck/v1/ping", "header")],
        &[("KEY_CHECK_MAX_WAIT_SECONDS", "1")],
    )
    .await;
    env.add_fault(&json!({"service": "apiGateway", "status": 401}))
        .await;
    let (_, report) = handler.rotate("").await;
    let entry = key_check(&report, "errors", APP1).unwrap_or_else(|| panic!("{report:#}"));
    let message = entry["message"].as_str().unwrap();
    assert!(
        message.contains("status 401 (oauth.v2.InvalidApiKey)"),
        "{message}"
    );
    assert!(
        message.contains("KEY_CHECK_MAX_WAIT_SECONDS (1 s) reached"),
        "{message}"
    );
    assert!(!gateway_requests(&env).await.is_empty());
    assert_eq!(
        app_keys(&env, APP1).await,
        before,
        "the new key was withdrawn"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_the_check_and_sends_none() {
    let env = Env::start().await;
    let handler = start(&env, &[(APP1, "/healthcheck/v1/ping", "header")], &[]).await;
    let (_, report) = handler.rotate("dryRun=true").await;
    let entry = key_check(&report, "successes", APP1).unwrap_or_else(|| panic!("{report:#}"));
    let port = env
        .info
        .endpoints
        .api_gateway
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        entry["message"],
        format!(
            "Would try the new key at 127.0.0.1:{port}/healthcheck/v1/ping before distributing it."
        )
    );
    assert!(
        gateway_requests(&env).await.is_empty(),
        "a dry run sends no check"
    );
}

/// A bad bound is a settings error that names the setting; the run does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_bound_is_named() {
    let env = Env::start().await;
    let handler = start(
        &env,
        &[(APP1, "/healthcheck/v1/ping", "header")],
        &[("KEY_CHECK_MAX_WAIT_SECONDS", "soon")],
    )
    .await;
    let (status, body) = handler.rotate("").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.to_string().contains("KEY_CHECK_MAX_WAIT_SECONDS"),
        "{body}"
    );
    // `validate --settings` names it too, before any run.
    let out = common::binary()
        .envs(env.settings(&[("KEY_CHECK_MAX_WAIT_SECONDS", "soon")]))
        .args(["validate", "--settings"])
        .output()
        .unwrap();
    let (stdout, stderr) = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("KEY_CHECK_MAX_WAIT_SECONDS: not a whole number of seconds"),
        "{stderr}"
    );
    assert!(env.writes().await.is_empty());
}

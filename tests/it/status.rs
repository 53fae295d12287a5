//! Status, read-only (issue 15): `apikey-rotator status` and `GET /api/KeyStatus` against the
//! sandbox. A fresh sandbox shows each target's state and the keys of each app; after a
//! rotation every target is current and the replaced key is `previous`; a target set by hand
//! to an older key is drift, one holding a random value `unknown`, a deleted one `missing`;
//! `app` filters; an app not in the mapping is a 404-style error; no full key appears anywhere;
//! and the request log shows that status reads exactly what a dry run reads, and writes nothing.

use crate::common;

use azure_security_keyvault_secrets::models::SetSecretParameters;
use azure_security_keyvault_secrets::SecretClient;
use common::issuer::{IssuerDouble, ISSUERS};
use common::{Env, Handler};
use serde_json::Value;
use std::collections::BTreeMap;

const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
const APP2: &str = "APIKeyRotator_TestApp2_Sandbox";
const APP3: &str = "ApiKeyRotator_TestApp3_Sandbox";
const VAULT: &str = "kv-consumers-prd";

/// The real binary with the sandbox's settings: exit code, stdout, stderr.
fn cli(env: &Env, args: &[&str]) -> (i32, String, String) {
    let out = common::binary()
        .envs(env.settings(&[]))
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = common::text(&out);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// `status --json` (plus `extra`): exit code and the answer.
fn status_json(env: &Env, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["status", "--json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = cli(env, &args);
    let answer = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {stdout}\n{stderr}"));
    (code, answer, stdout + &stderr)
}

/// Every target of the answer by name: (state, key shown, via).
fn targets(answer: &Value) -> BTreeMap<String, (String, Option<String>, Option<String>)> {
    let mut out = BTreeMap::new();
    for app in answer["apps"].as_array().unwrap() {
        for t in app["targets"].as_array().unwrap() {
            let s = |f: &str| t[f].as_str().map(String::from);
            let old = out.insert(
                t["target"].as_str().unwrap().to_string(),
                (s("state").unwrap(), s("apiKey"), s("via")),
            );
            assert!(old.is_none(), "a target shown twice: {t}");
        }
    }
    out
}

fn state_of(answer: &Value, suffix: &str) -> String {
    let all = targets(answer);
    let found: Vec<_> = all.iter().filter(|(t, _)| t.ends_with(suffix)).collect();
    assert_eq!(found.len(), 1, "{suffix}: {all:#?}");
    found[0].1 .0.clone()
}

fn app<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["appName"] == name)
        .unwrap_or_else(|| panic!("{name} not in {answer:#}"))
}

/// `****` and the last four characters of `key`.
fn shown(key: &str) -> String {
    format!("****{}", &key[key.len() - 4..])
}

/// The full keys of `app` in the double's state, in the double's order.
async fn stored_keys(env: &Env, app: &str) -> Vec<String> {
    let issuer: &dyn IssuerDouble = ISSUERS[0];
    issuer
        .stored_keys(&env.state().await, app)
        .into_iter()
        .map(|k| k.key)
        .collect()
}

/// (service, method, path) of every request of the log, sorted and each once: a read that the
/// retry policy repeated (an answer slower than the request timeout on a loaded machine) is the
/// same read.
async fn request_set(env: &Env) -> Vec<(String, String, String)> {
    let mut set: Vec<(String, String, String)> = env
        .requests()
        .await
        .iter()
        .map(|r| {
            let s = |f: &str| r[f].as_str().unwrap_or_default().to_string();
            (s("service"), s("method"), s("path"))
        })
        .collect();
    set.sort();
    set.dedup();
    set
}

fn assert_no_key(keys: &[String], texts: &[&str]) {
    for key in keys {
        for t in texts {
            assert!(
                !t.contains(key.as_str()),
                "a full key ({}) appears in the output",
                shown(key)
            );
        }
    }
}

/// A fresh sandbox: each app's keys, its current key and renewal, each target's state (Key
/// Vault references followed, fingerprints compared); drift listed first and exit 1; the
/// tables show the same; status reads exactly what a dry run reads and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_sandbox_shows_every_target_and_reads_what_a_dry_run_reads() {
    let env = Env::start().await;
    let keys = env.all_keys().await;
    env.clear_requests().await;
    let (code, answer, output) = status_json(&env, &[]);
    assert_eq!(code, 1, "drift exits 1: {output}");
    let status_requests = request_set(&env).await;
    let writes = env.writes().await;
    assert!(writes.is_empty(), "status wrote: {writes:#?}");

    // The demo: every app has an expired key and a current one.
    for name in [APP1, APP2, APP3] {
        let a = app(&answer, name);
        let stored = stored_keys(&env, name).await;
        let shown_keys: Vec<&str> = a["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["apiKey"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = stored.iter().map(|k| shown(k)).collect();
        assert_eq!(shown_keys, expected, "{name}");
        let roles: Vec<&str> = a["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["expired", "current"], "{name}: {a:#}");
        assert_eq!(a["current"]["apiKey"], shown(&stored[1]), "{name}");
        assert_eq!(a["renewBeforeExpiryDays"], 45);
        assert!(
            a["keys"][1]["products"][0]["approval"] == "approved",
            "{a:#}"
        );
        assert!(a["current"]["why"]
            .as_str()
            .unwrap()
            .contains("expires latest"));
    }
    // App1 is inside its renewal window, App2 outside, App3 never expires.
    assert_eq!(app(&answer, APP1)["current"]["renewalDue"], true);
    assert!(
        app(&answer, APP1)["current"]["daysUntilRenewal"]
            .as_i64()
            .unwrap()
            <= 0
    );
    assert_eq!(app(&answer, APP2)["current"]["renewalDue"], false);
    assert!(
        app(&answer, APP2)["current"]["daysUntilRenewal"]
            .as_i64()
            .unwrap()
            > 0
    );
    assert_eq!(app(&answer, APP3)["current"]["renewalDueAt"], Value::Null);
    assert_eq!(app(&answer, APP3)["current"]["expiresAt"], Value::Null);

    // Targets, as the demo seeds them.
    assert_eq!(state_of(&answer, "/healthcheck-prd-apikey"), "current");
    assert_eq!(state_of(&answer, "/orders-prd-apikey"), "expired");
    assert_eq!(state_of(&answer, "/partner-apikey"), "missing");
    assert_eq!(state_of(&answer, "/reference-prd-apikey"), "current");
    // Application APIs: compared by fingerprint; healthcheck-api holds nothing yet.
    assert_eq!(state_of(&answer, "/referenceapi-prd"), "current");
    assert_eq!(state_of(&answer, "/healthcheck-api"), "missing");
    // The staging slot holds App2's expired key and App1's current one.
    assert_eq!(
        state_of(&answer, "func-orders/staging/ORDERS_API_KEY"),
        "expired"
    );
    assert_eq!(
        state_of(&answer, "func-orders/staging/HEALTHCHECK_API_KEY"),
        "current"
    );
    assert_eq!(state_of(&answer, "swa-portal/PORTAL_API_KEY"), "expired");
    // A Key Vault reference is followed to the secret it names, which holds App1's old key.
    let all = targets(&answer);
    let (state, key, via) = &all["app-storefront/HEALTHCHECK_API_KEY"];
    assert_eq!(state, "expired");
    assert_eq!(
        key.as_deref(),
        Some(shown(&stored_keys(&env, APP1).await[0]).as_str())
    );
    assert!(
        via.as_deref().unwrap().contains("webapp-ref-apikey"),
        "{via:?}"
    );

    // Drift is the first finding: every target not current, nothing else.
    let drift: Vec<&str> = answer["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["target"].as_str().unwrap())
        .collect();
    let not_current: Vec<&str> = all
        .iter()
        .filter(|(_, (s, _, _))| s != "current" && s != "error")
        .map(|(t, _)| t.as_str())
        .collect();
    let mut sorted = drift.clone();
    sorted.sort();
    assert_eq!(sorted, not_current);
    let s = &answer["summary"];
    assert_eq!(
        (s["apps"].as_u64(), s["targets"].as_u64()),
        (Some(3), Some(17)),
        "{s}"
    );
    assert_eq!(s["drift"].as_u64(), Some(drift.len() as u64));
    assert_eq!(
        s["current"].as_u64().unwrap()
            + s["drift"].as_u64().unwrap()
            + s["errors"].as_u64().unwrap(),
        17
    );
    assert_eq!(s["errors"], 0, "{answer:#}");
    assert_eq!(
        answer
            .as_object()
            .unwrap()
            .keys()
            .next()
            .map(String::as_str),
        Some("drift")
    );

    // The same as a table; and as a dry run reads, request for request.
    env.clear_requests().await;
    let (code, table, stderr) = cli(&env, &["status"]);
    assert_eq!(code, 1, "{table}\n{stderr}");
    assert!(
        table.starts_with(&format!("DRIFT: {} of 17 target(s)", drift.len())),
        "{table}"
    );
    for name in [APP1, APP2, APP3] {
        assert!(
            table.lines().any(|l| l == name),
            "{name} has its block: {table}"
        );
    }
    assert!(table.contains("*expired"), "{table}");
    env.clear_requests().await;
    let (code, plan, stderr) = cli(&env, &["rotate", "--dry-run"]);
    assert_eq!(code, 0, "{plan}\n{stderr}");
    let dry_run_requests = request_set(&env).await;
    assert_eq!(
        status_requests, dry_run_requests,
        "status reads exactly what a dry run reads"
    );
    assert!(
        status_requests
            .iter()
            .all(|(service, method, path)| method == "GET"
                || service == "identity"
                || service == "authority"
                || path.ends_with("/token")
                || path.ends_with("/appsettings/list")
                || path.ends_with("/listAppSettings")),
        "status sent a request that may write: {status_requests:#?}"
    );
    assert_no_key(&keys, &[&output, &table, &stderr]);
}

/// After a rotation every target is current and App1's replaced key is `previous`; then a
/// target set by hand to that older key is drift (`previous`), one set to a random value is
/// `unknown`, a deleted one `missing`; `--app` filters, an app not in the mapping exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_every_target_is_current_and_hand_made_drift_shows() {
    let env = Env::start().await;
    let app1_before = stored_keys(&env, APP1).await;
    let (code, report, stderr) = cli(&env, &["rotate"]);
    assert_eq!(code, 0, "{report}\n{stderr}");

    let (code, answer, output) = status_json(&env, &[]);
    assert_eq!(code, 0, "all current exits 0: {output}");
    assert_eq!(answer["drift"], serde_json::json!([]));
    assert_eq!(answer["summary"]["current"], 17, "{answer:#}");
    assert!(targets(&answer).values().all(|(s, _, _)| s == "current"));
    let app1 = stored_keys(&env, APP1).await;
    assert_eq!(app1.len(), 3, "the renewal added a key");
    let roles: Vec<(&str, &str)> = app(&answer, APP1)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["apiKey"].as_str().unwrap(), k["role"].as_str().unwrap()))
        .collect();
    let new_key = app1.iter().find(|k| !app1_before.contains(k)).unwrap();
    assert_eq!(
        roles,
        [
            (shown(&app1_before[0]).as_str(), "expired"),
            (shown(&app1_before[1]).as_str(), "previous"),
            (shown(new_key).as_str(), "current"),
        ]
    );
    assert_eq!(app(&answer, APP1)["keys"][2]["madeByRotator"], true);
    assert_eq!(app(&answer, APP1)["current"]["renewalDue"], false);

    // Drift made by hand, through the official Key Vault client.
    let vault = vault_client(&env);
    set_secret(&vault, "healthcheck-prd-apikey", &app1_before[1]).await;
    set_secret(&vault, "orders-prd-apikey", "not-a-key-of-anyone-0000-zzzz").await;
    vault
        .delete_secret("reference-prd-apikey", None)
        .await
        .unwrap();
    env.clear_requests().await;
    let (code, answer, output) = status_json(&env, &[]);
    assert_eq!(code, 1, "drift exits 1: {output}");
    assert!(env.writes().await.is_empty());
    // (The sandbox's vaults are named by their host and port.)
    let drift: Vec<(&str, &str, &str)> = answer["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let target = d["target"].as_str().unwrap();
            (
                target.rsplit('/').next().unwrap(),
                d["state"].as_str().unwrap(),
                d["appName"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        drift,
        [
            ("healthcheck-prd-apikey", "previous", APP1),
            ("orders-prd-apikey", "unknown", APP2),
            ("reference-prd-apikey", "missing", APP3),
        ],
        "{answer:#}"
    );
    assert_eq!(answer["drift"][0]["apiKey"], shown(&app1_before[1]));
    assert_eq!(
        answer["drift"][1].get("apiKey"),
        None,
        "an unknown value shows nothing"
    );
    assert_eq!(answer["summary"]["drift"], 3);

    // --app shows that app only.
    let (code, only, output) = status_json(&env, &["--app", APP2]);
    assert_eq!(code, 1, "{output}");
    let names: Vec<&str> = only["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["appName"].as_str().unwrap())
        .collect();
    assert_eq!(names, [APP2]);
    assert_eq!(only["drift"].as_array().unwrap().len(), 1);
    assert!(targets(&only).keys().all(|t| !t.contains("healthcheck")));
    // An app not in the mapping: nothing read, exit 2, the app named.
    env.clear_requests().await;
    let (code, stdout, stderr) = cli(&env, &["status", "--app", "NoSuchApp"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("app \"NoSuchApp\" is not in the mapping"),
        "{stderr}"
    );
    assert!(stdout.is_empty());
    assert!(
        env.requests().await.is_empty(),
        "nothing read for a bad --app"
    );

    let mut keys = env.all_keys().await;
    keys.push("not-a-key-of-anyone-0000-zzzz".into());
    let (_, table, stderr) = cli(&env, &["status"]);
    assert!(
        table.contains("*previous") && table.contains("*unknown") && table.contains("*missing"),
        "{table}"
    );
    assert_no_key(&keys, &[&output, &table, &stderr, &answer.to_string()]);
}

/// `GET /api/KeyStatus` through the real handler: the body is what `status --json` prints (its
/// time aside), whatever the path's case; `?app=` filters; an app not in the mapping is a 404
/// `AppNotFound`; an unknown parameter a 400; no write, and no key in the logs or bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_status_function_answers_what_the_command_prints() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let get = |query: &str| {
        let url = format!("{}/api/keystatus{query}", handler.base);
        let client = handler.client.clone();
        async move {
            let r = client.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            let body: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
            (status, body)
        }
    };
    let (status, body) = get("").await;
    assert_eq!(status, 200, "drift is a finding, not a failure: {body:#}");
    let (_, printed, _) = status_json(&env, &[]);
    let without_time = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("timestamp");
        v
    };
    assert_eq!(without_time(&body), without_time(&printed));

    let (status, one) = get(&format!("?app={APP3}&code=fnkey")).await;
    assert_eq!(status, 200, "{one:#}");
    assert_eq!(one["apps"].as_array().unwrap().len(), 1);
    assert_eq!(one["apps"][0]["appName"], APP3);
    assert_eq!(one["summary"]["targets"], 5, "{one:#}");

    let (status, missing) = get("?app=NoSuchApp").await;
    assert_eq!(status, 404, "{missing:#}");
    assert_eq!(missing["error"]["code"], "AppNotFound");
    assert!(missing["error"]["message"]
        .as_str()
        .unwrap()
        .contains("NoSuchApp"));
    // A run keeps answering 400 for the same app, as it always has.
    let (status, refused) = handler.rotate("app=NoSuchApp").await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("BadRequest"))
    );
    let (status, bad) = get("?dryRun=true").await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("BadRequest"))
    );
    let r = handler
        .client
        .post(format!("{}/api/KeyStatus", handler.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);

    assert!(env.writes().await.is_empty(), "{:#?}", env.writes().await);
    handler.assert_no_key_leaked(
        &env.all_keys().await,
        &[&body.to_string(), &one.to_string()],
    );
}

/// With a remote ToolkitApp (TOOLKIT_APP_URL), which hands out the current key only, status
/// says clearly that the key list needs the in-process toolkit, exits 2 and reads no target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_toolkit_is_a_clear_error() {
    let env = Env::start().await;
    env.clear_requests().await;
    let out = common::binary()
        .envs(env.settings(&[("TOOLKIT_APP_URL", "https://127.0.0.1:9/api/ToolkitApp")]))
        .args(["status"])
        .output()
        .unwrap();
    let (stdout, stderr) = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("needs the in-process toolkit") && stderr.contains("TOOLKIT_APP_URL"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
    let read: Vec<Value> = env
        .requests()
        .await
        .into_iter()
        .filter(|r| r["service"] != "identity")
        .collect();
    assert!(read.is_empty(), "{read:#?}");
}

fn vault_client(env: &Env) -> SecretClient {
    common::vault_sdk_client(env, VAULT)
}

async fn set_secret(client: &SecretClient, name: &str, value: &str) {
    let params = SetSecretParameters {
        value: Some(value.into()),
        ..Default::default()
    };
    client
        .set_secret(name, params.try_into().unwrap(), None)
        .await
        .unwrap();
}

/// Status takes no run lock: while a rotation holds it (its write of one secret never
/// answers), KeyStatus answers and shows the targets as they are, and a second rotation is
/// refused with 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_while_a_rotation_holds_the_run_lock() {
    let env = Env::start().await;
    env.add_fault(&serde_json::json!({
        "service": "keyVault", "match": "/secrets/partner-apikey", "method": "PUT",
        "kind": "timeout", "times": 1
    }))
    .await;
    let handler = Handler::start(&env.settings(&[])).await;
    let rotation = {
        let (client, url) = (
            handler.client.clone(),
            format!("{}/api/ApiKeyRotator", handler.base),
        );
        tokio::spawn(async move { client.get(url).send().await })
    };
    // The rotation holds the lock once its hung write is in the log (in flight: no status).
    let mut in_flight = false;
    for _ in 0..400 {
        in_flight = env.requests().await.iter().any(|r| {
            r["method"] == "PUT"
                && r["path"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with("/partner-apikey")
                && r["status"].is_null()
        });
        if in_flight {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(in_flight, "the rotation never reached its hung write");
    let (status, refused) = handler.rotate("").await;
    assert_eq!(status, 409, "the rotation holds the lock: {refused:#}");
    let r = handler
        .client
        .get(format!("{}/api/KeyStatus", handler.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(state_of(&answer, "/partner-apikey"), "missing");
    rotation.abort();
}

//! Grace and revocation, and emergency rotation (issue 15, points 3 and 4), end to end: the real
//! binary against the sandbox. Revocation is off by default; with `KEY_REVOCATION_GRACE_HOURS`
//! a run revokes (Apigee's `?action=revoke`, never a delete) the keys the rotator replaced once
//! the grace period passed and every mapped target of the app was read holding the current
//! key; a stale or failing target blocks it and the report names it. `revoke=immediate` (with
//! `force` and `app`) reads every write back and revokes the leaked key in the same run. After
//! every step no target holds a revoked key, and no output holds a full key.
//!
//! In the demo, App1's key is inside its renewal window (the first run renews it); App2's is
//! not, and its targets include a Key Vault reference (App Configuration `Orders:ApiKeyRef`).

use crate::common;

use apikey_rotator::secret::ApiKey;
use common::issuer::IssuerDouble;
use common::{Env, Handler};
use serde_json::{json, Value};

const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
const APP2: &str = "APIKeyRotator_TestApp2_Sandbox";
const GRACE: &str = "KEY_REVOCATION_GRACE_HOURS";
const EXCLUDED: &str = "KEY_REVOCATION_EXCLUDED_APPS";

/// The app's credentials as the Apigee double holds them.
async fn credentials(env: &Env, app: &str) -> Vec<Value> {
    env.state().await["apigee"]["apps"][app]["credentials"]
        .as_array()
        .unwrap()
        .clone()
}

/// The app's key that is current before any run: the seeded, unexpired one.
async fn seeded_current(env: &Env, app: &str) -> String {
    credentials(env, app).await[1]["consumerKey"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Apigee's `?action=revoke` requests so far.
async fn revokes(env: &Env) -> Vec<Value> {
    env.requests()
        .await
        .into_iter()
        .filter(|r| {
            r["service"] == "apigee"
                && r["method"] == "POST"
                && r["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("action=revoke"))
        })
        .collect()
}

/// Every key some app holds revoked.
async fn revoked_keys(env: &Env) -> Vec<String> {
    let state = env.state().await;
    let mut out = Vec::new();
    for (_, app) in state["apigee"]["apps"].as_object().unwrap() {
        for c in app["credentials"].as_array().unwrap() {
            if c["status"] == "revoked" {
                out.push(c["consumerKey"].as_str().unwrap().to_string());
            }
        }
    }
    out
}

/// No mapped target holds a revoked key (nor its fingerprint, which the application APIs
/// show), and Apigee was never asked to delete a key. The demo's places outside the mapping
/// (the production slot of `func-orders`, `func-locked`, `Locked:ApiKey`) are left out: they
/// stand for consumers the rotator does not know.
async fn assert_no_target_holds_a_revoked_key(env: &Env) {
    let mut state = env.state().await;
    state.as_object_mut().unwrap().remove("apigee");
    let sites = state["resourceManager"]["sites"].as_object_mut().unwrap();
    sites.remove("func-orders");
    sites.remove("func-locked");
    state["appConfigurations"]["appcs-consumers"]["keyValues"]
        .as_object_mut()
        .unwrap()
        .remove("Locked:ApiKey");
    let targets = state.to_string();
    for key in revoked_keys(env).await {
        assert!(
            !targets.contains(&key),
            "a target holds revoked key ****{}",
            &key[key.len() - 4..]
        );
        let fp = ApiKey::new(key.clone()).sha256_hex();
        assert!(
            !targets.contains(&fp),
            "a target holds a revoked key's fingerprint"
        );
    }
    let deletes: Vec<Value> = env
        .requests()
        .await
        .into_iter()
        .filter(|r| r["service"] == "apigee" && r["method"] == "DELETE")
        .collect();
    assert!(deletes.is_empty(), "revocation never deletes: {deletes:?}");
}

fn of_type<'a>(report: &'a Value, list: &str, kind: &str, app: &str) -> Vec<&'a Value> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind && e["appName"] == app)
        .collect()
}

fn redacted(key: &str) -> String {
    ApiKey::new(key.to_string()).redacted()
}

/// Runs `query`, asserts the status, checks the invariants; returns the report.
async fn run(env: &Env, handler: &Handler, query: &str, status: u16) -> Value {
    let (got, report) = handler.rotate(query).await;
    assert_eq!(got, status, "{query}: {report:#}");
    assert_no_target_holds_a_revoked_key(env).await;
    handler.assert_no_key_leaked(&env.all_keys().await, &[&report.to_string()]);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_off_by_default() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let first = run(&env, &handler, "", 200).await;
    assert_eq!(first["summary"]["renewed"], 1);
    let second = run(&env, &handler, "", 200).await;
    for report in [&first, &second] {
        assert_eq!(report["summary"]["revoked"], 0, "{report:#}");
        for list in ["successes", "warnings", "errors"] {
            assert!(
                report[list]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|e| e["type"] != "REVOCATION"),
                "{report:#}"
            );
        }
    }
    assert!(revokes(&env).await.is_empty());
    assert!(revoked_keys(&env).await.is_empty());
}

/// Grace 24 hours: the replaced key is planned for revocation after the grace period, and
/// neither run revokes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_the_grace_period_a_revocation_is_planned_not_made() {
    let env = Env::start().await;
    let old = seeded_current(&env, APP1).await;
    let handler = Handler::start(&env.settings(&[(GRACE, "24")])).await;
    run(&env, &handler, "", 200).await;
    run(&env, &handler, "", 200).await;
    let plan = run(&env, &handler, "dryRun=true", 200).await;
    let planned = of_type(&plan, "successes", "REVOCATION", APP1);
    assert_eq!(planned.len(), 1, "{plan:#}");
    assert_eq!(planned[0]["apiKey"], redacted(&old).as_str());
    let tomorrow = (time::OffsetDateTime::now_utc() + time::Duration::hours(24)).date();
    let message = planned[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("Would revoke {} after ", redacted(&old))),
        "{message}"
    );
    assert!(message.contains(&tomorrow.to_string()), "{message}");
    assert_eq!(plan["summary"]["revoked"], 0, "planned for later: {plan:#}");
    assert!(revokes(&env).await.is_empty());
    assert!(revoked_keys(&env).await.is_empty());
}

/// Grace 0: the run that renews writes every target without reading it back, so it does not
/// revoke (each written target is named); the next run reads them all holding the new key and
/// revokes the old one with Apigee's revoke, once; the run after that changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_every_target_holds_the_new_key_the_replaced_key_is_revoked() {
    let env = Env::start().await;
    let old = seeded_current(&env, APP1).await;
    let handler = Handler::start(&env.settings(&[(GRACE, "0")])).await;
    let first = run(&env, &handler, "", 200).await;
    let blocked = of_type(&first, "warnings", "REVOCATION", APP1);
    assert_eq!(
        blocked.len(),
        5,
        "each of App1's targets was written: {first:#}"
    );
    for b in &blocked {
        assert_eq!(b["code"], "RevocationBlocked");
        assert_eq!(b["apiKey"], redacted(&old).as_str());
        let target = b["target"].as_str().unwrap();
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Blocked by {target}: ")),
            "{b}"
        );
    }
    assert!(blocked.iter().any(|b| b["target"]
        .as_str()
        .unwrap()
        .ends_with("/healthcheck-prd-apikey")));
    assert!(revokes(&env).await.is_empty());

    let plan = run(&env, &handler, "dryRun=true", 200).await;
    let planned = of_type(&plan, "successes", "REVOCATION", APP1);
    assert_eq!(planned.len(), 1, "{plan:#}");
    assert!(planned[0]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("Would revoke {} now", redacted(&old))));
    assert_eq!(plan["summary"]["revoked"], 1);
    assert!(revokes(&env).await.is_empty(), "a dry run revokes nothing");

    let second = run(&env, &handler, "", 200).await;
    let done = of_type(&second, "successes", "REVOCATION", APP1);
    assert_eq!(done.len(), 1, "{second:#}");
    assert_eq!(done[0]["apiKey"], redacted(&old).as_str());
    let message = done[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("Revoked {}, replaced by ****", redacted(&old))),
        "{message}"
    );
    assert_eq!(second["summary"]["revoked"], 1);
    let requests = revokes(&env).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0]["path"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/apps/{APP1}/keys/{old}")));
    assert_eq!(revoked_keys(&env).await, std::slice::from_ref(&old));
    // Revoked, never deleted.
    assert!(credentials(&env, APP1)
        .await
        .iter()
        .any(|c| c["consumerKey"] == old.as_str() && c["status"] == "revoked"));

    let third = run(&env, &handler, "", 200).await;
    assert_eq!(third["summary"]["revoked"], 0, "{third:#}");
    assert_eq!(revokes(&env).await.len(), 1);
}

/// Writes `value` into a Key Vault secret of the sandbox with the official SDK.
async fn set_secret(env: &Env, vault: &str, name: &str, value: &str) {
    use azure_security_keyvault_secrets::models::SetSecretParameters;
    let client = common::vault_sdk_client(env, vault);
    let params = SetSecretParameters {
        value: Some(value.to_string()),
        ..Default::default()
    };
    client
        .set_secret(name, params.try_into().unwrap(), None)
        .await
        .unwrap();
}

/// A target that holds the old key again (someone put it back) is written, not confirmed:
/// the report names it, and only the next run, which reads it holding the new key, revokes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_target_blocks_the_revocation_and_is_named() {
    let env = Env::start().await;
    let old = seeded_current(&env, APP1).await;
    let handler = Handler::start(&env.settings(&[(GRACE, "0")])).await;
    run(&env, &handler, "", 200).await;
    set_secret(&env, "kv-consumers-prd", "healthcheck-prd-apikey", &old).await;
    let second = run(&env, &handler, "", 200).await;
    let blocked = of_type(&second, "warnings", "REVOCATION", APP1);
    assert_eq!(blocked.len(), 1, "{second:#}");
    let target = blocked[0]["target"].as_str().unwrap();
    assert!(target.ends_with("/healthcheck-prd-apikey"), "{target}");
    let message = blocked[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Blocked by {target}: it did not hold the current key"
        )),
        "{message}"
    );
    assert!(revokes(&env).await.is_empty());
    let third = run(&env, &handler, "", 200).await;
    assert_eq!(third["summary"]["revoked"], 1, "{third:#}");
    assert_eq!(revoked_keys(&env).await, [old]);
}

/// A target that fails blocks the revocation, and the report says which and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_blocks_the_revocation() {
    let env = Env::start().await;
    let old = seeded_current(&env, APP1).await;
    let handler = Handler::start(&env.settings(&[(GRACE, "0")])).await;
    run(&env, &handler, "", 200).await;
    env.add_fault(
        &json!({"service": "keyVault", "match": "/secrets/healthcheck-prd-apikey", "status": 403}),
    )
    .await;
    let second = run(&env, &handler, "", 207).await;
    let blocked = of_type(&second, "warnings", "REVOCATION", APP1);
    assert_eq!(blocked.len(), 1, "{second:#}");
    let target = blocked[0]["target"].as_str().unwrap();
    assert!(target.ends_with("/healthcheck-prd-apikey"), "{target}");
    assert!(
        blocked[0]["message"]
            .as_str()
            .unwrap()
            .contains("it failed in this run (Forbidden)"),
        "{second:#}"
    );
    assert!(revokes(&env).await.is_empty());
    env.clear_faults().await;
    let third = run(&env, &handler, "", 200).await;
    assert_eq!(third["summary"]["revoked"], 1, "{third:#}");
    assert_eq!(revoked_keys(&env).await, [old]);
}

/// An app in KEY_REVOCATION_EXCLUDED_APPS is never revoked by the grace policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excluded_app_is_never_revoked() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[(GRACE, "0"), (EXCLUDED, APP1)])).await;
    for _ in 0..3 {
        let report = run(&env, &handler, "", 200).await;
        assert_eq!(report["summary"]["revoked"], 0, "{report:#}");
    }
    assert!(revokes(&env).await.is_empty());
}

/// A key no rotator key replaces is never revoked: here a key made outside a renewal (no
/// `replaces`) became current, and the key it superseded stays valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_rotator_did_not_replace_is_never_revoked() {
    let env = Env::start().await;
    let superseded = seeded_current(&env, APP2).await;
    let issuer = common::apigee::Apigee.issuer(&env);
    let call = apikey_rotator::azure::retry::Call::new(
        std::sync::Arc::new(apikey_rotator::azure::retry::RetryPolicy::default()),
        None,
    );
    let other = apikey_rotator::toolkit::generate_key();
    issuer
        .create_key(
            &call,
            APP2,
            &other,
            Some(time::Duration::days(300)),
            &["orders-product".to_string()],
            None,
        )
        .await
        .unwrap();
    let handler = Handler::start(&env.settings(&[(GRACE, "0")])).await;
    for _ in 0..2 {
        let report = run(&env, &handler, &format!("app={APP2}"), 200).await;
        assert_eq!(report["summary"]["revoked"], 0, "{report:#}");
    }
    assert!(revokes(&env).await.is_empty());
    assert!(credentials(&env, APP2)
        .await
        .iter()
        .any(|c| c["consumerKey"] == superseded.as_str() && c["status"] == "approved"));
}

/// The index in the request log of the last request that changed a target.
fn last_target_write(log: &[Value]) -> usize {
    log.iter()
        .rposition(|r| {
            r["service"] != "apigee"
                && r["service"] != "identity"
                && r["service"] != "authority"
                && r["method"] != "GET"
                && !common::is_arm_list(r)
        })
        .expect("targets were written")
}

/// Emergency: the forced renewal is distributed, every written container is read back (the
/// vault secret twice: read, then read back), and the leaked key is revoked in the same run,
/// after the last write. No grace setting is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_revokes_the_leaked_key_after_reading_every_target_back() {
    let env = Env::start().await;
    let leaked = seeded_current(&env, APP2).await;
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, body) = handler
        .rotate(&format!("app={APP2}&revoke=immediate"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("force"), "{body}");
    env.clear_requests().await;
    let report = run(
        &env,
        &handler,
        &format!("app={APP2}&force=true&revoke=immediate"),
        200,
    )
    .await;
    assert_eq!(report["summary"]["renewed"], 1, "{report:#}");
    assert_eq!(report["summary"]["revoked"], 1, "{report:#}");
    let done = of_type(&report, "successes", "REVOCATION", APP2);
    assert_eq!(done.len(), 1, "{report:#}");
    assert_eq!(done[0]["apiKey"], redacted(&leaked).as_str());
    assert_eq!(revoked_keys(&env).await, std::slice::from_ref(&leaked));
    let log = env.requests().await;
    let revoke_at = log
        .iter()
        .position(|r| {
            r["query"]
                .as_str()
                .is_some_and(|q| q.contains("action=revoke"))
        })
        .expect("revoked");
    assert!(
        revoke_at > last_target_write(&log),
        "revoked after every write"
    );
    let reads_of = |path: &str| {
        log.iter()
            .filter(|r| {
                // The SDK's first call of a client is answered by the auth challenge (401).
                r["method"] == "GET"
                    && r["status"] == 200
                    && r["path"]
                        .as_str()
                        .is_some_and(|p| p.trim_end_matches('/').ends_with(path))
            })
            .count()
    };
    let vault_log: Vec<&Value> = log.iter().filter(|r| r["service"] == "keyVault").collect();
    assert_eq!(
        reads_of("/secrets/orders-prd-apikey"),
        2,
        "read, then read back: {vault_log:?}"
    );
    // The App Configuration reference is followed to its secret, which is read back too.
    assert_eq!(reads_of("/secrets/appcs-ref-apikey"), 2);
}

/// Emergency with a target that fails: nothing is revoked, and the report says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_with_a_failing_target_does_not_revoke() {
    let env = Env::start().await;
    let leaked = seeded_current(&env, APP2).await;
    let handler = Handler::start(&env.settings(&[])).await;
    env.add_fault(&json!({"service": "keyVault", "method": "PUT", "match": "/secrets/partner-apikey", "status": 403}))
        .await;
    let report = run(
        &env,
        &handler,
        &format!("app={APP2}&force=true&revoke=immediate"),
        207,
    )
    .await;
    assert_eq!(report["summary"]["renewed"], 1);
    assert_eq!(report["summary"]["revoked"], 0);
    let blocked = of_type(&report, "warnings", "REVOCATION", APP2);
    assert_eq!(blocked.len(), 1, "{report:#}");
    let target = blocked[0]["target"].as_str().unwrap();
    assert!(target.ends_with("/partner-apikey"), "{target}");
    assert_eq!(blocked[0]["apiKey"], redacted(&leaked).as_str());
    assert!(blocked[0]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!(
            "Blocked by {target}: it failed in this run (Forbidden)"
        )));
    assert!(revokes(&env).await.is_empty());
}

/// The revoke itself fails after the renewal was distributed (the run ends there, as a crash
/// would): the key stays valid, the report has the error, and the next run, which finds every
/// target holding the new key, revokes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_between_renewal_and_revocation_converges_on_the_next_run() {
    let env = Env::start().await;
    let leaked = seeded_current(&env, APP2).await;
    let handler = Handler::start(&env.settings(&[])).await;
    env.add_fault(&common::apigee::Apigee.fault(common::issuer::Step::Revoke, 503))
        .await;
    let report = run(
        &env,
        &handler,
        &format!("app={APP2}&force=true&revoke=immediate"),
        207,
    )
    .await;
    let failed = of_type(&report, "errors", "REVOCATION", APP2);
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["code"], "ServiceUnavailable");
    assert!(revoked_keys(&env).await.is_empty());
    env.clear_faults().await;
    drop(handler);
    // The next run (a new process, revocation on), reads every target holding the new key.
    let handler = Handler::start(&env.settings(&[(GRACE, "0")])).await;
    let next = run(&env, &handler, &format!("app={APP2}"), 200).await;
    assert_eq!(next["summary"]["renewed"], 0, "{next:#}");
    assert_eq!(next["summary"]["revoked"], 1, "{next:#}");
    assert_eq!(revoked_keys(&env).await, [leaked]);
}

/// Bad revocation settings stop the run before anything is written, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_revocation_settings_are_named_and_change_nothing() {
    let env = Env::start().await;
    for (name, value) in [(GRACE, "soon"), (EXCLUDED, "NoSuchApp")] {
        let handler = Handler::start(&env.settings(&[(name, value)])).await;
        let (status, body) = handler.rotate("").await;
        assert_eq!(status, 500, "{body}");
        assert!(body.to_string().contains(name), "{body}");
    }
    assert_eq!(env.writes().await, Vec::<Value>::new());
}

/// `rotate --revoke immediate` needs `--force` (which needs `--app`); other values are refused.
#[test]
fn the_cli_flag_needs_force_and_app() {
    for args in [
        &["rotate", "--revoke", "immediate"][..],
        &["rotate", "--revoke", "immediate", "--app", APP2],
        &["rotate", "--revoke", "later", "--force", "--app", APP2],
    ] {
        let out = common::binary().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let (_, stderr) = common::text(&out);
        assert!(
            stderr.contains("--revoke") || stderr.contains("--force"),
            "{stderr}"
        );
    }
}

/// `validate --settings` names a bad revocation setting (and accepts good ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_settings_checks_the_revocation_settings() {
    let env = Env::start().await;
    let validate = |overrides: &[(&str, &str)]| {
        let out = common::binary()
            .envs(env.settings(overrides))
            .args(["validate", "--settings"])
            .output()
            .unwrap();
        let (stdout, stderr) = common::text(&out);
        (out.status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = validate(&[(GRACE, "48"), (EXCLUDED, APP1)]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let (code, _, stderr) = validate(&[(EXCLUDED, &format!("{APP1},NoSuchApp"))]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{EXCLUDED}: \"NoSuchApp\" is not an apimAppName")),
        "{stderr}"
    );
    let (code, _, stderr) = validate(&[(GRACE, "two days")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(GRACE), "{stderr}");
}

/// A dry run of an emergency plans the revocation of the key the forced renewal would
/// replace, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_of_an_emergency_plans_and_changes_nothing() {
    let env = Env::start().await;
    let leaked = seeded_current(&env, APP2).await;
    let handler = Handler::start(&env.settings(&[])).await;
    let plan = run(
        &env,
        &handler,
        &format!("dryRun=true&app={APP2}&force=true&revoke=immediate"),
        200,
    )
    .await;
    let planned = of_type(&plan, "successes", "REVOCATION", APP2);
    assert_eq!(planned.len(), 1, "{plan:#}");
    assert_eq!(planned[0]["apiKey"], redacted(&leaked).as_str());
    assert!(planned[0]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("Would revoke {} at once", redacted(&leaked))));
    assert_eq!(plan["summary"]["revoked"], 1);
    assert_eq!(env.writes().await, Vec::<Value>::new());
}

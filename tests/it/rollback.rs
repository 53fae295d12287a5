//! Rollback (issue 15, point 5) against the sandbox, through `POST /api/KeyRollback` and
//! `apikey-rotator rollback`: after a renewal, the key it replaced is current again in the API
//! manager (pinned, the bad key withdrawn, both marks on the keys themselves) and in every
//! target; the next run keeps it; a second rollback changes nothing; an app whose current key
//! replaced nothing cannot be rolled back and nothing is written; a dry run plans and writes
//! nothing; no full key appears anywhere.

use crate::common;

use apikey_rotator::toolkit::apigee::client::{PINNED_AT_ATTRIBUTE, WITHDRAWN_AT_ATTRIBUTE};
use common::issuer::{IssuerDouble, StoredKey, ISSUERS};
use common::{Env, Handler};
use serde_json::Value;

const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
const APP2: &str = "APIKeyRotator_TestApp2_Sandbox";

fn shown(key: &str) -> String {
    format!("****{}", &key[key.len() - 4..])
}

async fn stored(env: &Env, app: &str) -> Vec<StoredKey> {
    let issuer: &dyn IssuerDouble = ISSUERS[0];
    issuer.stored_keys(&env.state().await, app)
}

fn has_attribute(k: &StoredKey, name: &str) -> bool {
    k.attributes.iter().any(|(n, _)| n == name)
}

/// `POST /api/KeyRollback?{query}`: status and report.
async fn rollback(handler: &Handler, query: &str) -> (u16, Value, String) {
    let r = handler
        .client
        .post(format!("{}/api/KeyRollback?{query}", handler.base))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, body, text)
}

fn entries<'a>(report: &'a Value, list: &str, kind: &str) -> Vec<&'a Value> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

/// Every target of `app` in `status --json`: (target, state, key shown).
fn target_states(env: &Env, app: &str) -> (Vec<(String, String, String)>, Value, String) {
    let out = common::binary()
        .envs(env.settings(&[]))
        .args(["status", "--json", "--app", app])
        .output()
        .unwrap();
    let (stdout, stderr) = common::text(&out);
    let answer: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {stdout}\n{stderr}"));
    let targets = answer["apps"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |f: &str| t[f].as_str().unwrap_or_default().to_string();
            (s("target"), s("state"), s("apiKey"))
        })
        .collect();
    (targets, answer, stdout + &stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_restores_the_previous_key_everywhere_and_holds() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let before: Vec<String> = stored(&env, APP1)
        .await
        .into_iter()
        .map(|k| k.key)
        .collect();

    // The weekly run renews App1 (inside its window) and distributes the new key.
    let (status, first) = handler.rotate("").await;
    assert_eq!(status, 200, "{first:#}");
    let keys = stored(&env, APP1).await;
    let new = keys
        .iter()
        .find(|k| !before.contains(&k.key))
        .expect("App1 was renewed")
        .key
        .clone();
    let (targets, _, _) = target_states(&env, APP1);
    assert!(targets.len() >= 3, "{targets:?}");
    assert!(
        targets.iter().all(|(_, s, _)| s == "current"),
        "{targets:?}"
    );
    let (_, answer, _) = target_states(&env, APP1);
    let previous_shown = answer["apps"][0]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "previous")
        .map(|k| k["apiKey"].as_str().unwrap().to_string())
        .expect("the replaced key is previous");
    let previous = before
        .iter()
        .find(|k| shown(k) == previous_shown)
        .unwrap()
        .clone();

    // A dry run plans the rollback and every write it causes, and changes nothing.
    env.clear_requests().await;
    let (status, plan, plan_text) = rollback(&handler, &format!("app={APP1}&dryRun=true")).await;
    assert_eq!(status, 200, "{plan:#}");
    assert_eq!(plan["dryRun"], true);
    let step = entries(&plan, "successes", "ROLLBACK");
    assert_eq!(step.len(), 1, "{plan:#}");
    assert!(
        step[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Would roll back app"),
        "{plan:#}"
    );
    assert_eq!(step[0]["apiKey"], shown(&previous).as_str());
    assert_eq!(
        plan["summary"]["updated"].as_u64(),
        Some(targets.len() as u64),
        "every target of App1 would get the previous key: {plan:#}"
    );
    assert!(env.writes().await.is_empty(), "a dry run wrote");

    // The rollback: the previous key is current again in the API manager and every target.
    let (status, done, done_text) = rollback(&handler, &format!("app={APP1}")).await;
    assert_eq!(status, 200, "{done:#}");
    assert_eq!(entries(&done, "successes", "ROLLBACK").len(), 1, "{done:#}");
    assert_eq!(
        done["summary"]["updated"].as_u64(),
        Some(targets.len() as u64),
        "{done:#}"
    );
    let keys = stored(&env, APP1).await;
    let restored = keys.iter().find(|k| k.key == previous).unwrap();
    let withdrawn = keys.iter().find(|k| k.key == new).unwrap();
    assert!(has_attribute(restored, PINNED_AT_ATTRIBUTE), "{keys:?}");
    assert!(has_attribute(withdrawn, WITHDRAWN_AT_ATTRIBUTE), "{keys:?}");
    // Every target was read back holding the restored key, so the bad key is revoked (the
    // API manager's revoke: it stays, and can be approved again), in the same run.
    assert!(withdrawn.revoked && restored.approved, "{keys:?}");
    let revoked = entries(&done, "successes", "REVOCATION");
    assert_eq!(revoked.len(), 1, "{done:#}");
    assert_eq!(revoked[0]["apiKey"], shown(&new).as_str());
    let deletes: Vec<Value> = env
        .requests()
        .await
        .into_iter()
        .filter(|r| r["service"] == "apigee" && r["method"] == "DELETE")
        .collect();
    assert!(deletes.is_empty(), "a rollback never deletes: {deletes:#?}");
    let (after, answer, status_text) = target_states(&env, APP1);
    assert_eq!(
        answer["apps"][0]["current"]["apiKey"],
        shown(&previous).as_str(),
        "{answer:#}"
    );
    assert!(
        after
            .iter()
            .all(|(_, s, k)| s == "current" && *k == shown(&previous)),
        "{after:?}"
    );

    // The next run keeps the restored key (the pin holds the window's renewal off) and
    // writes nothing; a second rollback finds it done and writes nothing either.
    env.clear_requests().await;
    let (status, next) = handler.rotate(&format!("app={APP1}")).await;
    assert_eq!(status, 200, "{next:#}");
    assert_eq!(next["summary"]["renewed"], 0, "{next:#}");
    assert_eq!(next["summary"]["updated"], 0, "{next:#}");
    let (status, again, again_text) = rollback(&handler, &format!("app={APP1}")).await;
    assert_eq!(status, 200, "{again:#}");
    assert!(
        entries(&again, "successes", "ROLLBACK")[0]["message"]
            .as_str()
            .unwrap()
            .contains("rolled back already"),
        "{again:#}"
    );
    assert_eq!(again["summary"]["updated"], 0, "{again:#}");
    let apigee_writes: Vec<Value> = env
        .writes()
        .await
        .into_iter()
        .filter(|r| r["service"] == "apigee")
        .collect();
    assert!(apigee_writes.is_empty(), "{apigee_writes:#?}");

    let all = env.all_keys().await;
    handler.assert_no_key_leaked(&all, &[&plan_text, &done_text, &again_text, &status_text]);
}

/// With revocation on, the key a renewal replaced is revoked once every target holds the new
/// one; a rollback reactivates it (the API manager's approve), makes it current everywhere, and
/// revokes the bad key in its place. At no point does a target hold a revoked key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_reactivates_a_revoked_previous_key() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[("KEY_REVOCATION_GRACE_HOURS", "0")])).await;
    let before: Vec<String> = stored(&env, APP1)
        .await
        .into_iter()
        .map(|k| k.key)
        .collect();
    let (status, _) = handler.rotate("").await;
    assert_eq!(status, 200);
    // The second run reads every target holding the new key: the replaced key is revoked.
    let (status, second) = handler.rotate("").await;
    assert_eq!(status, 200, "{second:#}");
    let keys = stored(&env, APP1).await;
    let new = keys
        .iter()
        .find(|k| !before.contains(&k.key))
        .unwrap()
        .key
        .clone();
    let previous = keys
        .iter()
        .find(|k| k.revoked)
        .expect("the replaced key was revoked")
        .key
        .clone();
    let (status, done, text) = rollback(&handler, &format!("app={APP1}")).await;
    assert_eq!(status, 200, "{done:#}");
    let step = entries(&done, "successes", "ROLLBACK");
    assert!(
        step[0]["message"]
            .as_str()
            .unwrap()
            .contains("(reactivated)"),
        "{done:#}"
    );
    let keys = stored(&env, APP1).await;
    let restored = keys.iter().find(|k| k.key == previous).unwrap();
    let bad = keys.iter().find(|k| k.key == new).unwrap();
    assert!(restored.approved && !restored.revoked, "{keys:?}");
    assert!(bad.revoked, "{keys:?}");
    let (after, _, _) = target_states(&env, APP1);
    assert!(
        after
            .iter()
            .all(|(_, s, k)| s == "current" && *k == shown(&previous)),
        "{after:?}"
    );
    handler.assert_no_key_leaked(&env.all_keys().await, &[&text]);
}

/// A rollback that fails between its steps (the API manager refuses the bad key's withdrawal
/// mark after the previous key was pinned) leaves a valid current key everywhere: the next run
/// distributes the pinned key and keeps the bad one valid; the next rollback finishes (withdraws
/// and, once every target holds the restored key, revokes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_interrupted_between_steps_converges() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let before: Vec<String> = stored(&env, APP1)
        .await
        .into_iter()
        .map(|k| k.key)
        .collect();
    let (status, first) = handler.rotate("").await;
    assert_eq!(status, 200, "{first:#}");
    let new = stored(&env, APP1)
        .await
        .into_iter()
        .find(|k| !before.contains(&k.key))
        .unwrap()
        .key;
    // The withdrawal is the step's last write: a POST on the bad key itself.
    env.add_fault(&serde_json::json!({
        "service": "apigee", "method": "POST", "match": format!("/keys/{new}"), "status": 500
    }))
    .await;
    let (status, failed, failed_text) = rollback(&handler, &format!("app={APP1}")).await;
    assert_eq!(status, 502, "{failed:#}");
    assert_eq!(
        entries(&failed, "errors", "ROLLBACK").len(),
        1,
        "{failed:#}"
    );
    env.clear_faults().await;
    let keys = stored(&env, APP1).await;
    let bad = keys.iter().find(|k| k.key == new).unwrap();
    assert!(
        !has_attribute(bad, WITHDRAWN_AT_ATTRIBUTE) && bad.approved,
        "{keys:?}"
    );
    let restored = keys
        .iter()
        .find(|k| has_attribute(k, PINNED_AT_ATTRIBUTE))
        .expect("the previous key was pinned before the failure")
        .key
        .clone();

    // A scheduled run meanwhile: the pinned key is current and goes everywhere; no renewal.
    let (status, run) = handler.rotate(&format!("app={APP1}")).await;
    assert_eq!(status, 200, "{run:#}");
    assert_eq!(run["summary"]["renewed"], 0, "{run:#}");
    let (after, _, _) = target_states(&env, APP1);
    assert!(
        after
            .iter()
            .all(|(_, s, k)| s == "current" && *k == shown(&restored)),
        "{after:?}"
    );

    // The next rollback finishes: withdraws and revokes the bad key, writes no target.
    let (status, done, done_text) = rollback(&handler, &format!("app={APP1}")).await;
    assert_eq!(status, 200, "{done:#}");
    assert_eq!(done["summary"]["updated"], 0, "{done:#}");
    let keys = stored(&env, APP1).await;
    let bad = keys.iter().find(|k| k.key == new).unwrap();
    assert!(
        has_attribute(bad, WITHDRAWN_AT_ATTRIBUTE) && bad.revoked,
        "{keys:?}"
    );
    handler.assert_no_key_leaked(&env.all_keys().await, &[&failed_text, &done_text]);
}

/// An app whose current key replaced no other cannot be rolled back: 409, the report's one
/// ROLLBACK error says why, nothing is written; the command line says the same and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_go_back_to_is_a_clear_refusal_that_writes_nothing() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    env.clear_requests().await;
    let (status, report, text) = rollback(&handler, &format!("app={APP2}")).await;
    assert_eq!(status, 409, "{report:#}");
    let errors = entries(&report, "errors", "ROLLBACK");
    assert_eq!(errors.len(), 1, "{report:#}");
    assert_eq!(errors[0]["code"], "NoPreviousKey");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("not one the rotator made to replace another"),
        "{report:#}"
    );
    assert!(env.writes().await.is_empty());

    let (status, _, _) = rollback(&handler, "").await;
    assert_eq!(status, 400, "app is required");
    let (status, _, _) = rollback(&handler, "app=NotInTheMapping").await;
    assert_eq!(status, 400, "an app not in the mapping");

    let out = common::binary()
        .envs(env.settings(&[]))
        .args(["rollback", "--app", APP2])
        .output()
        .unwrap();
    let (stdout, stderr) = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("NoPreviousKey"), "{stdout}");
    assert!(env.writes().await.is_empty());
    handler.assert_no_key_leaked(&env.all_keys().await, &[&text, &stdout, &stderr]);
}

/// The value of `key`'s attribute `name`.
fn attribute(k: &StoredKey, name: &str) -> Option<String> {
    k.attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// Rolled back, renewed again (the renewal ends the pin), then rolled back again: the restored
/// key is pinned anew (an old pin that a renewal ended would pin nothing) and is current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rollback_after_a_renewal_pins_again() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, first) = handler.rotate("").await;
    assert_eq!(status, 200, "{first:#}");
    let (status, done, _) = rollback(&handler, &format!("app={APP1}")).await;
    assert_eq!(status, 200, "{done:#}");
    let pinned: Vec<StoredKey> = stored(&env, APP1)
        .await
        .into_iter()
        .filter(|k| has_attribute(k, PINNED_AT_ATTRIBUTE))
        .collect();
    assert_eq!(pinned.len(), 1, "{pinned:?}");
    let (restored, first_pin) = (
        pinned[0].key.clone(),
        attribute(&pinned[0], PINNED_AT_ATTRIBUTE).unwrap(),
    );

    // An emergency renewal makes a key after the pin: it is current, the pin is over.
    let (status, renewed) = handler.rotate(&format!("app={APP1}&force=true")).await;
    assert_eq!(status, 200, "{renewed:#}");
    assert_eq!(renewed["summary"]["renewed"], 1, "{renewed:#}");
    let (_, answer, _) = target_states(&env, APP1);
    assert_ne!(
        answer["apps"][0]["current"]["apiKey"],
        shown(&restored).as_str(),
        "{answer:#}"
    );

    let (status, again, again_text) = rollback(&handler, &format!("app={APP1}")).await;
    assert_eq!(status, 200, "{again:#}");
    let keys = stored(&env, APP1).await;
    let back = keys.iter().find(|k| k.key == restored).unwrap();
    let second_pin = attribute(back, PINNED_AT_ATTRIBUTE).expect("pinned");
    assert!(second_pin > first_pin, "{first_pin} then {second_pin}");
    let (targets, answer, status_text) = target_states(&env, APP1);
    assert_eq!(
        answer["apps"][0]["current"]["apiKey"],
        shown(&restored).as_str(),
        "{answer:#}"
    );
    assert!(
        targets.iter().all(|(_, s, _)| s == "current"),
        "{targets:?}"
    );
    handler.assert_no_key_leaked(&env.all_keys().await, &[&again_text, &status_text]);
}

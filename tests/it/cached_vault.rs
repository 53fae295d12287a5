//! A vault's client is kept across runs (its authentication challenge is met once per process),
//! yet each run's requests follow the retry policy of that run, not of the run that made the
//! client: the policy travels in the run's call, not in the cached client.

use crate::common;

use apikey_rotator::azure::retry::{Call, RetryPolicy};
use apikey_rotator::azure::{credential, http};
use apikey_rotator::error::ErrorKind;
use apikey_rotator::settings::Settings;
use apikey_rotator::targets::key_vault::VaultClients;
use apikey_rotator::targets::{Container, TargetContext};
use common::Env;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// A policy of `attempts` attempts, with short waits between them.
fn policy(attempts: u32) -> Arc<RetryPolicy> {
    Arc::new(RetryPolicy::new(
        attempts,
        Duration::from_millis(5),
        Duration::from_millis(20),
        Duration::from_secs(10),
        4,
    ))
}

/// Requests to the vault for `secret` in the sandbox's log.
async fn vault_requests(env: &Env, secret: &str) -> usize {
    env.requests()
        .await
        .iter()
        .filter(|r| r["service"] == "keyVault" && r["path"].as_str().unwrap_or("").contains(secret))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_vault_follows_the_policy_of_the_run_that_uses_it() {
    let env = Env::start().await;
    let client_id = env.info.env["SANDBOX_CLIENT_ID"].clone();
    let secret = env.info.env["SANDBOX_CLIENT_SECRET"].clone();
    let settings = Arc::new(Settings::from_map(env.settings(&[
        ("IDENTITY_ENDPOINT", ""),
        ("IDENTITY_HEADER", ""),
        ("AZURE_CLIENT_ID", &client_id),
        ("AZURE_CLIENT_SECRET", &secret),
    ])));
    let ca = std::fs::read(&env.info.ca_cert_file).unwrap();
    let http = http::build_client(Some(&ca), Duration::from_secs(10)).unwrap();
    let credential = credential::build(&settings, &http).unwrap();
    // One process: one set of vault clients, shared by its runs.
    let vaults = VaultClients::default();
    let run = |attempts: u32| TargetContext {
        http: http.clone(),
        credential: credential.clone(),
        cloud: settings.cloud.clone(),
        settings: settings.clone(),
        vaults: vaults.clone(),
        call: Call::new(policy(attempts), None),
    };
    let url: url::Url = env.info.endpoints.key_vaults["kv-partners-prd"]
        .parse()
        .unwrap();

    // The first run makes the client (and meets the challenge) with one attempt per request.
    let first = run(1).key_vault(&url, "kv-partners-prd").unwrap();
    assert!(first.read(&["cached-primer".into()]).await[0].is_ok());
    env.add_fault(
        &json!({"service": "keyVault", "match": "cached-down", "status": 503, "times": 50}),
    )
    .await;
    env.clear_requests().await;
    let e = first
        .read(&["cached-down".into()])
        .await
        .remove(0)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(vault_requests(&env, "cached-down").await, 1, "one attempt");

    // The next run uses the same client with three attempts per request.
    env.clear_requests().await;
    let next = run(3).key_vault(&url, "kv-partners-prd").unwrap();
    let e = next
        .read(&["cached-down".into()])
        .await
        .remove(0)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(
        vault_requests(&env, "cached-down").await,
        3,
        "the cached client follows the policy of the run that uses it"
    );
    env.clear_faults().await;
}

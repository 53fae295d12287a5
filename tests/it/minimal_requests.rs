//! The request count of a run is the minimum (PRODUCT.md §10, BENCHMARKS.md), counted in the
//! sandbox's request log over a bulk workload (`apikey-rotator sandbox --workload`): per app one
//! issuer read (and, when renewing, Apigee's two calls that make a key), per target one read
//! and at most one write, per site one list and at most one PUT, one token per audience, one
//! authentication challenge per vault — and connections reused rather than opened per request.

use crate::common;

use common::{is_arm_list, Env, Handler};
use serde_json::Value;
use std::collections::BTreeMap;

/// Apps in the workload: four of them renewed, two secrets missing, every kind of target.
const APPS: usize = 60;

fn count(requests: &[Value], f: impl Fn(&Value) -> bool) -> usize {
    requests.iter().filter(|r| f(r)).count()
}

fn path(r: &Value) -> &str {
    r["path"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_sends_the_minimal_requests_and_reuses_connections() {
    let env = Env::start_workload(APPS).await;
    let w = env
        .info
        .workload
        .clone()
        .expect("the sandbox reports its workload");
    assert_eq!((w.apps, w.targets, w.renewals), (APPS, 3 * APPS, 4));
    let concurrency = 8;
    let handler = Handler::start(&env.settings(&[
        ("ROTATION_CONCURRENCY", &concurrency.to_string()),
        ("ROTATION_CONCURRENCY_PER_HOST", &concurrency.to_string()),
    ]))
    .await;

    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    let s = &report["summary"];
    assert_eq!(s["failed"], 0, "{report:#}");
    assert_eq!(s["renewed"], w.renewals);
    assert_eq!(s["updated"], w.stale_targets);
    assert_eq!(s["unchanged"], (w.targets - w.stale_targets) as u64);

    let requests = env.requests().await;
    let of = |service: &str| -> Vec<Value> {
        requests
            .iter()
            .filter(|r| r["service"] == service)
            .cloned()
            .collect()
    };
    // Issuer: one token, one read per app, create + products per renewal (the product approves
    // new keys by itself).
    let apigee = of("apigee");
    assert_eq!(count(&apigee, |r| path(r) == "/token"), 1);
    assert_eq!(count(&apigee, |r| r["method"] == "GET"), APPS);
    assert_eq!(
        count(&apigee, |r| r["method"] == "POST"
            && path(r).ends_with("/keys")),
        w.renewals
    );
    assert_eq!(
        count(&apigee, |r| r["method"] == "POST" && path(r) != "/token"),
        2 * w.renewals
    );
    // Identity: one token per audience (Key Vault, App Configuration, ARM, application API).
    let identity = of("identity");
    let mut audiences: Vec<&str> = identity
        .iter()
        .map(|r| r["query"].as_str().unwrap_or_default())
        .collect();
    audiences.sort_unstable();
    audiences.dedup();
    assert_eq!(identity.len(), 4, "{identity:#?}");
    assert_eq!(
        audiences.len(),
        4,
        "one request per audience: {identity:#?}"
    );
    // Key Vault: one challenge per vault, one read per secret, one write per stale secret.
    let vault = of("keyVault");
    assert_eq!(count(&vault, |r| r["status"] == 401), 2);
    assert_eq!(
        count(&vault, |r| r["method"] == "GET" && r["status"] != 401),
        APPS
    );
    let vault_writes = count(&vault, |r| r["method"] == "PUT" && r["status"] != 401);
    // App Configuration: one read per key, one write per stale key.
    let config = of("appConfiguration");
    assert_eq!(count(&config, |r| r["method"] == "GET"), APPS);
    let config_writes = count(&config, |r| r["method"] == "PUT");
    // Application API: one read per app name, one write per stale one.
    let api = of("applicationApi");
    let api_reads = count(&api, |r| r["method"] == "GET");
    let api_writes = count(&api, |r| r["method"] == "POST");
    assert_eq!(api_reads, APPS / 4);
    // Sites: one list each, one PUT per site with a stale setting; nothing else.
    let arm = of("resourceManager");
    assert_eq!(count(&arm, is_arm_list), w.sites);
    assert_eq!(count(&arm, |r| r["method"] == "PUT"), w.stale_sites);
    assert_eq!(arm.len(), w.sites + w.stale_sites, "{arm:#?}");
    assert_eq!(
        vault_writes + config_writes + api_writes + w.stale_sites + 2 * w.renewals,
        w.writes
    );
    assert_eq!((w.audiences, w.vaults), (5, 2));
    assert_eq!(
        requests.len(),
        w.requests(),
        "reads and writes, the Apigee token, 4 identity tokens, 2 vault challenges"
    );
    assert!(requests.iter().all(|r| r["status"].is_u64()));

    // Connections are reused: per host, about as many as requests may be in flight (a
    // connection goes back to the pool just after its answer is read, so a request starting at
    // that moment may open one more); a second run opens almost none (below).
    let connections = env.connections().await;
    let hosts: BTreeMap<&str, u64> = [
        ("apigee", 1),
        ("identity", 1),
        ("keyVault", 2),
        ("appConfiguration", 2),
        ("applicationApi", 1),
        ("resourceManager", 1),
    ]
    .into();
    for (service, opened) in &connections {
        let limit = 2 * hosts[service.as_str()] * concurrency;
        assert!(
            *opened <= limit,
            "{service}: {opened} connections for at most {limit} requests in flight"
        );
    }

    // A second run in the same process: no token, no challenge, no write; one read each.
    env.clear_requests().await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["summary"]["unchanged"], w.targets);
    let requests = env.requests().await;
    assert_eq!(requests.len(), w.reads, "{:#?}", env.writes().await);
    assert!(env.writes().await.is_empty());
    // ...over connections the first run opened: a pool keeps them across runs. (A count of the
    // whole first run against its requests depends on how loaded the machine is, since a
    // connection is back in the pool only just after its answer is read; this does not.)
    let again = env.connections().await;
    let reopened: u64 = again
        .iter()
        .map(|(service, n)| n - connections.get(service).copied().unwrap_or(0))
        .sum();
    assert!(
        reopened < requests.len() as u64 / 4,
        "the second run opened {reopened} connections for {} requests: {connections:?} then {again:?}",
        requests.len()
    );
}

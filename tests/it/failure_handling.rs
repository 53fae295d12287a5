//! Failure handling against the sandbox with the real binary: transient failures retried on
//! every service, throttling hints honoured, and the run deadline (README "Failure handling").

use crate::common;

use common::{Env, Handler};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Requests of `service` and `method` whose path contains `path`, leaving out Key Vault's
/// 401 authentication challenges (a handshake, not a retry).
fn count(requests: &[Value], service: &str, method: &str, path: &str) -> usize {
    requests
        .iter()
        .filter(|r| {
            r["service"] == service
                && r["method"] == method
                && r["path"].as_str().unwrap_or_default().contains(path)
                && r["status"] != 401
        })
        .count()
}

fn all_targets(report: &Value) -> Vec<String> {
    let mut targets: Vec<String> = ["successes", "unchanged", "errors"]
        .iter()
        .flat_map(|l| report[*l].as_array().unwrap().iter())
        .filter(|e| common::is_target(e))
        .map(|e| format!("{}|{}", e["type"], e["target"]))
        .collect();
    targets.sort();
    targets
}

/// A 503 twice, then success, on Key Vault, App Configuration, ARM and an application API:
/// the run succeeds, with exactly three requests for each faulted path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_503s_then_success_on_every_service() {
    let env = Env::start().await;
    let api_path = url::Url::parse(&env.info.endpoints.application_apis["healthcheck-api"])
        .unwrap()
        .path()
        .to_string();
    let faulted = [
        ("keyVault", "/secrets/healthcheck-prd-apikey".to_string()),
        ("appConfiguration", "/kv/healthcheck-sbx-apikey".to_string()),
        (
            "resourceManager",
            "/sites/func-orders/slots/staging/config/appsettings/list".to_string(),
        ),
        ("applicationApi", api_path),
    ];
    for (service, path) in &faulted {
        env.add_fault(&json!({"service": service, "match": path, "status": 503, "times": 2}))
            .await;
    }
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["summary"]["updated"], 13, "{report:#}");
    assert_eq!(report["summary"]["unchanged"], 4, "{report:#}");
    let requests = env.requests().await;
    for (service, path) in &faulted {
        let method = if *service == "resourceManager" {
            "POST"
        } else {
            "GET"
        };
        let failed = requests
            .iter()
            .filter(|r| r["service"] == *service && r["status"] == 503)
            .count();
        assert_eq!(failed, 2, "{service}: {requests:#?}");
        // Both application APIs share a path (they differ by query), and are read at once: the
        // two 503s may fall on either; every name still ends with one success.
        let names = if *service == "applicationApi" { 2 } else { 1 };
        let n = count(&requests, service, method, path);
        assert_eq!(n, names + 2, "{service} {path}: {requests:#?}");
    }
    assert!(handler.output().contains("outbound call retried"));
}

/// A 429 with `Retry-After: 1` is waited for, then the call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_waited_for() {
    let env = Env::start().await;
    let path = "/sites/app-storefront/config/appsettings/list";
    env.add_fault(&json!({"service": "resourceManager", "match": path, "status": 429, "retryAfterSeconds": 1, "times": 1})).await;
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["summary"]["failed"], 0, "{report:#}");
    let requests = env.requests().await;
    assert_eq!(count(&requests, "resourceManager", "POST", path), 2);
    assert!(
        report["summary"]["durationMs"].as_u64().unwrap() >= 1000,
        "the hint was not waited for: {report:#}"
    );
}

/// With a 3 s deadline and a 10 s delay on one vault's secret, the run returns in about 3 s:
/// that target is a `DeadlineExceeded` error, every other target finished, and every target
/// is reported exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_reports_unfinished_targets_and_returns_in_time() {
    let env = Env::start().await;
    env.add_fault(
        &json!({"service": "keyVault", "match": "/secrets/partner-apikey", "delayMs": 10000}),
    )
    .await;
    let handler = Handler::start(&env.settings(&[("ROTATION_DEADLINE_SECONDS", "3")])).await;
    let started = Instant::now();
    let (status, report) = handler.rotate("").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert_eq!(status, 207, "{report:#}");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report:#}");
    assert_eq!(errors[0]["code"], "DeadlineExceeded");
    assert!(errors[0]["target"]
        .as_str()
        .unwrap()
        .ends_with("/partner-apikey"));
    let summary = &report["summary"];
    assert_eq!(summary["targets"], 17);
    assert_eq!(summary["failed"], 1);
    assert_eq!(
        summary["updated"].as_u64().unwrap() + summary["unchanged"].as_u64().unwrap(),
        16,
        "{report:#}"
    );
    let targets = all_targets(&report);
    let mut unique = targets.clone();
    unique.dedup();
    assert_eq!(targets.len(), 17, "{targets:#?}");
    assert_eq!(unique, targets, "a target appears twice");
}

/// A deadline that is not a positive whole number stops the run with an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_limit_setting_is_named() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[("ROTATION_CONCURRENCY_PER_HOST", "many")])).await;
    let (status, body) = handler.rotate("").await;
    assert_eq!(status, 500, "{body:#}");
    assert!(
        body.to_string().contains("ROTATION_CONCURRENCY_PER_HOST"),
        "{body:#}"
    );
}

/// Every service failing at once: the run still ends in bounded time with a complete,
/// truthful report (every mapped target exactly once, as an error) and writes nothing; once
/// the services recover, the next run converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_failing_at_once_still_gives_a_complete_report_in_bounded_time() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[("ROTATION_DEADLINE_SECONDS", "40")])).await;
    for service in [
        "identity",
        "authority",
        "keyVault",
        "appConfiguration",
        "resourceManager",
        "apigee",
        "applicationApi",
    ] {
        env.add_fault(
            &json!({"service": service, "match": "", "status": 503, "retryAfterSeconds": 1}),
        )
        .await;
    }
    let started = Instant::now();
    let (status, report) = handler.rotate("").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(60),
        "the run took {elapsed:?}"
    );
    assert_eq!(status, 207, "{report:#}");
    let targets = all_targets(&report);
    let mut distinct = targets.clone();
    distinct.dedup();
    assert_eq!(
        (targets.len(), distinct.len()),
        (17, 17),
        "every target exactly once: {report:#}"
    );
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors.iter().filter(|e| common::is_target(e)).count() == 17,
        "{report:#}"
    );
    assert_eq!(report["summary"]["failed"], 17);
    assert_eq!(report["summary"]["updated"], 0);
    assert!(
        env.writes().await.iter().all(|r| r["status"] == 503),
        "nothing was written: {:#?}",
        env.writes().await
    );

    env.clear_faults().await;
    let (status, recovered) = handler.rotate("").await;
    assert_eq!(status, 200, "{recovered:#}");
    assert_eq!(recovered["summary"]["updated"], 13, "{recovered:#}");
    let all_keys = env.all_keys().await;
    handler.assert_no_key_leaked(&all_keys, &[&report.to_string(), &recovered.to_string()]);
}

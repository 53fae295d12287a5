//! The services' published limits (issue 18): each double answers a request over its limit
//! with its service's own 429 (headers and body of the reference pack or
//! `tests/fixtures/throttling/`), and a run against doubles whose quota another client has
//! spent paces itself: every target is written, and at most 1 % of its requests meet a 429.
//! Counts come from the sandbox's request log and `admin/limits`; nothing is timed.

use crate::common;

use apikey_rotator::sandbox::{Sandbox, SandboxOptions, Throttling};
use common::{Env, Handler};
use serde_json::{json, Value};

/// A sandbox whose doubles throttle, every refill rate multiplied by `time_factor`.
async fn start(workload: Option<usize>, time_factor: f64) -> Env {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(SandboxOptions {
        workload,
        throttling: Some(Throttling::On { time_factor }),
        ..SandboxOptions::new(dir.path())
    })
    .await
    .expect("sandbox starts");
    let info = sandbox.info().clone();
    Env {
        sandbox: Some(sandbox),
        info,
        dir,
        admin: reqwest::Client::new(),
    }
}

/// Leaves the buckets a `method path` request to `service` draws from with `tokens`.
async fn spend(env: &Env, service: &str, method: &str, path: &str, tokens: f64) {
    let r = env
        .admin
        .post(format!("{}/limits", env.info.endpoints.admin))
        .json(&json!({"service": service, "method": method, "path": path, "tokens": tokens}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn limits(env: &Env) -> Vec<Value> {
    env.admin
        .get(format!("{}/limits", env.info.endpoints.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The 429 of a fixture file, with its placeholders filled in.
fn fixture(file: &str, fill: &[(&str, &str)]) -> Value {
    let path = format!(
        "{}/tests/fixtures/throttling/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in fill {
        text = text.replace(from, to);
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    v["responses"]["429"].clone()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn body(r: reqwest::Response) -> Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

/// Resource Manager counts a subscription's writes in a bucket of 200: the 201st write is
/// refused with `SubscriptionRequestsThrottled`, `Retry-After` and the remaining count; an
/// admitted one carries the remaining count too. (Refills are a thousandth of the published
/// rate here, so nothing comes back during the test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_manager_refuses_the_write_over_its_bucket() {
    let env = start(None, 0.001).await;
    let client = env.tls_client();
    let sub = "0b5d1a9e-0000-4000-8000-000000000001";
    let url = format!(
        "{}/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Web/sites/s/config/appsettings/list?api-version=2024-04-01",
        env.info.endpoints.resource_manager
    );
    let send = || client.post(&url).header("content-length", "0").send();
    let first = send().await.unwrap();
    assert_eq!(
        header(&first, "x-ms-ratelimit-remaining-subscription-writes"),
        Some("199")
    );
    for _ in 1..200 {
        assert_ne!(send().await.unwrap().status(), 429);
    }
    let refused = send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let seconds = header(&refused, "retry-after").unwrap().to_string();
    assert!(seconds.parse::<u64>().unwrap() >= 1, "{seconds}");
    let expected = fixture(
        "arm_429_SubscriptionRequestsThrottled_COMPOSED.json",
        &[("<sub-id>", sub), ("<seconds>", &seconds)],
    );
    assert_eq!(
        header(&refused, "x-ms-ratelimit-remaining-subscription-writes"),
        expected["headers"]["x-ms-ratelimit-remaining-subscription-writes"].as_str()
    );
    assert_eq!(body(refused).await, expected["body"]);
    // A read draws from the reads bucket, untouched.
    let read = client.get(&url).send().await.unwrap();
    assert_ne!(read.status(), 429);
    assert_eq!(
        header(&read, "x-ms-ratelimit-remaining-subscription-reads"),
        Some("249")
    );
    let buckets = limits(&env).await;
    let writes = buckets
        .iter()
        .find(|b| b["service"] == "resourceManager" && b["class"] == "writes")
        .unwrap();
    assert_eq!(
        (writes["admitted"].as_u64(), writes["throttled"].as_u64()),
        (Some(200), Some(1))
    );
    assert_eq!(writes["capacity"], 200.0);
}

/// Key Vault, App Configuration and Apigee, their quota spent, answer as their services do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_double_answers_429_as_its_service_does() {
    let env = start(None, 0.001).await;
    let client = env.tls_client();

    // Key Vault: a secret PUT over the vault's 300 per 10 s.
    spend(&env, "keyVault", "PUT", "/secrets/s", 0.0).await;
    let vault = env
        .info
        .endpoints
        .key_vaults
        .values()
        .next()
        .unwrap()
        .trim_end_matches('/');
    let r = client
        .put(format!("{vault}/secrets/s?api-version=7.6"))
        .json(&json!({"value": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(header(&r, "retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    let expected = fixture("keyvault_429_Throttled_observed.json", &[]);
    assert_eq!(
        header(&r, "content-type"),
        expected["headers"]["Content-Type"].as_str()
    );
    assert_eq!(body(r).await, expected["body"]);
    // A GET draws from the other transactions' bucket.
    let r = client
        .get(format!("{vault}/secrets/s?api-version=7.6"))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 429);

    // App Configuration: the store's Total Requests quota.
    spend(&env, "appConfiguration", "GET", "/kv/k", 0.0).await;
    let store = env
        .info
        .endpoints
        .app_configurations
        .values()
        .next()
        .unwrap()["endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client
        .get(format!("{store}/kv/k?api-version=2023-11-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let reference: Value = serde_json::from_slice(&common::reference(
        "azure/appconfig/Error_429_TooManyRequests_docs.json",
    ))
    .unwrap();
    let expected = &reference["responses"]["429"];
    assert_eq!(
        header(&r, "content-type"),
        expected["headers"]["Content-Type"].as_str()
    );
    let ms: u64 = header(&r, "retry-after-ms").unwrap().parse().unwrap();
    assert!(ms >= 1);
    assert_eq!(
        header(&r, "x-ms-retry-after-ms"),
        Some(ms.to_string().as_str())
    );
    assert!(header(&r, "retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(body(r).await, expected["body"]);

    // Apigee: the organisation's 6,000 management calls per minute.
    let org = "contoso-quota";
    spend(
        &env,
        "apigee",
        "GET",
        &format!("/v1/organizations/{org}/developers"),
        0.0,
    )
    .await;
    let r = client
        .get(format!(
            "{}/v1/organizations/{org}/developers",
            env.info.endpoints.apigee
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), None);
    let expected = fixture(
        "apigee_429_RESOURCE_EXHAUSTED_COMPOSED.json",
        &[("<org>", org)],
    );
    assert_eq!(body(r).await, expected["body"]);

    // The request log records the refusals as any other answer.
    let refused = env
        .requests()
        .await
        .iter()
        .filter(|r| r["status"] == 429)
        .count();
    assert_eq!(refused, 3);
}

/// Without throttling (the ordinary test sandbox) nothing is limited and `admin/limits` says
/// so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ordinary_sandbox_does_not_throttle() {
    let env = Env::start().await;
    assert!(limits(&env).await.is_empty());
    let r = env
        .admin
        .post(format!("{}/limits", env.info.endpoints.admin))
        .json(&json!({"service": "keyVault", "method": "PUT", "path": "/secrets/s", "tokens": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// Apps of the run at the limits: about 15 sites, whose lists and PUTs are Resource Manager
/// writes.
const APPS: usize = 200;

/// Another client has spent the subscription's writes when the run starts, and the buckets
/// refill at half the published rates (the rotator told the same): the run learns it from the
/// first answers and paces its writes to the refill, so every target is written and at most
/// 1 % of its requests are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_at_the_limits_is_paced_and_finishes() {
    let factor = 0.5;
    let env = start(Some(APPS), factor).await;
    let w = env.info.workload.clone().unwrap();
    let mapping: Value = serde_json::from_str(&env.info.env["APIKEYROTATIONAPPS"]).unwrap();
    let sub = mapping["functionApps"][0]["subscriptionId"]
        .as_str()
        .unwrap();
    let handler =
        Handler::start(&env.settings(&[("ROTATION_RATE_LIMIT_TIME_FACTOR", &factor.to_string())]))
            .await;
    spend(
        &env,
        "resourceManager",
        "POST",
        &format!("/subscriptions/{sub}/providers/x"),
        0.0,
    )
    .await;

    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    let s = &report["summary"];
    assert_eq!(s["failed"], 0, "{report:#}");
    assert_eq!(s["renewed"], w.renewals);
    assert_eq!(s["updated"], w.stale_targets);

    let requests = env.requests().await;
    let refused = requests.iter().filter(|r| r["status"] == 429).count();
    assert!(
        refused * 100 <= requests.len(),
        "{refused} of {} requests were answered 429",
        requests.len()
    );
    // The writes really were held to the bucket: more of them than it held when the run began.
    let buckets = limits(&env).await;
    let writes = buckets
        .iter()
        .find(|b| b["service"] == "resourceManager" && b["class"] == "writes")
        .unwrap();
    assert!(writes["admitted"].as_u64().unwrap() >= 10, "{writes}");
}

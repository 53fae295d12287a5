//! The run lock (PRODUCT.md §10): a blob lease in Azurite across processes, a local mutex
//! without `AzureWebJobsStorage`; a second run is refused with 409 / exit code 3.

use crate::common;

use apikey_rotator::azure::retry::{Call, RetryPolicy};
use apikey_rotator::azure::storage::{BlobClient, LeaseOutcome, StorageAccount};
use apikey_rotator::rotation::lock::{LockError, RunGuard, RunLock, LOCK_CONTAINER};
use common::azurite::{Azurite, ACCOUNT, ACCOUNT_KEY};
use common::{Env, Handler};
use serde_json::{json, Value};
use std::time::Duration;

/// The call of the lock's requests: the default policy, no deadline.
fn call() -> Call {
    Call::new(std::sync::Arc::new(RetryPolicy::default()), None)
}

fn client(azurite: &Azurite) -> BlobClient {
    BlobClient::new(
        reqwest::Client::new(),
        StorageAccount::from_connection_string(&azurite.connection_string()).unwrap(),
    )
}

fn lock(azurite: &Azurite, blob: &str, lease_seconds: u64) -> RunLock {
    RunLock::blob(
        client(azurite),
        LOCK_CONTAINER,
        blob,
        Duration::from_secs(lease_seconds),
    )
}

fn assert_in_progress(result: Result<RunGuard, LockError>, blob: &str) {
    match result {
        Err(LockError::InProgress(m)) => assert!(
            m.contains(&format!("devstoreaccount1/{LOCK_CONTAINER}/{blob}")),
            "{m}"
        ),
        Err(LockError::Failed(e)) => panic!("expected InProgress, got {e}"),
        Ok(_) => panic!("expected InProgress, got the lock"),
    }
}

/// Two holders (two processes) of the same blob: the second is refused until the first
/// releases; a dropped guard releases too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_holder_is_refused_until_the_first_releases() {
    let azurite = Azurite::start();
    let (a, b) = (lock(&azurite, "t.lock", 60), lock(&azurite, "t.lock", 60));
    assert_eq!(
        a.describe(),
        format!("blob lease devstoreaccount1/{LOCK_CONTAINER}/t.lock")
    );
    // The first acquisition creates the container and the blob.
    let held = a
        .acquire(&call())
        .await
        .expect("the first holder gets the lease");
    assert_in_progress(b.acquire(&call()).await, "t.lock");
    assert_eq!(held.release(&call()).await, None);
    let held = b.acquire(&call()).await.expect("free after release");
    assert_in_progress(a.acquire(&call()).await, "t.lock");
    drop(held);
    let mut again = a.acquire(&call()).await;
    for _ in 0..50 {
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        again = a.acquire(&call()).await;
    }
    assert!(again.is_ok(), "a dropped guard releases the lease");
}

/// A holder that keeps running renews its lease past the lease period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_holder_renews_its_lease() {
    let azurite = Azurite::start();
    let (a, b) = (lock(&azurite, "r.lock", 15), lock(&azurite, "r.lock", 15));
    let held = a.acquire(&call()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(17)).await;
    assert_in_progress(b.acquire(&call()).await, "r.lock");
    assert_eq!(held.release(&call()).await, None, "renewals succeeded");
    b.acquire(&call()).await.expect("free after release");
}

/// A holder that crashed (took a 15 s lease and never renews nor releases) blocks others only
/// until its lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holders_lease_expires() {
    let azurite = Azurite::start();
    let b = lock(&azurite, "c.lock", 15);
    drop(b.acquire(&call()).await.unwrap()); // creates the blob
    tokio::time::sleep(Duration::from_millis(500)).await;
    let crashed = client(&azurite);
    let outcome = crashed
        .acquire_lease(
            &call(),
            LOCK_CONTAINER,
            "c.lock",
            15,
            &uuid::Uuid::new_v4().to_string(),
        )
        .await
        .unwrap();
    assert!(matches!(outcome, LeaseOutcome::Acquired(_)), "{outcome:?}");
    assert_in_progress(b.acquire(&call()).await, "c.lock");
    tokio::time::sleep(Duration::from_secs(16)).await;
    b.acquire(&call())
        .await
        .expect("the crashed holder's lease has expired");
}

/// The lock blob of the function app the settings name (`WEBSITE_SITE_NAME`).
fn lock_blob(settings: &std::collections::BTreeMap<String, String>) -> String {
    let site = &settings["WEBSITE_SITE_NAME"];
    format!("{site}/rotation-run.lock")
}

async fn slow_apigee(env: &Env) {
    let fault = json!({"service": "apigee", "match": "", "delayMs": 1500, "times": 10});
    let r = env
        .admin
        .post(format!("{}/faults", env.info.endpoints.admin))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// Waits until the run in progress has made its first call to Apigee: it holds the run lock by
/// then (the lock is taken before any outbound call), whatever the machine's load.
async fn until_a_run_holds_the_lock(env: &Env) {
    for _ in 0..600 {
        if env
            .requests()
            .await
            .iter()
            .any(|r| r["service"] == "apigee")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no run reached Apigee within 30 s");
}

/// Two overlapping GETs: one runs (200), the other, sent once the first holds the lock, is
/// refused (409 RunInProgress).
async fn two_overlapping_runs(env: &Env, handler: &Handler) -> (Value, Value) {
    env.clear_requests().await;
    let (one, two) = tokio::join!(handler.rotate(""), async {
        until_a_run_holds_the_lock(env).await;
        handler.rotate("").await
    });
    let mut both = [one, two];
    both.sort_by_key(|(status, _)| *status);
    let [(ok_status, report), (refused_status, refused)] = both;
    assert_eq!(
        (ok_status, refused_status),
        (200, 409),
        "{report}\n{refused}"
    );
    assert_eq!(refused["error"]["code"], "RunInProgress", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in progress"),
        "{refused}"
    );
    (report, refused)
}

/// Two instances of the real handler (two processes) with AzureWebJobsStorage on the same
/// Azurite: a run on the second while the first runs gets 409 naming the blob lease; the
/// report names the lease, and the lease is released after the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_instances_serialise_runs_with_a_blob_lease() {
    let azurite = Azurite::start();
    let env = Env::start().await;
    let cs = azurite.connection_string();
    let settings = env.settings(&[("AzureWebJobsStorage", cs.as_str())]);
    let (first, second) = tokio::join!(Handler::start(&settings), Handler::start(&settings));
    slow_apigee(&env).await;
    env.clear_requests().await;
    let ((ok_status, report), (refused_status, refused)) = tokio::join!(first.rotate(""), async {
        until_a_run_holds_the_lock(&env).await;
        second.rotate("").await
    });
    assert_eq!(
        (ok_status, refused_status),
        (200, 409),
        "{report}\n{refused}"
    );
    assert_eq!(refused["error"]["code"], "RunInProgress", "{refused}");
    let blob = &lock_blob(&settings);
    assert!(
        refused["error"]["message"].as_str().unwrap().contains(blob),
        "{refused}"
    );
    assert_eq!(
        report["lock"],
        format!("blob lease devstoreaccount1/{LOCK_CONTAINER}/{blob}")
    );
    // Released at the end: another process takes the lease at once.
    lock(&azurite, blob, 15)
        .acquire(&call())
        .await
        .expect("the handler released the lease")
        .release(&call())
        .await;
    let (status, again) = second.rotate("dryRun=true").await;
    assert_eq!(status, 200, "{again}");
    let keys = env.all_keys().await;
    for handler in [&first, &second] {
        handler.assert_no_key_leaked(&keys, &[&report.to_string(), &refused.to_string()]);
        assert!(
            !handler.output().contains(common::azurite::ACCOUNT_KEY),
            "the account key appears in the logs"
        );
    }
}

/// While another process holds the lease, `rotate` exits with 3 and says a run is in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_exits_3_while_another_process_holds_the_lease() {
    let azurite = Azurite::start();
    let env = Env::start().await;
    let cs = azurite.connection_string();
    let settings = env.settings(&[("AzureWebJobsStorage", cs.as_str())]);
    let blob = &lock_blob(&settings);
    let other = lock(&azurite, blob, 60);
    let held = other.acquire(&call()).await.unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_apikey-rotator"))
        .env_clear()
        .envs(&settings)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["rotate", "--dry-run"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("a run is in progress"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(env.writes().await.is_empty());
    held.release(&call()).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_apikey-rotator"))
        .env_clear()
        .envs(&settings)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["rotate", "--dry-run"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["lock"],
        format!("blob lease devstoreaccount1/{LOCK_CONTAINER}/{blob}")
    );
}

/// Without AzureWebJobsStorage the lock is local: the report says so, an overlapping HTTP run
/// gets 409, and a timer firing during a run answers non-2xx with RunInProgress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_storage_the_lock_is_local_and_still_refuses_overlaps() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    slow_apigee(&env).await;
    let (report, _) = two_overlapping_runs(&env, &handler).await;
    assert_eq!(report["lock"], "local (AzureWebJobsStorage is not set)");

    slow_apigee(&env).await;
    let timer = br#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}"#;
    env.clear_requests().await;
    let (run, fired) = tokio::join!(handler.rotate(""), async {
        until_a_run_holds_the_lock(&env).await;
        handler.timer(timer.to_vec()).await
    });
    assert_eq!(run.0, 200, "{}", run.1);
    assert!(!(200..300).contains(&fired.0), "{}", fired.1);
    assert_eq!(
        fired.1["ReturnValue"]["error"]["code"], "RunInProgress",
        "{}",
        fired.1
    );
}

/// Taking the lock spends the run's deadline too: with a storage account that accepts
/// connections and never answers, an HTTP run still answers at its deadline (not after the
/// retries of every lease call), with `DeadlineExceeded`, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_account_that_never_answers_cannot_outlast_the_deadline() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accepts and holds every connection, answering nothing.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let env = Env::start().await;
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    );
    let handler = Handler::start(&env.settings(&[
        ("AzureWebJobsStorage", cs.as_str()),
        ("ROTATION_DEADLINE_SECONDS", "2"),
        ("ROTATION_REQUEST_TIMEOUT_SECONDS", "20"),
    ]))
    .await;
    let started = std::time::Instant::now();
    let (status, body) = handler.rotate("").await;
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(6), "{took:?}");
    assert_eq!(status, 500, "{body:#}");
    assert!(body.to_string().contains("DeadlineExceeded"), "{body:#}");
    assert!(env.writes().await.is_empty());
}

/// Two instances of the real handler on one Azurite, asked by ToolkitApp for the same app's key
/// at the same moment while key creation is slow: one key is created between them (a per-app
/// renewal lease beside the run lock), both answer it, and only one says it renewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_renew_one_app_once() {
    let azurite = Azurite::start();
    let env = Env::start().await;
    let cs = azurite.connection_string();
    let settings = env.settings(&[("AzureWebJobsStorage", cs.as_str())]);
    let (first, second) = tokio::join!(Handler::start(&settings), Handler::start(&settings));
    env.add_fault(&json!({"service": "apigee", "match": "/keys", "method": "POST", "delayMs": 1500, "times": 6}))
        .await;
    env.clear_requests().await;
    let body = json!({"appName": "APIKeyRotator_TestApp1_Sandbox"}).to_string();
    let ((s1, a), (s2, b)) = tokio::join!(first.toolkit(body.clone()), second.toolkit(body));
    assert_eq!((s1, s2), (200, 200), "{a}\n{b}");
    assert_eq!(
        a["apiKey"], b["apiKey"],
        "both instances hand out the one new key"
    );
    let renewed: Vec<bool> = [&a, &b].iter().map(|r| r["renewed"] == true).collect();
    assert_eq!(renewed.iter().filter(|r| **r).count(), 1, "{a}\n{b}");
    let log = env.requests().await;
    let creations = log
        .iter()
        .filter(|r| {
            r["service"] == "apigee"
                && r["method"] == "POST"
                && r["path"].as_str().unwrap().ends_with("/keys")
        })
        .count();
    assert_eq!(
        creations, 1,
        "one key created for the app across both instances"
    );
}

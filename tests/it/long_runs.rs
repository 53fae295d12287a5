//! Runs longer than one HTTP answer (issue 18, point 3): `ApiKeyRotator` answers
//! `202 Accepted` with a `Location` to poll when its run has not ended within
//! `ROTATION_HTTP_ANSWER_SECONDS`, or at once with `Prefer: respond-async`; the run goes on in
//! the process and the poll answers its report (docs/operations.md, "Long runs over HTTP").

use crate::common;

use common::{Env, Handler};
use serde_json::{json, Value};
use std::time::Duration;

/// `GET` of `url` with the handler's client (and `prefer`, when given): status, headers, body.
async fn get(
    handler: &Handler,
    url: &str,
    prefer: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = handler.client.get(url);
    if let Some(p) = prefer {
        request = request.header("prefer", p);
    }
    let r = request.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, headers, body)
}

/// Polls `location` (relative to the handler) until the run's answer is not a 202; the
/// guard only keeps a broken handler from hanging the test.
async fn poll_until_done(handler: &Handler, location: &str) -> (u16, Value) {
    let url = format!("{}{location}", handler.base);
    for _ in 0..600 {
        let (status, headers, body) = get(handler, &url, None).await;
        if status != 202 {
            return (status, body);
        }
        assert_eq!(headers["location"], location, "{body:#}");
        assert_eq!(body["status"], "Running", "{body:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the run did not end");
}

/// Checks a 202: `Location` to poll, `Retry-After`, and the body naming the run.
fn accepted_location(status: u16, headers: &reqwest::header::HeaderMap, body: &Value) -> String {
    assert_eq!(status, 202, "{body:#}");
    let location = headers["location"].to_str().unwrap().to_string();
    let id = body["runId"].as_str().unwrap();
    assert_eq!(location, format!("/api/ApiKeyRotator?run={id}"));
    assert_eq!(body["location"], location.as_str());
    assert_eq!(headers["retry-after"], "10");
    location
}

/// `Prefer: respond-async`: a 202 at once; polling gives 202s, then the run's full report
/// under the same run id, every target written; asked again, the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_async_answers_202_and_the_poll_returns_the_report() {
    let env = Env::start().await;
    // Slow enough that the run is still going when the first poll comes.
    env.add_fault(&json!({"service": "keyVault", "match": "", "delayMs": 300}))
        .await;
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, headers, body) = get(
        &handler,
        &format!("{}/api/ApiKeyRotator", handler.base),
        Some("respond-async"),
    )
    .await;
    let location = accepted_location(status, &headers, &body);
    let (status, report) = poll_until_done(&handler, &location).await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["runId"], body["runId"], "{report:#}");
    assert_eq!(report["summary"]["failed"], 0, "{report:#}");
    assert!(
        report["summary"]["updated"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert!(!env.writes().await.is_empty());

    let (again, _, same) = get(&handler, &format!("{}{location}", handler.base), None).await;
    assert_eq!((again, &same), (200, &report));

    let all_keys = env.all_keys().await;
    handler.assert_no_key_leaked(&all_keys, &[&report.to_string(), &body.to_string()]);
}

/// Without the preference, a run that outlasts `ROTATION_HTTP_ANSWER_SECONDS` is answered
/// 202 when that time is up, goes on past it, and ends with every target written: nothing
/// is cut at the HTTP budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_the_http_budget_goes_on_behind_a_202() {
    let env = Env::start().await;
    env.add_fault(&json!({"service": "keyVault", "match": "", "delayMs": 1500}))
        .await;
    let handler = Handler::start(&env.settings(&[("ROTATION_HTTP_ANSWER_SECONDS", "1")])).await;
    let (status, headers, body) = get(
        &handler,
        &format!("{}/api/ApiKeyRotator", handler.base),
        None,
    )
    .await;
    let location = accepted_location(status, &headers, &body);
    let (status, report) = poll_until_done(&handler, &location).await;
    assert_eq!(status, 200, "{report:#}");
    let summary = &report["summary"];
    assert_eq!(summary["failed"], 0, "{report:#}");
    assert_eq!(
        summary["updated"].as_u64().unwrap() + summary["unchanged"].as_u64().unwrap(),
        summary["targets"].as_u64().unwrap(),
        "{report:#}"
    );
}

/// A run that ends within the budget is answered as before (200 with the report, no
/// `Location`); a poll of a run this process does not know is a 404 that says so; a poll
/// with run parameters is a 400; a budget past the front end's limit is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_runs_unknown_runs_and_bad_budgets() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, headers, report) = get(
        &handler,
        &format!("{}/api/ApiKeyRotator", handler.base),
        None,
    )
    .await;
    assert_eq!(status, 200, "{report:#}");
    assert!(headers.get("location").is_none());

    let unknown = format!("{}/api/ApiKeyRotator?run=nope", handler.base);
    let (status, _, body) = get(&handler, &unknown, None).await;
    assert_eq!(status, 404, "{body:#}");
    assert_eq!(body["error"]["code"], "RunNotFound");
    let (status, _, body) = get(&handler, &format!("{unknown}&dryRun=true"), None).await;
    assert_eq!(status, 400, "{body:#}");

    let bad = Handler::start(&env.settings(&[("ROTATION_HTTP_ANSWER_SECONDS", "300")])).await;
    let (status, body) = bad.rotate("").await;
    assert_eq!(status, 500, "{body:#}");
    assert!(
        body.to_string().contains("ROTATION_HTTP_ANSWER_SECONDS"),
        "{body:#}"
    );
}

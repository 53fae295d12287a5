//! The contract with the Functions host: readiness, the timer invocation bodies the host
//! really sends, and the invocation answer.

use crate::common;

use common::{reference, Env, Handler};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_accepts_the_host_bodies_and_answers_with_the_report() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;

    let captured =
        reference("functions/invoke-request.timer.captured-host-4.24.4.4-ScheduleStatus-null.json");
    let documented: Value =
        serde_json::from_slice(&reference("functions/timer-object.docs-current.json")).unwrap();
    let first_run = br#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"0001-01-01T00:00:00","Next":"2024-03-05T06:00:00","LastUpdated":"0001-01-01T00:00:00"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"RotatorTimer","UtcNow":"2024-03-04T21:27:05.3146Z","RandGuid":"0f6f4b8f-31a5-4b8e-9d8c-1d7f3f1b2a60"}}}"#.to_vec();
    let bodies = [
        captured,
        serde_json::to_vec(&json!({"Data": {"timer": documented}, "Metadata": {}})).unwrap(),
        first_run,
    ];

    for (i, body) in bodies.into_iter().enumerate() {
        let (status, answer) = handler.timer(body).await;
        assert_eq!(status, 200, "body {i}: {answer:#}");
        assert_eq!(answer["Outputs"], json!({}));
        assert!(
            answer["Logs"].as_array().is_some_and(|l| !l.is_empty()),
            "{answer}"
        );
        let report = &answer["ReturnValue"];
        assert_eq!(report["summary"]["targets"], 17, "{answer:#}");
        assert!(report["runId"].is_string());
        if i == 0 {
            assert_eq!(
                report["summary"]["renewed"], 1,
                "the first run renews App1: {report:#}"
            );
        } else {
            assert_eq!(
                report["summary"]["updated"], 0,
                "later runs find nothing to do: {report:#}"
            );
        }
    }
    handler.assert_no_key_leaked(&env.all_keys().await, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_marks_the_invocation_failed_when_a_target_fails() {
    let env = Env::start().await;
    // An application API whose header auth names a setting the sandbox API does not accept.
    let handler = Handler::start(&env.settings(&[])).await;
    let fault = json!({"service": "keyVault", "match": "/secrets/orders-prd-apikey", "status": 403, "times": 100});
    let r = env
        .admin
        .post(format!("{}/faults", env.info.endpoints.admin))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (status, answer) = handler
        .timer(b"{\"Data\":{\"timer\":{\"IsPastDue\":true}},\"Metadata\":{}}".to_vec())
        .await;
    assert_eq!(status, 500, "{answer:#}");
    let errors = answer["ReturnValue"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{answer:#}");
    assert_eq!(errors[0]["type"], "KEY_VAULT");
    assert!(errors[0]["target"]
        .as_str()
        .unwrap()
        .ends_with("/orders-prd-apikey"));
    // The other targets went on.
    assert_eq!(
        answer["ReturnValue"]["summary"]["updated"], 12,
        "{answer:#}"
    );

    // Over HTTP the same partial failure is a 207.
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 207, "{report:#}");
    assert_eq!(report["summary"]["failed"], 1);
}

#[tokio::test]
async fn bad_settings_do_not_stop_the_handler_and_are_named_in_answers() {
    let handler = Handler::start(
        &[(
            "API_KEY_ROTATION_SCHEDULE".to_string(),
            "every tuesday".to_string(),
        )]
        .into(),
    )
    .await;
    let (status, body) = handler.rotate("").await;
    assert_eq!(status, 500, "{body}");
    let details = body["error"]["details"].to_string();
    for setting in [
        "APIKEYROTATIONAPPS",
        "COMPANYDETAILS",
        "TOOLKITUUID",
        "API_KEY_ROTATION_SCHEDULE",
    ] {
        assert!(details.contains(setting), "{setting} not named: {body}");
    }
    let (status, body) = handler.toolkit(r#"{"appName":"x"}"#).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("COMPANYDETAILS"),
        "{body}"
    );
}

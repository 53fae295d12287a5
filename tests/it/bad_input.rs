//! Bad input gets a clear error and changes nothing (checked in the sandbox's request log).

use crate::common;

use common::{Env, Handler};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toolkit_app_rejects_bad_bodies_and_changes_nothing() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    env.clear_requests().await;

    let long_name = format!(r#"{{"appName":"{}"}}"#, "a".repeat(257));
    let huge = format!(
        r#"{{"appName":"APIKeyRotator_TestApp1_Sandbox","pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("not JSON", "appName=x".into(), 400, "JSON"),
        ("empty object", "{}".into(), 400, "appName"),
        ("empty appName", r#"{"appName":""}"#.into(), 400, "appName"),
        (
            "appName not a string",
            r#"{"appName":42}"#.into(),
            400,
            "appName",
        ),
        ("appName over 256 characters", long_name, 400, "256"),
        ("body over 64 KiB", huge, 400, "64"),
    ];
    for (case, body, status, mention) in cases {
        let (got, answer) = handler.toolkit(body).await;
        assert_eq!(got, status, "{case}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(answer["error"]["code"].is_string(), "{case}: {answer}");
        assert!(
            message.contains(mention),
            "{case}: message should mention {mention}: {answer}"
        );
    }
    let invalid = env.requests().await;
    assert!(
        invalid.is_empty(),
        "invalid requests reached a service: {invalid:#?}"
    );

    let (status, answer) = handler.toolkit(r#"{"appName":"NoSuchApp"}"#).await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NoSuchApp"),
        "{answer}"
    );
    assert!(env.writes().await.is_empty());
    handler.assert_no_key_leaked(&env.all_keys().await, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn company_details_sealed_under_another_uuid_are_refused() {
    let env = Env::start().await;
    let other_uuid = uuid::Uuid::new_v4().to_string();
    let handler = Handler::start(&env.settings(&[("TOOLKITUUID", &other_uuid)])).await;
    let (status, answer) = handler
        .toolkit(r#"{"appName":"APIKeyRotator_TestApp1_Sandbox"}"#)
        .await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["message"], "Incorrect Toolkit UUID");
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 500, "{report}");
    assert!(
        report.to_string().contains("Incorrect Toolkit UUID"),
        "{report}"
    );
    assert!(env.writes().await.is_empty());

    // Location-bound details refuse to work in another function app.
    let handler =
        Handler::start(&env.settings(&[("WEBSITE_SITE_NAME", "func-somewhere-else")])).await;
    let (status, answer) = handler
        .toolkit(r#"{"appName":"APIKeyRotator_TestApp1_Sandbox"}"#)
        .await;
    assert_eq!(status, 500, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("location-bound"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mappings_are_rejected_with_paths_and_change_nothing() {
    let env = Env::start().await;
    let good: Value = serde_json::from_str(&env.info.env["APIKEYROTATIONAPPS"]).unwrap();
    let tweak = |f: &dyn Fn(&mut Value)| {
        let mut m = good.clone();
        f(&mut m);
        m.to_string()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{\"keyVault\": [".into(), "$"),
        (
            "wrong type",
            tweak(&|m| m["keyVault"][0]["secrets"][0]["secretName"] = 5.into()),
            "keyVault[0].secrets[0].secretName",
        ),
        (
            "unknown section",
            tweak(&|m| m["keyVaults"] = Value::Array(vec![])),
            "keyVaults",
        ),
        (
            "unknown field",
            tweak(&|m| m["keyVault"][0]["secrets"][0]["secretNmae"] = "x".into()),
            "keyVault[0].secrets[0].secretNmae",
        ),
        (
            "duplicate target",
            tweak(&|m| {
                let dup = m["keyVault"][0]["secrets"][0].clone();
                m["keyVault"][0]["secrets"]
                    .as_array_mut()
                    .unwrap()
                    .push(dup);
            }),
            "duplicate",
        ),
        (
            "plain http to a remote API",
            tweak(&|m| m["applicationApis"][0]["httpURL"] = "http://api.contoso.com/keys".into()),
            "https",
        ),
        (
            "bad App Configuration entry",
            tweak(&|m| m["appConfiguration"][0]["keys"][0]["key"] = "..".into()),
            "appConfiguration[0].keys[0].key",
        ),
        (
            "bad site entry",
            tweak(&|m| m["webApps"][0]["subscriptionId"] = "not-a-guid".into()),
            "webApps[0].subscriptionId",
        ),
    ];
    for (case, mapping, mention) in cases {
        let handler = Handler::start(&env.settings(&[("APIKEYROTATIONAPPS", &mapping)])).await;
        env.clear_requests().await;
        let (status, body) = handler.rotate("").await;
        assert_eq!(status, 400, "{case}: {body:#}");
        assert_eq!(body["error"]["code"], "InvalidMapping", "{case}");
        assert!(
            body["error"]["details"].to_string().contains(mention),
            "{case}: should mention {mention}: {body:#}"
        );
        let requests = env.requests().await;
        assert!(
            requests.is_empty(),
            "{case}: a rejected mapping reached a service: {requests:#?}"
        );
    }
}

//! App Configuration end to end against the sandbox: the demo rotates plain and Key Vault
//! reference key-values over both authentications, a race between read and write is settled by
//! reading again, a locked key is an error that changes nothing else, and a second run writes
//! nothing.

use crate::common;

use apikey_rotator::azure::retry::{Call, RetryPolicy};
use apikey_rotator::azure::{credential, http};
use apikey_rotator::error::ErrorKind;
use apikey_rotator::mapping::AppsMapping;
use apikey_rotator::rotation::{run, RunOptions};
use apikey_rotator::secret::ApiKey;
use apikey_rotator::settings::Settings;
use apikey_rotator::targets::app_configuration::auth::rfc1123_now;
use apikey_rotator::targets::app_configuration::AccessKey;
use apikey_rotator::targets::app_configuration::{AppConfigurationStore, KeyValueMapping};
use apikey_rotator::targets::{plan, Container, Stored, TargetContext, Write};
use apikey_rotator::toolkit::key_source;
use common::{Env, Handler};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
const APP2: &str = "APIKeyRotator_TestApp2_Sandbox";
const APP3: &str = "ApiKeyRotator_TestApp3_Sandbox";
const PARTNERS_SETTING: &str = "APPCS_PARTNERS_CONNECTION_STRING";

async fn current_key(handler: &Handler, app: &str) -> String {
    let (status, body) = handler.toolkit(format!(r#"{{"appName":"{app}"}}"#)).await;
    assert_eq!(status, 200, "{body}");
    body["apiKey"].as_str().unwrap().to_string()
}

fn app_config_entries<'a>(report: &'a Value, list: &str) -> Vec<&'a Value> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "APP_CONFIG")
        .collect()
}

fn find<'a>(report: &'a Value, list: &str, target_suffix: &str) -> Option<&'a Value> {
    app_config_entries(report, list)
        .into_iter()
        .find(|e| e["target"].as_str().unwrap().ends_with(target_suffix))
}

fn kv<'a>(state: &'a Value, store: &str, entry: &str) -> &'a Value {
    &state["appConfigurations"][store]["keyValues"][entry]
}

/// The demo rotates stale key-values in the Entra store and the HMAC store, follows the Key
/// Vault reference (the secret is updated, the reference is not), leaves the locked key alone,
/// carries Sync-Tokens, and a second run writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_rotates_plain_and_reference_key_values_then_writes_nothing() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let before = env.state().await;

    let (status, first) = handler.rotate("").await;
    assert_eq!(status, 200, "{first:#}");
    for suffix in [
        "/healthcheck-sbx-apikey?label=sandbox",
        "/Orders:ApiKey",
        "/Partner:ApiKey?label=partners",
    ] {
        let e = find(&first, "successes", suffix).unwrap_or_else(|| panic!("{suffix}: {first:#}"));
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("in App Configuration"),
            "{e}"
        );
    }
    let reference = find(&first, "successes", "/Orders:ApiKeyRef?label=prd").expect("reference");
    assert!(
        reference["message"]
            .as_str()
            .unwrap()
            .contains("the reference itself is unchanged"),
        "{reference}"
    );
    assert!(
        find(&first, "unchanged", "/Reference:ApiKey?label=prd").is_some(),
        "{first:#}"
    );
    assert_eq!(app_config_entries(&first, "errors").len(), 0, "{first:#}");

    let (k1, k2, k3) = (
        current_key(&handler, APP1).await,
        current_key(&handler, APP2).await,
        current_key(&handler, APP3).await,
    );
    let state = env.state().await;
    assert_eq!(
        kv(
            &state,
            "appcs-consumers",
            "healthcheck-sbx-apikey?label=sandbox"
        )["value"],
        k1.as_str()
    );
    assert_eq!(
        kv(&state, "appcs-consumers", "Orders:ApiKey")["value"],
        k2.as_str()
    );
    assert_eq!(
        kv(&state, "appcs-partners", "Partner:ApiKey?label=partners")["value"],
        k3.as_str()
    );
    // The reference is untouched; the secret it names holds App2's key.
    let reference_entry = "Orders:ApiKeyRef?label=prd";
    assert_eq!(
        kv(&state, "appcs-consumers", reference_entry),
        kv(&before, "appcs-consumers", reference_entry)
    );
    assert!(
        kv(&state, "appcs-consumers", reference_entry)["contentType"]
            .as_str()
            .unwrap()
            .starts_with("application/vnd.microsoft.appconfig.keyvaultref+json")
    );
    assert_eq!(
        state["keyVaults"]["kv-consumers-prd"]["appcs-ref-apikey"],
        k2.as_str()
    );
    assert_ne!(
        before["keyVaults"]["kv-consumers-prd"]["appcs-ref-apikey"],
        k2.as_str()
    );
    // The locked key is not in the mapping and did not change.
    assert_eq!(
        kv(&state, "appcs-consumers", "Locked:ApiKey"),
        kv(&before, "appcs-consumers", "Locked:ApiKey")
    );
    // Each store got a Sync-Token back from an earlier answer.
    for store in ["appcs-consumers", "appcs-partners"] {
        let token = state["appConfigurations"][store]["lastSyncTokenReceived"].as_str();
        assert!(
            token.is_some_and(|t| t.contains('=') && !t.contains(";sn=")),
            "{store}: {token:?}"
        );
    }

    env.clear_requests().await;
    let (status, second) = handler.rotate("").await;
    assert_eq!(status, 200, "{second:#}");
    assert_eq!(
        app_config_entries(&second, "successes").len(),
        0,
        "{second:#}"
    );
    assert_eq!(
        app_config_entries(&second, "unchanged").len(),
        5,
        "{second:#}"
    );
    let writes = env.writes().await;
    assert!(writes.is_empty(), "the second run wrote: {writes:#?}");
    let requests = env.requests().await;
    let app_config: Vec<_> = requests
        .iter()
        .filter(|r| r["service"] == "appConfiguration")
        .collect();
    assert_eq!(
        app_config.len(),
        5,
        "one GET per key-value: {app_config:#?}"
    );
    assert!(app_config
        .iter()
        .all(|r| r["method"] == "GET" && r["status"] == 200));
    handler.assert_no_key_leaked(
        &env.all_keys().await,
        &[&first.to_string(), &second.to_string()],
    );
}

/// HMAC is really checked: a connection string with another secret fails only the HMAC
/// store's key-value, as Unauthenticated; the Entra store's go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_access_key_fails_only_the_hmac_store() {
    let env = Env::start().await;
    let good = env.info.env[PARTNERS_SETTING].clone();
    let (head, _) = good.split_once("Secret=").unwrap();
    let bad = format!("{head}Secret=d3Jvbmctc2VjcmV0");
    let handler = Handler::start(&env.settings(&[(PARTNERS_SETTING, &bad)])).await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 207, "{report:#}");
    let errors = app_config_entries(&report, "errors");
    assert_eq!(errors.len(), 1, "{report:#}");
    assert!(errors[0]["target"]
        .as_str()
        .unwrap()
        .ends_with("/Partner:ApiKey?label=partners"));
    assert_eq!(errors[0]["code"], "Unauthenticated", "{report:#}");
    assert!(
        find(&report, "successes", "/Orders:ApiKey").is_some(),
        "{report:#}"
    );
    let unauthorized = env
        .requests()
        .await
        .into_iter()
        .filter(|r| r["service"] == "appConfiguration" && r["status"] == 401)
        .count();
    assert_eq!(unauthorized, 1, "an authentication failure is not retried");
}

/// Settings that reach the sandbox with its service principal.
fn deps(env: &Env) -> TargetContext {
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
    TargetContext {
        credential: credential::build(&settings, &http).unwrap(),
        http,
        cloud: settings.cloud.clone(),
        settings,
        vaults: Default::default(),
        call: Call::new(Arc::new(RetryPolicy::default()), None),
    }
}

fn store_mapping(
    env: &Env,
    store: &str,
    setting: Option<&str>,
    keys: &[(&str, &str)],
) -> AppsMapping {
    AppsMapping::default().with([AppConfigurationStore {
        endpoint: env.info.endpoints.app_configurations[store]["endpoint"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        connection_string_setting: setting.map(str::to_string),
        keys: keys
            .iter()
            .map(|(k, app)| KeyValueMapping {
                key: k.to_string(),
                label: None,
                apim_app_name: app.to_string(),
            })
            .collect(),
    }])
}

/// Another writer: an HMAC-signed PUT of `value` to `key` in appcs-partners, unconditional.
async fn other_writer(env: &Env, key: &str, value: &str) {
    let access = AccessKey::parse(&env.info.env[PARTNERS_SETTING]).unwrap();
    let base = env.info.endpoints.app_configurations["appcs-partners"]["endpoint"]
        .as_str()
        .unwrap();
    let url: url::Url = format!("{base}/kv/{key}?api-version=2023-11-01")
        .parse()
        .unwrap();
    let body = serde_json::to_vec(&json!({"value": value})).unwrap();
    let mut request = env
        .tls_client()
        .put(url.clone())
        .header(
            "content-type",
            "application/vnd.microsoft.appconfig.kv+json",
        )
        .body(body.clone());
    for (k, v) in access.sign("PUT", &url, &body, &rfc1123_now()) {
        request = request.header(k, v);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
}

fn write(name: &str, key: &ApiKey) -> Write {
    Write {
        name: name.into(),
        apim_app_name: APP3.into(),
        key: key.clone(),
        expires_at: None,
    }
}

/// (method, status) of the appConfiguration requests since the log was cleared.
async fn app_config_calls(env: &Env) -> Vec<(String, u64)> {
    env.requests()
        .await
        .into_iter()
        .filter(|r| r["service"] == "appConfiguration")
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A value changed between read and write: the conditional PUT gets 412, the target reads
/// again and writes with the new ETag (or, when the other writer stored the same key, stops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_between_read_and_write_is_settled_by_reading_again() {
    let env = Env::start().await;
    let deps = deps(&env);
    let mapping = store_mapping(
        &env,
        "appcs-partners",
        Some(PARTNERS_SETTING),
        &[("race-a", APP3), ("race-b", APP3)],
    );
    let container: Arc<dyn Container> = plan(&mapping, &deps).unwrap().remove(0).container;
    other_writer(&env, "race-a", "first").await;
    other_writer(&env, "race-b", "first").await;
    let read = container.read(&["race-a".into(), "race-b".into()]).await;
    assert!(
        read.iter().all(|r| matches!(r, Ok(Stored::Value(_)))),
        "{read:?}"
    );

    // race-a: someone else writes another value in between; ours must still win, once.
    let ours = ApiKey::new("race-key-ours-0001");
    other_writer(&env, "race-a", "theirs").await;
    env.clear_requests().await;
    let result = container.write(&[write("race-a", &ours)]).await;
    assert!(result[0].is_ok(), "{result:?}");
    assert_eq!(
        app_config_calls(&env).await,
        [
            ("PUT".into(), 412),
            ("GET".into(), 200),
            ("PUT".into(), 200)
        ]
    );
    let state = env.state().await;
    assert_eq!(
        kv(&state, "appcs-partners", "race-a")["value"],
        ours.expose()
    );

    // race-b: the other writer stored the very key: read again, equal, no second PUT.
    other_writer(&env, "race-b", ours.expose()).await;
    env.clear_requests().await;
    let result = container.write(&[write("race-b", &ours)]).await;
    assert!(result[0].is_ok(), "{result:?}");
    assert_eq!(
        app_config_calls(&env).await,
        [("PUT".into(), 412), ("GET".into(), 200)]
    );

    // An injected 412 on the first PUT alone: re-read, write again with the ETag read.
    let fault =
        json!({"service": "appConfiguration", "match": "/kv/race-a", "status": 412, "times": 1});
    let theirs = ApiKey::new("race-key-ours-0002");
    assert!(container.read(&["race-a".into()]).await[0].is_ok());
    env.admin
        .post(format!("{}/faults", env.info.endpoints.admin))
        .json(&fault)
        .send()
        .await
        .unwrap();
    env.clear_requests().await;
    assert!(container.write(&[write("race-a", &theirs)]).await[0].is_ok());
    assert_eq!(
        app_config_calls(&env).await,
        [
            ("PUT".into(), 412),
            ("GET".into(), 200),
            ("PUT".into(), 200)
        ]
    );
    assert_eq!(
        kv(&env.state().await, "appcs-partners", "race-a")["value"],
        theirs.expose()
    );

    // A key-value that keeps changing (412 on every request): an error, never a blind write.
    let fault =
        json!({"service": "appConfiguration", "match": "/kv/race-b", "status": 412, "times": 2});
    env.admin
        .post(format!("{}/faults", env.info.endpoints.admin))
        .json(&fault)
        .send()
        .await
        .unwrap();
    let result = container
        .write(&[write("race-b", &ApiKey::new("race-key-never"))])
        .await;
    let err = result[0].as_ref().expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::ConditionNotMatch, "{err}");
    assert_eq!(
        kv(&env.state().await, "appcs-partners", "race-b")["value"],
        ours.expose()
    );
}

/// A locked key-value is an error with code KeyLocked; the other key-value of the store is
/// still updated and the locked one keeps its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_key_is_an_error_and_nothing_else_changes() {
    let env = Env::start().await;
    let deps = deps(&env);
    let before = env.state().await;
    let mapping = store_mapping(
        &env,
        "appcs-consumers",
        None,
        &[("Locked:ApiKey", APP2), ("Orders:ApiKey", APP2)],
    );
    let planned = plan(&mapping, &deps).unwrap();
    let keys = key_source(&deps.settings, deps.http.clone()).unwrap();
    let report = run(
        &deps.call,
        keys.as_ref(),
        &planned,
        &[APP2.to_string()],
        &RunOptions::default(),
        &deps,
    )
    .await;
    assert_eq!(
        (report.summary.failed, report.summary.updated),
        (1, 1),
        "{report:?}"
    );
    let error = &report.errors[0];
    assert_eq!(error.code.as_deref(), Some("KeyLocked"), "{error:?}");
    assert_eq!(error.kind, "APP_CONFIG");
    assert!(error.target.ends_with("/Locked:ApiKey"), "{error:?}");
    assert!(error.message.contains("read-only"), "{error:?}");
    let after = env.state().await;
    assert_eq!(
        kv(&after, "appcs-consumers", "Locked:ApiKey"),
        kv(&before, "appcs-consumers", "Locked:ApiKey")
    );
    assert_ne!(
        kv(&after, "appcs-consumers", "Orders:ApiKey")["value"],
        kv(&before, "appcs-consumers", "Orders:ApiKey")["value"]
    );
    // The two keys are written at once: sorted, the statuses are 200 and 409.
    let mut puts: Vec<_> = env
        .requests()
        .await
        .into_iter()
        .filter(|r| r["service"] == "appConfiguration" && r["method"] == "PUT")
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    puts.sort_unstable();
    assert_eq!(
        puts,
        [200, 409],
        "the locked key is tried once, never retried"
    );
}

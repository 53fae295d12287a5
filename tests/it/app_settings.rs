//! App settings targets (Function Apps, Web Apps with slots, Static Web Apps) end to end: the
//! real binary against the sandbox's ARM double.

use crate::common;

use apikey_rotator::azure::retry::{Call, RetryPolicy};
use apikey_rotator::azure::{credential, http};
use apikey_rotator::mapping::AppsMapping;
use apikey_rotator::settings::Settings;
use apikey_rotator::targets::app_settings::{self, SettingMapping, SiteGroup, SiteSection};
use apikey_rotator::targets::{plan, TargetContext};
use common::{Env, Handler};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SUBSCRIPTION: &str = "5a4db0c5-0000-4000-8000-00000000a5b1";
const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
const APP2: &str = "APIKeyRotator_TestApp2_Sandbox";

fn entry<'a>(report: &'a Value, list: &str, target: &str) -> Option<&'a Value> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target"] == target)
}

fn arm_requests(requests: &[Value], path_part: &str, method: &str) -> usize {
    requests
        .iter()
        .filter(|r| {
            r["service"] == "resourceManager"
                && r["method"] == method
                && r["path"].as_str().unwrap().contains(path_part)
        })
        .count()
}

async fn fault(env: &Env, fault: Value) {
    let r = env
        .admin
        .post(format!("{}/faults", env.info.endpoints.admin))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn current_key(handler: &Handler, app: &str) -> String {
    let (status, body) = handler.toolkit(format!(r#"{{"appName":"{app}"}}"#)).await;
    assert_eq!(status, 200, "{body}");
    body["apiKey"].as_str().unwrap().to_string()
}

/// Two changed settings of one slot cause ONE PUT (one restart); settings the
/// mapping does not name survive byte for byte; the Web App's Key Vault reference is followed
/// (the secret is updated, the setting keeps its reference, the site refreshes its references);
/// a second run writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_put_per_site_references_followed_second_run_writes_nothing() {
    let env = Env::start().await;
    let before = env.state().await["resourceManager"]["sites"].clone();
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, first) = handler.rotate("").await;
    assert_eq!(status, 200, "{first:#}");

    let requests = env.requests().await;
    let slot = "/sites/func-orders/slots/staging/config/appsettings";
    // One list to read, one PUT for both changes (nothing else in the process wrote the site
    // in between, so the PUT merges into the listed set).
    assert_eq!(
        arm_requests(&requests, slot, "POST"),
        1,
        "one list per site"
    );
    assert_eq!(
        arm_requests(&requests, slot, "PUT"),
        1,
        "one PUT for two changes"
    );
    // The Web App's slot and the Static Web App each hold one stale key: one PUT each; the
    // Web App itself only has its Key Vault reference followed, so it is not written.
    assert_eq!(
        arm_requests(&requests, "/config/appsettings", "PUT"),
        3,
        "one PUT per written site"
    );
    assert_eq!(
        arm_requests(&requests, "/sites/app-storefront/config/appsettings", "PUT"),
        0
    );
    assert_eq!(
        arm_requests(
            &requests,
            "/config/configreferences/appsettings/refresh",
            "POST"
        ),
        1
    );
    for target in [
        "func-orders/staging/ORDERS_API_KEY",
        "func-orders/staging/HEALTHCHECK_API_KEY",
    ] {
        let e = entry(&first, "successes", target).unwrap_or_else(|| panic!("{target}: {first:#}"));
        assert_eq!(e["type"], "FUNCTION_APP");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("Updated app setting "),
            "{e}"
        );
    }

    let after = env.state().await["resourceManager"]["sites"].clone();
    let staging = &after["func-orders/slots/staging"];
    assert_eq!(staging["restarts"], 1, "exactly one restart: {staging:#}");
    for site in ["app-storefront/slots/staging", "swa-portal"] {
        assert_eq!(after[site]["restarts"], 1, "{site}: exactly one restart");
    }
    for site in ["func-orders", "app-storefront"] {
        assert_eq!(after[site]["restarts"], 0, "{site} was restarted");
    }
    let (app1, app2) = (
        current_key(&handler, APP1).await,
        current_key(&handler, APP2).await,
    );
    let settings = staging["appSettings"].as_object().unwrap();
    assert_eq!(settings["ORDERS_API_KEY"], app2.as_str());
    assert_eq!(settings["HEALTHCHECK_API_KEY"], app1.as_str());
    // Everything else is as it was, byte for byte, in the same order.
    let old = before["func-orders/slots/staging"]["appSettings"]
        .as_object()
        .unwrap();
    assert_eq!(
        settings.keys().collect::<Vec<_>>(),
        old.keys().collect::<Vec<_>>()
    );
    for (k, v) in old {
        if !k.ends_with("_API_KEY") {
            assert_eq!(&settings[k], v, "{k} changed");
        }
    }
    assert_eq!(
        settings["STAGING_BANNER"],
        "Staging \u{2014} \"orders\" = <b>test</b>"
    );

    // The Web App's reference is kept, the secret it names holds the new key, and the site
    // was asked to refresh its references.
    let web = &after["app-storefront"];
    assert_eq!(web["appSettings"], before["app-storefront"]["appSettings"]);
    assert!(web["appSettings"]["HEALTHCHECK_API_KEY"]
        .as_str()
        .unwrap()
        .starts_with("@Microsoft.KeyVault(SecretUri="));
    assert_eq!(web["referenceRefreshes"], 1);
    assert_eq!(
        env.state().await["keyVaults"]["kv-consumers-prd"]["webapp-ref-apikey"],
        app1.as_str()
    );
    let e = entry(&first, "successes", "app-storefront/HEALTHCHECK_API_KEY")
        .expect("reference followed");
    assert_eq!(e["type"], "WEB_APP");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("the reference itself is unchanged"),
        "{e}"
    );
    assert!(entry(&first, "successes", "swa-portal/PORTAL_API_KEY")
        .is_some_and(|e| e["type"] == "STATIC_WEB_APP"));
    assert!(entry(
        &first,
        "successes",
        "app-storefront/staging/CATALOG_API_KEY"
    )
    .is_some_and(|e| e["type"] == "WEB_APP"));

    env.clear_requests().await;
    let (status, second) = handler.rotate("").await;
    assert_eq!(status, 200, "{second:#}");
    assert_eq!(second["summary"]["updated"], 0, "{second:#}");
    let writes = env.writes().await;
    assert!(writes.is_empty(), "the second run wrote: {writes:#?}");
    let again = env.state().await["resourceManager"]["sites"].clone();
    assert_eq!(again["func-orders/slots/staging"]["restarts"], 1);
    assert_eq!(again["app-storefront/slots/staging"]["restarts"], 1);
    assert_eq!(again["swa-portal"]["restarts"], 1);
    assert_eq!(again["app-storefront"]["referenceRefreshes"], 1);
    handler.assert_no_key_leaked(
        &env.all_keys().await,
        &[&first.to_string(), &second.to_string()],
    );
}

/// A 429 with Retry-After is retried after the given seconds and the run succeeds; the
/// rate-limit headers are logged; a Retry-After beyond the 30 s budget is not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_honours_retry_after_within_bounds() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    fault(&env, json!({"service": "resourceManager", "match": "/func-orders/slots/staging/", "status": 429, "retryAfterSeconds": 2, "times": 1})).await;
    fault(&env, json!({"service": "resourceManager", "match": "/staticSites/swa-portal/", "status": 429, "retryAfterSeconds": 60, "times": 10})).await;
    let started = Instant::now();
    let (status, report) = handler.rotate("").await;
    let elapsed = started.elapsed();
    assert_eq!(status, 207, "{report:#}");
    assert!(
        elapsed >= Duration::from_secs(2),
        "Retry-After not honoured: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "waited beyond the budget: {elapsed:?}"
    );
    let requests = env.requests().await;
    let slot: Vec<u64> = requests
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .contains("/func-orders/slots/staging/")
        })
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        slot,
        [429, 200, 200],
        "list throttled, retried, then one PUT"
    );
    assert!(
        entry(&report, "successes", "func-orders/staging/ORDERS_API_KEY").is_some(),
        "{report:#}"
    );
    let throttled = entry(&report, "errors", "swa-portal/PORTAL_API_KEY")
        .expect("not retried beyond the budget");
    // App Service calls it "429"; the report uses the stable code of its table.
    assert_eq!(throttled["code"], "TooManyRequests");
    assert_eq!(
        requests
            .iter()
            .filter(|r| r["path"].as_str().unwrap().contains("/swa-portal/"))
            .count(),
        1,
        "a 60 s Retry-After is beyond the 30 s budget"
    );
    assert!(handler
        .output()
        .contains("x-ms-ratelimit-remaining-subscription-writes"));
}

/// A site the rotator has no role on is one error entry (AuthorizationFailed); the other
/// targets succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_site_is_an_error_others_succeed() {
    let env = Env::start().await;
    let mut mapping: Value = serde_json::from_str(&env.info.env["APIKEYROTATIONAPPS"]).unwrap();
    mapping["functionApps"].as_array_mut().unwrap().push(json!({
        "subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-orders", "name": "func-locked",
        "settings": [{"settingName": "ORDERS_API_KEY", "apimAppName": APP2}]}));
    let text = mapping.to_string();
    let handler = Handler::start(&env.settings(&[("APIKEYROTATIONAPPS", &text)])).await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 207, "{report:#}");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report:#}");
    assert_eq!(
        (&errors[0]["type"], &errors[0]["target"], &errors[0]["code"]),
        (
            &json!("FUNCTION_APP"),
            &json!("func-locked/ORDERS_API_KEY"),
            &json!("AuthorizationFailed")
        )
    );
    assert_eq!(report["summary"]["updated"], 13, "{report:#}");
    assert_eq!(
        env.state().await["resourceManager"]["sites"]["func-locked"]["restarts"],
        0
    );
}

fn deps(env: &Env) -> TargetContext {
    let settings = Arc::new(Settings::from_map(env.settings(&[])));
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

/// The same site named in `functionApps` and `webApps` (any letter case) is ONE container,
/// of the first group's kind, with the entries of both; another slot is another container.
#[tokio::test]
async fn one_container_per_site_across_groups() {
    let env = Env::start().await;
    let group = |section, name: &str, slot: Option<&str>, setting: &str| SiteGroup {
        section,
        subscription_id: SUBSCRIPTION.into(),
        resource_group: "rg-orders".into(),
        name: name.into(),
        slot: slot.map(String::from),
        settings: vec![SettingMapping {
            setting_name: setting.into(),
            apim_app_name: APP2.into(),
        }],
    };
    let mapping = AppsMapping::default().with([
        group(SiteSection::FunctionApp, "func-orders", None, "A"),
        group(SiteSection::WebApp, "FUNC-ORDERS", None, "B"),
        group(
            SiteSection::FunctionApp,
            "func-orders",
            Some("staging"),
            "C",
        ),
    ]);
    let planned = plan(&mapping, &deps(&env)).unwrap();
    assert_eq!(planned.len(), 2);
    assert_eq!(
        planned[0].container.target_type(),
        app_settings::FUNCTION_APP
    );
    assert_eq!(planned[0].container.label(), "func-orders");
    let names: Vec<_> = planned[0].entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(planned[1].container.label(), "func-orders/staging");
}

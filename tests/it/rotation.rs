//! End to end: the real binary against the sandbox over TLS renews the in-window key, updates
//! stale stores, pushes to the application API, and on a second run writes nothing.

use crate::common;

use apikey_rotator::secret::ApiKey;
use common::{Env, Handler};
use serde_json::Value;

const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
const APP2: &str = "APIKeyRotator_TestApp2_Sandbox";
const APP3: &str = "ApiKeyRotator_TestApp3_Sandbox";

fn entries<'a>(report: &'a Value, list: &str) -> Vec<&'a Value> {
    report[list].as_array().unwrap().iter().collect()
}

fn has(report: &Value, list: &str, kind: &str, target_suffix: &str) -> bool {
    entries(report, list)
        .iter()
        .any(|e| e["type"] == kind && e["target"].as_str().unwrap_or("").ends_with(target_suffix))
}

async fn current_key(handler: &Handler, app: &str) -> String {
    let (status, body) = handler.toolkit(format!(r#"{{"appName":"{app}"}}"#)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["renewed"], false,
        "a second ToolkitApp call must not renew again: {body}"
    );
    body["apiKey"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_rotates_second_run_writes_nothing() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let keys_before = env.all_keys().await;

    let (status, first) = handler.rotate("").await;
    assert_eq!(status, 200, "{first:#}");
    let s = &first["summary"];
    assert_eq!(
        (s["apps"].as_u64(), s["targets"].as_u64()),
        (Some(3), Some(17)),
        "{s}"
    );
    assert_eq!(
        s["renewed"], 1,
        "only App1 is inside the renewal window: {first:#}"
    );
    assert!(entries(&first, "successes")
        .iter()
        .any(|e| e["type"] == "TOOLKIT" && e["appName"] == APP1));
    // App1's key was renewed, so its vault secret and its application API entry are stale.
    assert!(
        has(&first, "successes", "KEY_VAULT", "/healthcheck-prd-apikey"),
        "{first:#}"
    );
    assert!(
        has(&first, "successes", "APPLICATION_API", "/healthcheck-api"),
        "{first:#}"
    );
    // App2's secret held an old value; the partner vault had no secret at all.
    assert!(
        has(&first, "successes", "KEY_VAULT", "/orders-prd-apikey"),
        "{first:#}"
    );
    assert!(
        has(&first, "successes", "KEY_VAULT", "/partner-apikey"),
        "{first:#}"
    );
    // App3 is current in its vault and its application API.
    assert!(
        has(&first, "unchanged", "KEY_VAULT", "/reference-prd-apikey"),
        "{first:#}"
    );
    assert!(
        has(&first, "unchanged", "APPLICATION_API", "/referenceapi-prd"),
        "{first:#}"
    );
    assert_eq!(
        (
            s["updated"].as_u64(),
            s["unchanged"].as_u64(),
            s["failed"].as_u64()
        ),
        (Some(13), Some(4), Some(0))
    );
    // App settings: the slots' and the Static Web App's stale and renewed keys are written, the
    // Web App's Key Vault reference is followed, the current one is left alone.
    assert!(
        has(
            &first,
            "successes",
            "FUNCTION_APP",
            "func-orders/staging/ORDERS_API_KEY"
        ),
        "{first:#}"
    );
    assert!(
        has(
            &first,
            "successes",
            "FUNCTION_APP",
            "func-orders/staging/HEALTHCHECK_API_KEY"
        ),
        "{first:#}"
    );
    assert!(
        has(
            &first,
            "successes",
            "WEB_APP",
            "app-storefront/HEALTHCHECK_API_KEY"
        ),
        "{first:#}"
    );
    assert!(
        has(
            &first,
            "unchanged",
            "WEB_APP",
            "app-storefront/CATALOG_API_KEY"
        ),
        "{first:#}"
    );
    assert!(
        has(
            &first,
            "successes",
            "STATIC_WEB_APP",
            "swa-portal/PORTAL_API_KEY"
        ),
        "{first:#}"
    );
    assert!(entries(&first, "warnings").is_empty(), "{first:#}");
    let warning = entries(&first, "unchanged")
        .into_iter()
        .find(|e| e["type"] == "KEY_VAULT")
        .unwrap();
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .starts_with("No update needed for \"reference-prd-apikey\""),
        "{warning}"
    );

    // The new key is what the stores hold now: read back with the official Key Vault client.
    let app1_key = current_key(&handler, APP1).await;
    assert!(!keys_before.contains(&app1_key), "App1 must have a new key");
    let vault = &env.info.endpoints.key_vaults["kv-consumers-prd"];
    assert_eq!(
        read_secret(&env, vault, "healthcheck-prd-apikey").await,
        app1_key
    );
    assert_eq!(
        read_secret(&env, vault, "orders-prd-apikey").await,
        current_key(&handler, APP2).await
    );
    let api = env.tls_client();
    let token = sandbox_token(&env, "api://apikey-consumer-sandbox").await;
    let stored: Value = api
        .get(&env.info.endpoints.application_apis["healthcheck-api"])
        .query(&[("appName", "healthcheck-api")])
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stored["apiKeySha256"],
        ApiKey::new(app1_key.clone()).sha256_hex()
    );

    env.clear_requests().await;
    let (status, second) = handler.rotate("").await;
    assert_eq!(status, 200, "{second:#}");
    assert_eq!(second["summary"]["updated"], 0, "{second:#}");
    assert_eq!(second["summary"]["renewed"], 0);
    assert_eq!(second["summary"]["unchanged"], 17);
    let writes = env.writes().await;
    assert!(writes.is_empty(), "the second run wrote: {writes:#?}");
    // One issuer read per app, one read per target.
    let requests = env.requests().await;
    let count = |service: &str| {
        requests
            .iter()
            .filter(|r| r["service"] == service && r["method"] == "GET")
            .count()
    };
    assert_eq!(count("apigee"), 3, "{requests:#?}");
    // Four mapped secrets, and the ones the Web App's and an App Configuration Key Vault
    // reference point at.
    assert_eq!(count("keyVault"), 6);
    assert_eq!(count("appConfiguration"), 5);
    assert_eq!(count("applicationApi"), 2);
    // One list per site, slot or static site; no PUT.
    let arm: Vec<_> = requests
        .iter()
        .filter(|r| r["service"] == "resourceManager")
        .collect();
    assert_eq!(arm.len(), 4, "{arm:#?}");
    assert!(arm.iter().all(|r| common::is_arm_list(r)), "{arm:#?}");

    let all_keys = env.all_keys().await;
    handler.assert_no_key_leaked(&all_keys, &[&first.to_string(), &second.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_plans_without_writing_and_force_renews_one_app() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;

    let (status, plan) = handler.rotate("dryRun=true").await;
    assert_eq!(status, 200, "{plan:#}");
    assert_eq!(plan["dryRun"], true);
    assert_eq!(
        plan["summary"]["renewed"], 1,
        "the renewal a real run makes is planned: {plan:#}"
    );
    assert!(
        entries(&plan, "successes")
            .iter()
            .filter(|e| common::is_target(e))
            .all(|e| e["message"].as_str().unwrap().starts_with("Would ")),
        "{plan:#}"
    );
    assert!(
        env.writes().await.is_empty(),
        "a dry run wrote: {:#?}",
        env.writes().await
    );

    let (status, body) = handler.rotate("force=true").await;
    assert_eq!(status, 400, "force without app: {body}");
    let (status, body) = handler.rotate("app=NoSuchApp").await;
    assert_eq!(status, 400, "{body}");

    let before = current_key(&handler, APP3).await;
    let (status, forced) = handler.rotate(&format!("app={APP3}&force=true")).await;
    assert_eq!(status, 200, "{forced:#}");
    assert_eq!(forced["summary"]["apps"], 1);
    assert_eq!(forced["summary"]["renewed"], 1);
    assert_eq!(
        forced["summary"]["targets"], 5,
        "only App3's targets: {forced:#}"
    );
    let after = current_key(&handler, APP3).await;
    assert_ne!(before, after);
    let vault = &env.info.endpoints.key_vaults["kv-consumers-prd"];
    assert_eq!(
        read_secret(&env, vault, "reference-prd-apikey").await,
        after
    );
    handler.assert_no_key_leaked(
        &env.all_keys().await,
        &[&plan.to_string(), &forced.to_string()],
    );
}

/// The official Rust Key Vault client, unchanged, against the sandbox vault.
async fn read_secret(env: &Env, vault: &str, name: &str) -> String {
    use azure_core::http::{ClientOptions, Transport};
    use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
    let credential = sandbox_credential(env);
    let options = SecretClientOptions {
        client_options: ClientOptions {
            transport: Some(Transport::new(std::sync::Arc::new(env.tls_client()))),
            ..Default::default()
        },
        verify_challenge_resource: Some(false),
        ..Default::default()
    };
    let client = SecretClient::new(vault, credential, Some(options)).unwrap();
    client
        .get_secret(name, None)
        .await
        .unwrap()
        .into_model()
        .unwrap()
        .value
        .unwrap()
}

/// The sandbox's service principal, through the official `azure_identity` client-secret credential.
fn sandbox_credential(env: &Env) -> std::sync::Arc<dyn azure_core::credentials::TokenCredential> {
    use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
    use azure_core::http::{ClientOptions, Transport};
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = env.info.env["AZURE_AUTHORITY_HOST"].clone();
    let options = azure_identity::ClientSecretCredentialOptions {
        client_options: ClientOptions {
            transport: Some(Transport::new(std::sync::Arc::new(env.tls_client()))),
            cloud: Some(std::sync::Arc::new(CloudConfiguration::from(cloud))),
            ..Default::default()
        },
    };
    azure_identity::ClientSecretCredential::new(
        &env.info.env["AZURE_TENANT_ID"],
        env.info.env["SANDBOX_CLIENT_ID"].clone(),
        env.info.env["SANDBOX_CLIENT_SECRET"].clone().into(),
        Some(options),
    )
    .unwrap()
}

async fn sandbox_token(env: &Env, resource: &str) -> String {
    let credential = sandbox_credential(env);
    credential
        .get_token(&[&format!("{resource}/.default")], None)
        .await
        .unwrap()
        .token
        .secret()
        .to_string()
}

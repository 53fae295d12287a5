//! The demo data: three Apigee apps (key inside the renewal window, outside it, never expiring),
//! stores holding current and stale keys, and the settings the handler needs to run against the
//! sandbox (mapping, sealed company details, identity endpoint, custom cloud, CA).

use super::application_api::StoredKey;
use super::{now_ms, random_alphanumeric, Endpoints, Shared};
use crate::settings::{COMPANY_DETAILS, MAPPING_SETTINGS, SCHEDULE, TOOLKIT_UUID};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// The vaults the sandbox serves.
pub(crate) const VAULTS: [&str; 2] = ["kv-consumers-prd", "kv-partners-prd"];
/// The App Configuration stores the sandbox serves: `appcs-consumers` is reached with Entra
/// ID, `appcs-partners` with HMAC (its connection string in [`APPCS_PARTNERS_SETTING`]).
pub(crate) const APP_CONFIG_STORES: [&str; 2] = ["appcs-consumers", "appcs-partners"];
/// The app setting holding the connection string of `appcs-partners`.
pub(crate) const APPCS_PARTNERS_SETTING: &str = "APPCS_PARTNERS_CONNECTION_STRING";
/// The Apigee organization.
pub(crate) const ORGANIZATION: &str = "contoso-sandbox";
/// The Apigee developer owning the apps.
pub(crate) const DEVELOPER: &str = "integrations@contoso.example";
/// The application API names (one listener, one path).
pub(crate) const APPLICATION_APIS: [&str; 2] = ["referenceapi-prd", "healthcheck-api"];
/// `WEBSITE_SITE_NAME` the sealed details are bound to.
const SITE_NAME: &str = "func-keyrotator-sandbox";
const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
const APP2: &str = "APIKeyRotator_TestApp2_Sandbox";
const APP3: &str = "ApiKeyRotator_TestApp3_Sandbox";
const DAY_MS: i64 = 86_400_000;
/// The sandbox subscription holding the demo sites.
pub(crate) const SUBSCRIPTION: &str = "5a4db0c5-0000-4000-8000-00000000a5b1";

/// Seeds Apigee, the vaults and the application API.
pub(crate) fn seed(shared: &Shared) {
    let now = now_ms();
    let apigee = &shared.apigee;
    // (app, product, expiry of the current key in days; None = never). App1's product has
    // `approvalType: manual` (see `Apigee::new`): the key the first run makes for it starts
    // `pending` on that product, and the rotator approves it.
    let apps = [
        (APP1, "healthcheck-product", Some(10)),
        (APP2, "orders-product", Some(200)),
        (APP3, "reference-product", None),
    ];
    let mut current = BTreeMap::new();
    let mut expired = BTreeMap::new();
    for (app, product, days) in apps {
        apigee.add_app(app);
        let old = random_alphanumeric(32);
        apigee.add_key(app, &old, now - 400 * DAY_MS, now - 10 * DAY_MS, &[product]);
        let key = random_alphanumeric(32);
        let expires_at = days.map_or(-1, |d| now + d * DAY_MS);
        apigee.add_key(app, &key, now - 80 * DAY_MS, expires_at, &[product]);
        current.insert(app, key);
        expired.insert(app, old);
    }
    let consumers = &shared.vaults["kv-consumers-prd"];
    consumers.set("healthcheck-prd-apikey", &current[APP1]);
    consumers.set("orders-prd-apikey", &expired[APP2]);
    consumers.set("reference-prd-apikey", &current[APP3]);
    // The secret an App Configuration Key Vault reference points at, holding a stale key.
    consumers.set("appcs-ref-apikey", &expired[APP2]);
    // kv-partners-prd/partner-apikey and healthcheck-api are left empty: the first run creates them.
    seed_sites(shared, &current, &expired);
    shared.application_api.put(
        "referenceapi-prd",
        StoredKey {
            apim_app_name: APP3.into(),
            api_key: current[APP3].clone(),
            expires_at: None,
        },
    );
    seed_app_configuration(shared, &current, &expired);
}

/// Seeds the App Configuration stores: current and stale keys, labelled and not, a Key Vault
/// reference to `kv-consumers-prd/appcs-ref-apikey`, and a locked key outside the mapping.
fn seed_app_configuration(
    shared: &Shared,
    current: &BTreeMap<&str, String>,
    expired: &BTreeMap<&str, String>,
) {
    use crate::targets::app_configuration::KEY_VAULT_REF_CONTENT_TYPE;
    let consumers = &shared.app_configs["appcs-consumers"];
    consumers.set(
        "healthcheck-sbx-apikey",
        Some("sandbox"),
        &current[APP1],
        None,
        false,
    );
    consumers.set("Orders:ApiKey", None, &expired[APP2], None, false);
    consumers.set("Reference:ApiKey", Some("prd"), &current[APP3], None, false);
    let reference = json!({"uri": format!("{}/secrets/appcs-ref-apikey", shared.vaults["kv-consumers-prd"].base_url)});
    consumers.set(
        "Orders:ApiKeyRef",
        Some("prd"),
        &reference.to_string(),
        Some(KEY_VAULT_REF_CONTENT_TYPE),
        false,
    );
    consumers.set("Locked:ApiKey", None, &expired[APP2], None, true);
    let partners = &shared.app_configs["appcs-partners"];
    partners.set(
        "Partner:ApiKey",
        Some("partners"),
        &expired[APP3],
        None,
        false,
    );
}

/// The demo sites: a Function App with a `staging` slot (a stale key, and App1's key, which
/// the first run renews), a Web App (App2's current key, and a Key Vault reference to a stale
/// secret) with a `staging` slot (a stale key), a Static Web App (a stale key), each with
/// settings the mapping does not name; and `func-locked`, on which the rotator has no role
/// (403 AuthorizationFailed).
fn seed_sites(shared: &Shared, current: &BTreeMap<&str, String>, expired: &BTreeMap<&str, String>) {
    use super::resource_manager::SiteType;
    let arm = &shared.resource_manager;
    let consumers = &shared.vaults["kv-consumers-prd"];
    consumers.set("webapp-ref-apikey", &expired[APP1]);
    let reference = format!(
        "@Microsoft.KeyVault(SecretUri={}/secrets/webapp-ref-apikey/)",
        consumers.base_url.trim_end_matches('/')
    );
    arm.add_site(
        SUBSCRIPTION,
        "rg-orders",
        SiteType::FunctionApp,
        "func-orders",
        None,
        &[
            ("FUNCTIONS_WORKER_RUNTIME", "custom"),
            ("FUNCTIONS_EXTENSION_VERSION", "~4"),
            ("ORDERS_API_KEY", &current[APP2]),
        ],
    );
    arm.add_site(
        SUBSCRIPTION,
        "rg-orders",
        SiteType::FunctionApp,
        "func-orders",
        Some("staging"),
        &[
            ("FUNCTIONS_WORKER_RUNTIME", "custom"),
            ("ORDERS_API_KEY", &expired[APP2]),
            ("HEALTHCHECK_API_KEY", &current[APP1]),
            (
                "STAGING_BANNER",
                "Staging \u{2014} \"orders\" = <b>test</b>",
            ),
        ],
    );
    arm.add_site(
        SUBSCRIPTION,
        "rg-web",
        SiteType::WebApp,
        "app-storefront",
        None,
        &[
            ("WEBSITE_RUN_FROM_PACKAGE", "1"),
            ("CATALOG_API_KEY", &current[APP2]),
            ("HEALTHCHECK_API_KEY", &reference),
        ],
    );
    arm.add_site(
        SUBSCRIPTION,
        "rg-web",
        SiteType::WebApp,
        "app-storefront",
        Some("staging"),
        &[
            ("WEBSITE_RUN_FROM_PACKAGE", "1"),
            ("CATALOG_API_KEY", &expired[APP2]),
        ],
    );
    arm.add_site(
        SUBSCRIPTION,
        "rg-web",
        SiteType::StaticSite,
        "swa-portal",
        None,
        &[
            ("API_BASE_URL", "https://api.contoso.example/v1"),
            ("PORTAL_API_KEY", &expired[APP3]),
        ],
    );
    arm.add_site(
        SUBSCRIPTION,
        "rg-orders",
        SiteType::FunctionApp,
        "func-locked",
        None,
        &[("ORDERS_API_KEY", &expired[APP2])],
    );
    arm.forbid(
        SUBSCRIPTION,
        "rg-orders",
        SiteType::FunctionApp,
        "func-locked",
    );
}

/// The apps mapping (`APIKEYROTATIONAPPS`) over the sandbox's URLs.
pub(crate) fn mapping(endpoints: &Endpoints) -> serde_json::Value {
    let auth = json!({"type": "managedIdentity", "scope": format!("{}/.default", super::application_api::AUDIENCE)});
    json!({
        "_readme": "Sandbox mapping generated by apikey-rotator sandbox.",
        "keyVault": [
            {"vaultUrl": endpoints.key_vaults["kv-consumers-prd"], "secrets": [
                {"secretName": "healthcheck-prd-apikey", "apimAppName": APP1},
                {"secretName": "orders-prd-apikey", "apimAppName": APP2},
                {"secretName": "reference-prd-apikey", "apimAppName": APP3}]},
            {"vaultUrl": endpoints.key_vaults["kv-partners-prd"], "secrets": [
                {"secretName": "partner-apikey", "apimAppName": APP2}]}
        ],
        "applicationApis": [
            {"httpURL": endpoints.application_apis["referenceapi-prd"], "appName": "referenceapi-prd", "apimAppName": APP3, "auth": auth},
            {"httpURL": endpoints.application_apis["healthcheck-api"], "appName": "healthcheck-api", "apimAppName": APP1, "auth": auth}
        ],
        "functionApps": [
            {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-orders", "name": "func-orders", "slot": "staging", "settings": [
                {"settingName": "ORDERS_API_KEY", "apimAppName": APP2},
                {"settingName": "HEALTHCHECK_API_KEY", "apimAppName": APP1}]}
        ],
        "webApps": [
            {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-web", "name": "app-storefront", "settings": [
                {"settingName": "CATALOG_API_KEY", "apimAppName": APP2},
                {"settingName": "HEALTHCHECK_API_KEY", "apimAppName": APP1}]},
            {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-web", "name": "app-storefront", "slot": "staging", "settings": [
                {"settingName": "CATALOG_API_KEY", "apimAppName": APP2}]}
        ],
        "staticWebApps": [
            {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-web", "name": "swa-portal", "settings": [
                {"settingName": "PORTAL_API_KEY", "apimAppName": APP3}]}
        ],
        "appConfiguration": [
            {"endpoint": endpoints.app_configurations["appcs-consumers"]["endpoint"], "keys": [
                {"key": "healthcheck-sbx-apikey", "label": "sandbox", "apimAppName": APP1},
                {"key": "Orders:ApiKey", "apimAppName": APP2},
                {"key": "Reference:ApiKey", "label": "prd", "apimAppName": APP3},
                {"key": "Orders:ApiKeyRef", "label": "prd", "apimAppName": APP2}]},
            {"endpoint": endpoints.app_configurations["appcs-partners"]["endpoint"],
             "connectionStringSetting": APPCS_PARTNERS_SETTING, "keys": [
                {"key": "Partner:ApiKey", "label": "partners", "apimAppName": APP3}]}
        ]
    })
}

/// The company-details plaintext: Apigee X in the sandbox, with the service-account key.
pub(crate) fn company_details(shared: &Shared) -> serde_json::Value {
    let apigee = &shared.apigee;
    let sa = &apigee.service_account;
    json!({
        "company": "Contoso Sandbox",
        "issuer": {
            "type": "apigeeX",
            "endpoint": apigee.base_url,
            "organization": apigee.organization,
            "developerEmail": apigee.developer_email,
            "serviceAccountKey": {
                "type": "service_account",
                "project_id": ORGANIZATION,
                "private_key_id": sa.private_key_id,
                "private_key": sa.private_key_pem.expose(),
                "client_email": sa.email,
                "client_id": "1",
                "token_uri": apigee.token_uri,
            }
        },
        "policy": {"renewBeforeExpiryDays": 45, "newKeyLifetimeDays": 90},
        "boundTo": {"siteName": SITE_NAME}
    })
}

/// Every app setting the handler needs to run against the sandbox, with `mapping` as the apps
/// mapping.
pub(crate) fn env(
    shared: &Shared,
    endpoints: &Endpoints,
    ca_file: &Path,
    mapping: &serde_json::Value,
) -> crate::error::Result<BTreeMap<String, String>> {
    let uuid = uuid::Uuid::new_v4().to_string();
    let plaintext = company_details(shared).to_string();
    let sealed = crate::toolkit::sealed::seal(&uuid, plaintext.as_bytes())?;
    let pairs = [
        (MAPPING_SETTINGS[0], mapping.to_string()),
        (COMPANY_DETAILS, sealed),
        (TOOLKIT_UUID, uuid),
        ("IDENTITY_ENDPOINT", endpoints.identity.clone()),
        ("IDENTITY_HEADER", shared.identity.header.clone()),
        ("AZURE_CLOUD", "custom".into()),
        // The sandbox's vaults and stores listen on loopback: its custom cloud declares that
        // as their domain, so the rotator sends its vault and store tokens there and nowhere else.
        ("AZURE_KEYVAULT_DNS_SUFFIX", "127.0.0.1".into()),
        (
            crate::azure::cloud::APP_CONFIGURATION_SUFFIX_SETTING,
            "127.0.0.1".into(),
        ),
        ("AZURE_AUTHORITY_HOST", endpoints.authority.clone()),
        (
            "AZURE_RESOURCE_MANAGER_ENDPOINT",
            endpoints.resource_manager.clone(),
        ),
        (
            crate::azure::http::TRUSTED_CA_SETTING,
            ca_file.display().to_string(),
        ),
        (SCHEDULE, crate::settings::DEFAULT_SCHEDULE.into()),
        ("WEBSITE_SITE_NAME", SITE_NAME.into()),
        ("AZURE_TENANT_ID", shared.tenant_id.clone()),
        ("SANDBOX_CLIENT_ID", shared.principal.client_id.clone()),
        (
            "SANDBOX_CLIENT_SECRET",
            shared.principal.secret.expose().to_string(),
        ),
        (
            APPCS_PARTNERS_SETTING,
            shared.app_configs["appcs-partners"].connection_string(),
        ),
    ];
    Ok(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;
    use super::*;
    use serde_json::Value;

    /// The seeded state matches the story: App1 inside the window, App2 outside with a stale
    /// vault value, App3 never expiring and current everywhere; partner-apikey missing.
    #[tokio::test]
    async fn demo_state_tells_the_story() {
        let h = Harness::start().await;
        let state: Value = h
            .client
            .get(format!("{}/state", h.sandbox.info().endpoints.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let now = now_ms();
        let current = |app: &str| {
            let creds = state["apigee"]["apps"][app]["credentials"]
                .as_array()
                .unwrap();
            assert_eq!(creds.len(), 2, "{app}");
            let old_expiry: i64 = creds[0]["expiresAt"].as_str().unwrap().parse().unwrap();
            assert!(old_expiry < now, "{app} has an expired key");
            let c = &creds[1];
            (
                c["consumerKey"].as_str().unwrap().to_string(),
                c["expiresAt"].as_str().unwrap().parse::<i64>().unwrap(),
            )
        };
        let (k1, e1) = current(APP1);
        let (k2, e2) = current(APP2);
        let (k3, e3) = current(APP3);
        assert!(e1 > now && e1 < now + 45 * DAY_MS);
        assert!(e2 > now + 45 * DAY_MS);
        assert_eq!(e3, -1);
        let kv = &state["keyVaults"]["kv-consumers-prd"];
        assert_eq!(kv["healthcheck-prd-apikey"], k1.as_str());
        assert_ne!(kv["orders-prd-apikey"], k2.as_str());
        assert_eq!(kv["reference-prd-apikey"], k3.as_str());
        assert_eq!(state["keyVaults"]["kv-partners-prd"], serde_json::json!({}));
        assert_eq!(
            state["applicationApis"]["referenceapi-prd"]["apiKey"],
            k3.as_str()
        );
        assert!(state["applicationApis"].get("healthcheck-api").is_none());

        let details = company_details(&h.sandbox.shared);
        assert_eq!(
            details["issuer"]["serviceAccountKey"]["token_uri"],
            format!("{}/token", h.sandbox.info().endpoints.apigee)
        );
        assert_eq!(details["boundTo"]["siteName"], h.env("WEBSITE_SITE_NAME"));
        h.sandbox.shutdown().await;
    }
}

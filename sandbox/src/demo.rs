//! The demo: which doubles the sandbox deploys ([`Cast`]), the data they are seeded with (three
//! Apigee apps whose keys are inside the renewal window, outside it, never expiring; stores
//! holding current and stale keys), the apps mapping over them, and what the handler needs to
//! run against them (the plaintext company details, the identity header, the service
//! principal, the connection strings).

use super::application_api::StoredKey;
use super::double::Tenant;
use super::secret::Secret;
use super::{
    api_gateway, apigee, app_configuration, app_insights, application_api, authority, identity,
    key_vault,
};
use super::{now_ms, random_alphanumeric, Deployment, Endpoints, Handover};
use super::{resource_manager, webhook, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

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

/// The `contentType` App Configuration gives a Key Vault reference.
const KEY_VAULT_REF_CONTENT_TYPE: &str =
    "application/vnd.microsoft.appconfig.keyvaultref+json;charset=utf-8";

/// The doubles of the demo (and of the workload, which seeds the same services), typed, so
/// that seeding can reach each one's state.
pub(crate) struct Cast {
    pub identity: Arc<identity::ManagedIdentity>,
    pub authority: Arc<authority::Authority>,
    pub resource_manager: Arc<resource_manager::ResourceManager>,
    pub apigee: Arc<apigee::Apigee>,
    /// The Apigee runtime in front of the demo's APIs; it reads `apigee`'s keys.
    pub api_gateway: Arc<api_gateway::ApiGateway>,
    pub application_api: Arc<application_api::Store>,
    /// The webhook receiver (notifications).
    pub webhook: Arc<webhook::Receiver>,
    /// Application Insights' ingestion endpoint (telemetry).
    pub app_insights: Arc<app_insights::AppInsights>,
    /// Vaults by name.
    pub vaults: BTreeMap<String, Arc<key_vault::Vault>>,
    /// App Configuration stores by name.
    pub app_configs: BTreeMap<String, Arc<app_configuration::Store>>,
}

impl Cast {
    /// Deploys every double of the demo, each on a port of its own.
    pub fn deploy(d: &mut Deployment) -> Result<Cast> {
        let identity = d.deploy(false, identity::ManagedIdentity::generate)?;
        let authority = d.deploy(true, authority::Authority::generate)?;
        let resource_manager = d.deploy(true, resource_manager::ResourceManager::new)?;
        let apigee = d.try_deploy(true, |url| {
            apigee::Apigee::new(url, ORGANIZATION, DEVELOPER)
        })?;
        let api_gateway = d.deploy(true, |url| {
            api_gateway::ApiGateway::new(url, apigee.clone())
        })?;
        let application_api = d.deploy(true, application_api::Store::new)?;
        let webhook = d.deploy(true, webhook::Receiver::new)?;
        let app_insights = d.deploy(true, app_insights::AppInsights::new)?;
        let mut vaults = BTreeMap::new();
        for name in VAULTS {
            let vault = d.deploy(true, |url| key_vault::Vault::new(name, url))?;
            vaults.insert(name.to_string(), vault);
        }
        let mut app_configs = BTreeMap::new();
        for name in APP_CONFIG_STORES {
            let store = d.deploy(true, |url| app_configuration::Store::new(name, url))?;
            app_configs.insert(name.to_string(), store);
        }
        Ok(Cast {
            identity,
            authority,
            resource_manager,
            apigee,
            api_gateway,
            application_api,
            webhook,
            app_insights,
            vaults,
            app_configs,
        })
    }

    /// The URLs of every double, as `sandbox.json` publishes them.
    pub fn endpoints(&self, admin: &str) -> Endpoints {
        let app_api_url = format!("{}{}", self.application_api.base_url, application_api::PATH);
        Endpoints {
            identity: format!("{}{}", self.identity.base_url, identity::PATH),
            authority: self.authority.base_url.clone(),
            resource_manager: self.resource_manager.base_url.clone(),
            apigee: self.apigee.base_url.clone(),
            api_gateway: self.api_gateway.base_url.clone(),
            key_vaults: self
                .vaults
                .iter()
                .map(|(name, v)| (name.clone(), format!("{}/", v.base_url)))
                .collect(),
            app_configurations: self
                .app_configs
                .values()
                .map(|s| {
                    let info =
                        json!({"endpoint": s.base_url, "connectionString": s.connection_string()});
                    (s.name.clone(), info)
                })
                .collect(),
            application_apis: APPLICATION_APIS
                .iter()
                .map(|name| (name.to_string(), app_api_url.clone()))
                .collect(),
            admin: admin.to_string(),
            webhook: format!("{}{}", self.webhook.base_url, webhook::PATH),
            app_insights: self.app_insights.connection_string(),
        }
    }

    /// What the handler needs to run against the cast, with `mapping` as its apps mapping.
    pub fn handover(&self, tenant: &Tenant, mapping: serde_json::Value) -> Handover {
        Handover {
            mapping,
            company_details: Secret::new(company_details(self).to_string()),
            site_name: SITE_NAME.to_string(),
            identity_header: Secret::new(self.identity.header.clone()),
            tenant_id: tenant.id.clone(),
            client_id: self.authority.principal.client_id.clone(),
            client_secret: self.authority.principal.secret.clone(),
            connection_strings: BTreeMap::from([(
                APPCS_PARTNERS_SETTING.to_string(),
                Secret::new(self.app_configs["appcs-partners"].connection_string()),
            )]),
        }
    }
}

/// Seeds Apigee, the vaults and the application API.
pub(crate) fn seed(cast: &Cast) {
    let now = now_ms();
    let apigee = &cast.apigee;
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
    let consumers = &cast.vaults["kv-consumers-prd"];
    consumers.set("healthcheck-prd-apikey", &current[APP1]);
    consumers.set("orders-prd-apikey", &expired[APP2]);
    consumers.set("reference-prd-apikey", &current[APP3]);
    // The secret an App Configuration Key Vault reference points at, holding a stale key.
    consumers.set("appcs-ref-apikey", &expired[APP2]);
    // kv-partners-prd/partner-apikey and healthcheck-api are left empty: the first run creates them.
    seed_sites(cast, &current, &expired);
    cast.application_api.put(
        "referenceapi-prd",
        StoredKey {
            apim_app_name: APP3.into(),
            api_key: current[APP3].clone(),
            expires_at: None,
        },
    );
    seed_app_configuration(cast, &current, &expired);
}

/// Seeds the App Configuration stores: current and stale keys, labelled and not, a Key Vault
/// reference to `kv-consumers-prd/appcs-ref-apikey`, and a locked key outside the mapping.
fn seed_app_configuration(
    cast: &Cast,
    current: &BTreeMap<&str, String>,
    expired: &BTreeMap<&str, String>,
) {
    let consumers = &cast.app_configs["appcs-consumers"];
    consumers.set(
        "healthcheck-sbx-apikey",
        Some("sandbox"),
        &current[APP1],
        None,
        false,
    );
    consumers.set("Orders:ApiKey", None, &expired[APP2], None, false);
    consumers.set("Reference:ApiKey", Some("prd"), &current[APP3], None, false);
    let reference = json!({"uri": format!("{}/secrets/appcs-ref-apikey", cast.vaults["kv-consumers-prd"].base_url)});
    consumers.set(
        "Orders:ApiKeyRef",
        Some("prd"),
        &reference.to_string(),
        Some(KEY_VAULT_REF_CONTENT_TYPE),
        false,
    );
    consumers.set("Locked:ApiKey", None, &expired[APP2], None, true);
    let partners = &cast.app_configs["appcs-partners"];
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
fn seed_sites(cast: &Cast, current: &BTreeMap<&str, String>, expired: &BTreeMap<&str, String>) {
    use super::resource_manager::SiteType;
    let arm = &cast.resource_manager;
    let consumers = &cast.vaults["kv-consumers-prd"];
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
        ],
        "keyChecks": [
            {"apimAppName": APP1, "url": format!("{}/healthcheck/v1/ping", endpoints.api_gateway.trim_end_matches('/')), "header": "x-apikey"}
        ]
    })
}

/// The company-details plaintext: Apigee X in the sandbox, with the service-account key.
pub(crate) fn company_details(cast: &Cast) -> serde_json::Value {
    let apigee = &cast.apigee;
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

        let details = company_details(&h.sandbox.cast);
        assert_eq!(
            details["issuer"]["serviceAccountKey"]["token_uri"],
            format!("{}/token", h.sandbox.info().endpoints.apigee)
        );
        assert_eq!(details["boundTo"]["siteName"], h.env("WEBSITE_SITE_NAME"));
        h.sandbox.shutdown().await;
    }
}

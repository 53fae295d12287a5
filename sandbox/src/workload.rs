//! A bulk workload in place of the demo data, for the benchmark and the request-count test:
//! `apps` Apigee apps with three targets each, of mixed kinds, in a fixed pattern — some keys
//! inside the renewal window, some stores stale or empty, most everything current — and what a
//! minimal run over it must send (the [`Workload`] written to `sandbox.json`).
//!
//! App `i` (`bench-app-00042`) has, in order:
//! 1. a Key Vault secret in `kv-consumers-prd` (even `i`) or `kv-partners-prd` (odd `i`);
//! 2. an App Configuration key in `appcs-consumers` (Entra ID, even `i`) or `appcs-partners`
//!    (HMAC, odd `i`), label `bench`;
//! 3. by `i % 4`: a setting of a Function App, of a Web App, of a Static Web App (ten apps'
//!    settings per site), or its key in the application API.
//!
//! Its key is renewed when `i % 19 == 0` (it expires in 10 days, inside the 45-day window);
//! every 10th secret and App Configuration key holds an older key, every 50th secret is
//! missing, and every 29th third target holds an older key. Everything else is current.

use super::application_api::StoredKey;
use super::demo::{Cast, APPCS_PARTNERS_SETTING, APP_CONFIG_STORES, SUBSCRIPTION, VAULTS};
use super::resource_manager::SiteType;
use super::{now_ms, random_alphanumeric, Endpoints};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const DAY_MS: i64 = 86_400_000;

/// A workload sandbox enforces the services' published limits unless told otherwise
/// (`SandboxOptions::throttling`, `--limits`): a bulk run is where they set the pace.
pub const THROTTLING: super::Throttling = super::Throttling::PUBLISHED;
/// The product every workload key is approved for.
const PRODUCT: &str = "orders-product";
/// Apps whose settings share one site.
const APPS_PER_SITE: usize = 10;
const RESOURCE_GROUP: &str = "rg-bench";
const LABEL: &str = "bench";

/// What a seeded workload holds, and the requests a minimal run over it sends.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// API-manager apps: one issuer read each.
    pub apps: usize,
    /// Apps whose key the run renews: one key creation each (create, add products: two Apigee
    /// calls; the workload's product has `approvalType: auto`, so nothing is left to approve).
    pub renewals: usize,
    /// Mapped targets (secrets, key-values, settings, application-API keys).
    pub targets: usize,
    /// Targets the run writes: the renewed apps' targets and the stale or missing ones.
    pub stale_targets: usize,
    /// Sites (Function Apps, Web Apps, Static Web Apps): one settings list each.
    pub sites: usize,
    /// Sites with at least one stale setting: one settings PUT each.
    pub stale_sites: usize,
    /// Reads a minimal run sends: one per app (issuer), one per target outside sites, one
    /// list per site.
    pub reads: usize,
    /// Writes a minimal run sends: two Apigee calls per renewal, one per stale target outside
    /// sites, one PUT per stale site.
    pub writes: usize,
    /// Tokens a run needs, one per audience: Apigee's, and the managed identity's for Key
    /// Vault, App Configuration, Resource Manager and the application API.
    pub audiences: usize,
    /// Vaults: the first request to each meets Key Vault's authentication challenge (a 401).
    pub vaults: usize,
}

impl Workload {
    /// The request count of a minimal first run in a fresh process: reads, writes, one token
    /// per audience and one challenge per vault.
    pub fn requests(&self) -> usize {
        self.reads + self.writes + self.audiences + self.vaults
    }
}

/// The name of workload app `i`.
pub fn app_name(i: usize) -> String {
    format!("bench-app-{i:05}")
}

fn renewed(i: usize) -> bool {
    i.is_multiple_of(19)
}

/// The kind of app `i`'s third target (`None`: the application API).
fn third_kind(i: usize) -> Option<SiteType> {
    match i % 4 {
        0 => Some(SiteType::FunctionApp),
        1 => Some(SiteType::WebApp),
        2 => Some(SiteType::StaticSite),
        _ => None,
    }
}

/// The site holding app `i`'s setting.
fn site_name(i: usize, kind: SiteType) -> String {
    let prefix = match kind {
        SiteType::FunctionApp => "func",
        SiteType::WebApp => "web",
        SiteType::StaticSite => "swa",
    };
    format!("bench-{prefix}-{:04}", i / 4 / APPS_PER_SITE)
}

fn setting_name(i: usize) -> String {
    format!("BENCH_APP_{i:05}_API_KEY")
}

fn secret_name(i: usize) -> String {
    format!("{}-apikey", app_name(i))
}

fn config_key(i: usize) -> String {
    format!("Bench:{i:05}:ApiKey")
}

/// A site being seeded: its type, its settings, and whether the run must write one.
struct Site {
    kind: SiteType,
    settings: Vec<(String, String)>,
    stale: bool,
}

/// Seeds `apps` workload apps and their targets; returns what a minimal run must send.
pub(crate) fn seed(cast: &Cast, apps: usize) -> Workload {
    let now = now_ms();
    let mut w = Workload {
        apps,
        targets: 3 * apps,
        reads: apps,
        audiences: 5,
        vaults: VAULTS.len(),
        ..Workload::default()
    };
    let mut sites: std::collections::BTreeMap<String, Site> = Default::default();
    for i in 0..apps {
        let app = app_name(i);
        cast.apigee.add_app(&app);
        let old = random_alphanumeric(32);
        cast.apigee
            .add_key(&app, &old, now - 200 * DAY_MS, now - DAY_MS, &[PRODUCT]);
        let key = random_alphanumeric(32);
        let renew = renewed(i);
        let days = if renew { 10 } else { 200 };
        cast.apigee.add_key(
            &app,
            &key,
            now - 80 * DAY_MS,
            now + days * DAY_MS,
            &[PRODUCT],
        );
        if renew {
            w.renewals += 1;
            w.writes += 2;
        }
        let held = |stale: bool| if stale { &old } else { &key };

        let vault = &cast.vaults[VAULTS[i % 2]];
        let secret_stale = i % 10 == 5;
        if i % 50 != 7 {
            vault.set(&secret_name(i), held(secret_stale));
        }
        let secret_written = renew || secret_stale || i % 50 == 7;

        let store = &cast.app_configs[APP_CONFIG_STORES[i % 2]];
        let config_stale = i % 10 == 3;
        store.set(&config_key(i), Some(LABEL), held(config_stale), None, false);
        let config_written = renew || config_stale;
        w.reads += 2;
        w.writes += usize::from(secret_written) + usize::from(config_written);
        w.stale_targets += usize::from(secret_written) + usize::from(config_written);

        let third_stale = i % 29 == 11;
        let third_written = renew || third_stale;
        w.stale_targets += usize::from(third_written);
        match third_kind(i) {
            Some(kind) => {
                let site = sites.entry(site_name(i, kind)).or_insert_with(|| Site {
                    kind,
                    settings: Vec::new(),
                    stale: false,
                });
                site.settings
                    .push((setting_name(i), held(third_stale).clone()));
                site.stale |= third_written;
            }
            None => {
                cast.application_api.put(
                    &app,
                    StoredKey {
                        apim_app_name: app.clone(),
                        api_key: held(third_stale).clone(),
                        expires_at: None,
                    },
                );
                w.reads += 1;
                w.writes += usize::from(third_written);
            }
        }
    }
    for (name, site) in &sites {
        let mut all: Vec<(&str, &str)> = vec![("FUNCTIONS_WORKER_RUNTIME", "custom")];
        all.extend(site.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cast.resource_manager
            .add_site(SUBSCRIPTION, RESOURCE_GROUP, site.kind, name, None, &all);
        w.sites += 1;
        w.reads += 1;
        if site.stale {
            w.stale_sites += 1;
            w.writes += 1;
        }
    }
    w
}

/// The apps mapping of a workload of `apps` apps over the sandbox's URLs.
pub(crate) fn mapping(endpoints: &Endpoints, apps: usize) -> Value {
    let auth = json!({"type": "managedIdentity", "scope": format!("{}/.default", super::application_api::AUDIENCE)});
    let mut secrets = [Vec::new(), Vec::new()];
    let mut keys = [Vec::new(), Vec::new()];
    let mut application_apis = Vec::new();
    // Section -> site -> settings, in site order.
    let mut sections: [std::collections::BTreeMap<String, Vec<Value>>; 3] = Default::default();
    for i in 0..apps {
        let app = app_name(i);
        secrets[i % 2].push(json!({"secretName": secret_name(i), "apimAppName": app}));
        keys[i % 2].push(json!({"key": config_key(i), "label": LABEL, "apimAppName": app}));
        match third_kind(i) {
            Some(kind) => {
                let section = match kind {
                    SiteType::FunctionApp => 0,
                    SiteType::WebApp => 1,
                    SiteType::StaticSite => 2,
                };
                sections[section]
                    .entry(site_name(i, kind))
                    .or_default()
                    .push(json!({"settingName": setting_name(i), "apimAppName": app}));
            }
            None => application_apis.push(json!({
                "httpURL": endpoints.application_apis["referenceapi-prd"],
                "appName": app, "apimAppName": app, "auth": auth,
            })),
        }
    }
    let [secrets0, secrets1] = secrets;
    let [keys0, keys1] = keys;
    let sites = |section: &std::collections::BTreeMap<String, Vec<Value>>| -> Vec<Value> {
        section
            .iter()
            .map(|(name, settings)| {
                json!({"subscriptionId": SUBSCRIPTION, "resourceGroup": RESOURCE_GROUP,
                       "name": name, "settings": settings})
            })
            .collect()
    };
    json!({
        "_readme": format!("Workload of {apps} apps generated by apikey-rotator sandbox --workload."),
        "keyVault": [
            {"vaultUrl": endpoints.key_vaults[VAULTS[0]], "secrets": secrets0},
            {"vaultUrl": endpoints.key_vaults[VAULTS[1]], "secrets": secrets1}
        ],
        "appConfiguration": [
            {"endpoint": endpoints.app_configurations[APP_CONFIG_STORES[0]]["endpoint"], "keys": keys0},
            {"endpoint": endpoints.app_configurations[APP_CONFIG_STORES[1]]["endpoint"],
             "connectionStringSetting": APPCS_PARTNERS_SETTING, "keys": keys1}
        ],
        "functionApps": sites(&sections[0]),
        "webApps": sites(&sections[1]),
        "staticWebApps": sites(&sections[2]),
        "applicationApis": application_apis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts follow the pattern: at 100 apps, 6 renewals (0, 19, …, 95), 300 targets, 25
    /// application-API keys, sites of ten settings.
    #[test]
    fn counts_follow_the_pattern() {
        let renewals = (0..100).filter(|i| renewed(*i)).count();
        assert_eq!(renewals, 6);
        let apis = (0..100).filter(|i| third_kind(*i).is_none()).count();
        assert_eq!(apis, 25);
        assert_eq!(site_name(0, SiteType::FunctionApp), "bench-func-0000");
        assert_eq!(site_name(39, SiteType::WebApp), "bench-web-0000");
        assert_eq!(site_name(40, SiteType::FunctionApp), "bench-func-0001");
    }
}

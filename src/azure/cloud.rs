//! Cloud selection: public, China, US Government, or a custom set of endpoints (the sandbox).

use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// The endpoints of one Azure cloud that the rotator talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    /// `public`, `china`, `usgovernment` or `custom`.
    pub name: String,
    /// Entra ID authority host, e.g. `https://login.microsoftonline.com`.
    pub authority_host: String,
    /// Azure Resource Manager endpoint, e.g. `https://management.azure.com`.
    pub resource_manager: String,
    /// DNS suffix of Key Vault hosts, e.g. `vault.azure.net`.
    pub key_vault_suffix: String,
    /// Whether the Key Vault client checks that a challenge's resource matches the vault host;
    /// off only for custom clouds whose vaults are not under the suffix (the loopback sandbox).
    pub verify_key_vault_challenge: bool,
    /// DNS suffixes of App Configuration stores, e.g. `azconfig.io` and `appconfig.azure.com`.
    pub app_configuration_suffixes: Vec<String>,
    /// The Microsoft.Web api-version of every app-settings call ([`WEB_API_VERSION`] unless
    /// [`WEB_API_VERSION_SETTING`] overrides it).
    pub web_api_version: String,
}

/// The Microsoft.Web api-version used in every cloud by default. Sovereign clouds (China, US
/// Government) get new Resource Manager versions months after the public cloud, and a version a
/// cloud does not serve fails every call there, so the default is not the newest stable version
/// (2026-03-15) but an older stable one that every supported cloud serves; the app-settings
/// operations the rotator uses (list, replace, their slot and static-site forms) are the same in
/// both. A deployment that needs another sets [`WEB_API_VERSION_SETTING`].
pub const WEB_API_VERSION: &str = "2023-12-01";

/// Setting that overrides [`WEB_API_VERSION`] (`YYYY-MM-DD`, optionally `-preview`).
pub const WEB_API_VERSION_SETTING: &str = "AZURE_WEB_API_VERSION";

/// Setting that selects the cloud.
pub const CLOUD_SETTING: &str = "AZURE_CLOUD";

impl Cloud {
    /// The Azure public cloud.
    pub fn public() -> Self {
        Self::known(
            "public",
            "https://login.microsoftonline.com",
            "https://management.azure.com",
            "vault.azure.net",
            &["azconfig.io", "appconfig.azure.com"],
        )
    }

    /// Azure operated by 21Vianet (China).
    pub fn china() -> Self {
        Self::known(
            "china",
            "https://login.chinacloudapi.cn",
            "https://management.chinacloudapi.cn",
            "vault.azure.cn",
            &["azconfig.azure.cn"],
        )
    }

    /// Azure US Government.
    pub fn us_government() -> Self {
        Self::known(
            "usgovernment",
            "https://login.microsoftonline.us",
            "https://management.usgovcloudapi.net",
            "vault.usgovcloudapi.net",
            &["azconfig.azure.us"],
        )
    }

    fn known(name: &str, authority: &str, arm: &str, kv: &str, appcs: &[&str]) -> Self {
        Self {
            name: name.into(),
            authority_host: authority.into(),
            resource_manager: arm.into(),
            key_vault_suffix: kv.into(),
            app_configuration_suffixes: appcs.iter().map(|s| s.to_string()).collect(),
            verify_key_vault_challenge: true,
            web_api_version: WEB_API_VERSION.into(),
        }
    }

    /// Reads `AZURE_CLOUD` (`public` by default) and, for `custom`, `AZURE_AUTHORITY_HOST`,
    /// `AZURE_RESOURCE_MANAGER_ENDPOINT` and `AZURE_KEYVAULT_DNS_SUFFIX`.
    /// `AZURE_WEB_API_VERSION` overrides the Microsoft.Web api-version in any cloud.
    pub fn from_settings(env: &BTreeMap<String, String>) -> Result<Self> {
        let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut cloud = Self::endpoints_from_settings(env)?;
        if let Some(v) = get(WEB_API_VERSION_SETTING) {
            if !is_api_version(v) {
                return Err(Error::config(format!(
                    "{WEB_API_VERSION_SETTING}: \"{v}\" is not an api-version; expected YYYY-MM-DD (e.g. {WEB_API_VERSION}), optionally with -preview"
                )));
            }
            cloud.web_api_version = v.to_string();
        }
        Ok(cloud)
    }

    fn endpoints_from_settings(env: &BTreeMap<String, String>) -> Result<Self> {
        let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        match get(CLOUD_SETTING).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("public") | Some("azurepublic") | Some("azurecloud") => Ok(Self::public()),
            Some("china") | Some("azurechina") | Some("azurechinacloud") => Ok(Self::china()),
            Some("usgovernment") | Some("azureusgovernment") | Some("azureusgovernmentcloud") => Ok(Self::us_government()),
            Some("custom") => {
                let need = |k: &str| -> Result<String> {
                    let v = get(k).ok_or_else(|| {
                        Error::config(format!("{k}: required when {CLOUD_SETTING}=custom (an https URL)"))
                    })?;
                    let url = url::Url::parse(v)
                        .map_err(|e| Error::config(format!("{k}: not a URL ({e}); expected an https URL")))?;
                    if url.scheme() != "https" {
                        return Err(Error::config(format!("{k}: expected an https URL, got {}", url.scheme())));
                    }
                    Ok(v.trim_end_matches('/').to_string())
                };
                let suffix = |k: &str, default: &str| suffix_value(k, get(k).unwrap_or(default), default);
                Ok(Self {
                    name: "custom".into(),
                    authority_host: need("AZURE_AUTHORITY_HOST")?,
                    resource_manager: need("AZURE_RESOURCE_MANAGER_ENDPOINT")?,
                    key_vault_suffix: suffix("AZURE_KEYVAULT_DNS_SUFFIX", "vault.azure.net")?,
                    app_configuration_suffixes: get(APP_CONFIGURATION_SUFFIX_SETTING)
                        .unwrap_or("azconfig.io")
                        .split(',')
                        .map(|one| suffix_value(APP_CONFIGURATION_SUFFIX_SETTING, one.trim(), "azconfig.io"))
                        .collect::<Result<_>>()?,
                    verify_key_vault_challenge: false,
                    web_api_version: WEB_API_VERSION.into(),
                })
            }
            Some(other) => Err(Error::config(format!(
                "{CLOUD_SETTING}: unknown cloud \"{other}\"; expected public, china, usgovernment or custom"
            ))),
        }
    }

    /// Whether `url` is a vault of this cloud (its host is the Key Vault suffix or under it):
    /// the only hosts that receive the rotator's Key Vault token.
    pub fn is_key_vault(&self, url: &url::Url) -> bool {
        in_domain(url, &self.key_vault_suffix)
    }

    /// Whether `url` is an App Configuration store of this cloud: the only hosts that receive
    /// the rotator's App Configuration token.
    pub fn is_app_configuration(&self, url: &url::Url) -> bool {
        self.app_configuration_suffixes
            .iter()
            .any(|suffix| in_domain(url, suffix))
    }

    /// Why `scope` may not be asked for on behalf of an application API, if it may not: it is an
    /// audience of a service the rotator itself holds roles on (Resource Manager, Key Vault, App
    /// Configuration, Storage, Microsoft Graph, in any cloud, or this cloud's own endpoints), so
    /// the token would let the application act as the rotator there.
    pub fn protected_audience(&self, scope: &str) -> Option<&'static str> {
        let audience = scope
            .trim()
            .trim_end_matches("/.default")
            .trim_end_matches('/')
            .to_ascii_lowercase();
        let bare = audience.strip_prefix("api://").unwrap_or(&audience);
        if let Some((_, service)) = PROTECTED_APP_IDS.iter().find(|(id, _)| *id == bare) {
            return Some(service);
        }
        let host = match url::Url::parse(&audience) {
            Ok(u) if u.scheme() != "api" => u.host_str().map(str::to_string),
            _ => None,
        }?;
        let own = [
            (host_of(&self.resource_manager), "Resource Manager"),
            (Some(self.key_vault_suffix.clone()), "Key Vault"),
        ]
        .into_iter()
        .chain(
            self.app_configuration_suffixes
                .iter()
                .map(|s| (Some(s.clone()), "App Configuration")),
        );
        let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
        PROTECTED_DOMAINS
            .iter()
            .map(|(d, s)| (Some(d.to_string()), *s))
            .chain(own)
            .find_map(|(d, s)| d.filter(|d| under(d)).map(|_| s))
    }

    /// The base URL of the vault called `name` in this cloud.
    pub fn vault_url(&self, name: &str) -> String {
        format!("https://{name}.{}/", self.key_vault_suffix)
    }
}

/// Setting with a custom cloud's App Configuration DNS suffixes, comma-separated (default
/// `azconfig.io`).
pub const APP_CONFIGURATION_SUFFIX_SETTING: &str = "AZURE_APPCONFIGURATION_DNS_SUFFIX";

/// Domains of the token audiences of services the rotator holds roles on, in every Azure cloud.
const PROTECTED_DOMAINS: [(&str, &str); 22] = [
    ("management.azure.com", "Resource Manager"),
    ("management.core.windows.net", "Resource Manager"),
    ("management.chinacloudapi.cn", "Resource Manager"),
    ("management.core.chinacloudapi.cn", "Resource Manager"),
    ("management.usgovcloudapi.net", "Resource Manager"),
    ("management.core.usgovcloudapi.net", "Resource Manager"),
    ("vault.azure.net", "Key Vault"),
    ("vault.azure.cn", "Key Vault"),
    ("vault.usgovcloudapi.net", "Key Vault"),
    ("managedhsm.azure.net", "Key Vault"),
    ("azconfig.io", "App Configuration"),
    ("appconfig.azure.com", "App Configuration"),
    ("azconfig.azure.cn", "App Configuration"),
    ("azconfig.azure.us", "App Configuration"),
    ("storage.azure.com", "Storage"),
    ("core.windows.net", "Storage"),
    ("core.chinacloudapi.cn", "Storage"),
    ("core.usgovcloudapi.net", "Storage"),
    ("graph.microsoft.com", "Microsoft Graph"),
    ("graph.windows.net", "Microsoft Graph"),
    ("microsoftgraph.chinacloudapi.cn", "Microsoft Graph"),
    ("graph.microsoft.us", "Microsoft Graph"),
];

/// The well-known application ids of the same services (a scope may name them instead).
const PROTECTED_APP_IDS: [(&str, &str); 5] = [
    ("797f4846-ba00-4fd7-ba43-dac1f8f63013", "Resource Manager"),
    ("cfa8b339-82a2-471a-a3c9-0fc0be7a4093", "Key Vault"),
    ("35ffadb3-7fc1-497e-b61b-381d28e744cc", "App Configuration"),
    ("e406a681-f3d4-42a8-90b6-c2b029497af1", "Storage"),
    ("00000003-0000-0000-c000-000000000000", "Microsoft Graph"),
];

/// A DNS suffix (or a host) as a custom cloud declares it in setting `k`.
fn suffix_value(k: &str, v: &str, example: &str) -> Result<String> {
    let v = v.trim().trim_start_matches('.').to_ascii_lowercase();
    if v.is_empty() || v.contains(['/', ':', ' ']) {
        return Err(Error::config(format!(
            "{k}: expected a DNS suffix or host such as {example}"
        )));
    }
    Ok(v)
}

fn host_of(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .host_str()
        .map(str::to_ascii_lowercase)
}

/// Whether `url`'s host is `domain` or a name under it.
fn in_domain(url: &url::Url, domain: &str) -> bool {
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let domain = domain.trim_start_matches('.').to_ascii_lowercase();
    host == domain || host.ends_with(&format!(".{domain}"))
}

/// `YYYY-MM-DD` with an optional `-preview`, as Resource Manager spells its versions.
fn is_api_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let parts: Vec<&str> = date.split('-').collect();
    parts.len() == 3
        && [4, 2, 2]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vaults and stores are recognised by the cloud's suffixes; a custom cloud declares its own.
    #[test]
    fn service_domains() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        let public = Cloud::public();
        assert!(public.is_key_vault(&url("https://kv1.vault.azure.net/")));
        assert!(!public.is_key_vault(&url("https://kv1.vault.azure.net.evil.example/")));
        assert!(!public.is_key_vault(&url("https://evilvault.azure.net/")));
        assert!(public.is_app_configuration(&url("https://appcs.azconfig.io")));
        assert!(!public.is_app_configuration(&url("https://appcs.azconfig.azure.cn")));
        assert!(Cloud::china().is_app_configuration(&url("https://appcs.azconfig.azure.cn")));
        let custom = Cloud::from_settings(&env(&[
            ("AZURE_CLOUD", "custom"),
            ("AZURE_AUTHORITY_HOST", "https://127.0.0.1:1"),
            ("AZURE_RESOURCE_MANAGER_ENDPOINT", "https://127.0.0.1:2"),
            ("AZURE_KEYVAULT_DNS_SUFFIX", "127.0.0.1"),
            (APP_CONFIGURATION_SUFFIX_SETTING, "appcs.contoso.test"),
        ]))
        .unwrap();
        assert!(custom.is_key_vault(&url("https://127.0.0.1:9443/")));
        assert!(custom.is_app_configuration(&url("https://one.appcs.contoso.test")));
        assert!(!custom.is_app_configuration(&url("https://one.azconfig.io")));
        let e = Cloud::from_settings(&env(&[
            ("AZURE_CLOUD", "custom"),
            ("AZURE_AUTHORITY_HOST", "https://127.0.0.1:1"),
            ("AZURE_RESOURCE_MANAGER_ENDPOINT", "https://127.0.0.1:2"),
            (APP_CONFIGURATION_SUFFIX_SETTING, "https://x"),
        ]))
        .unwrap_err();
        assert!(
            e.to_string().contains(APP_CONFIGURATION_SUFFIX_SETTING),
            "{e}"
        );
    }

    /// Audiences of what the rotator holds roles on are refused in every spelling; an
    /// application's own audience is not.
    #[test]
    fn protected_audiences() {
        let c = Cloud::public();
        for scope in [
            "https://management.azure.com/.default",
            "https://management.core.windows.net/",
            "https://MANAGEMENT.usgovcloudapi.net//.default",
            "https://vault.azure.net/.default",
            "https://kv1.vault.azure.net/.default",
            "https://azconfig.io/.default",
            "https://storage.azure.com/.default",
            "https://acct.blob.core.windows.net/.default",
            "https://graph.microsoft.com/.default",
            "00000003-0000-0000-c000-000000000000/.default",
            "api://797f4846-ba00-4fd7-ba43-dac1f8f63013/.default",
        ] {
            assert!(c.protected_audience(scope).is_some(), "{scope}");
        }
        for scope in [
            "api://7f3c9b1e-2d4a-4f6b-9c8e-1a2b3c4d5e6f/.default",
            "https://api.contoso.com/.default",
            "api://management.azure.com.contoso.com/.default",
        ] {
            assert_eq!(c.protected_audience(scope), None, "{scope}");
        }
        // A custom cloud's own Resource Manager is protected too.
        let custom = Cloud::from_settings(&env(&[
            ("AZURE_CLOUD", "custom"),
            ("AZURE_AUTHORITY_HOST", "https://127.0.0.1:1"),
            (
                "AZURE_RESOURCE_MANAGER_ENDPOINT",
                "https://arm.contoso.test",
            ),
        ]))
        .unwrap();
        assert_eq!(
            custom.protected_audience("https://arm.contoso.test/.default"),
            Some("Resource Manager")
        );
    }

    /// Every cloud defaults to the version all of them serve; the setting overrides it and is
    /// checked.
    #[test]
    fn web_api_version_per_cloud() {
        for cloud in ["public", "china", "usgovernment"] {
            let c = Cloud::from_settings(&env(&[("AZURE_CLOUD", cloud)])).unwrap();
            assert_eq!(c.web_api_version, WEB_API_VERSION, "{cloud}");
        }
        let c = Cloud::from_settings(&env(&[
            ("AZURE_CLOUD", "china"),
            (WEB_API_VERSION_SETTING, "2024-04-01"),
        ]))
        .unwrap();
        assert_eq!(c.web_api_version, "2024-04-01");
        assert!(
            Cloud::from_settings(&env(&[(WEB_API_VERSION_SETTING, "2026-03-01-preview")])).is_ok()
        );
        for bad in ["latest", "2024-4-01", "2024-04-01-beta", "2024/04/01"] {
            let e = Cloud::from_settings(&env(&[(WEB_API_VERSION_SETTING, bad)])).unwrap_err();
            assert!(e.to_string().contains(WEB_API_VERSION_SETTING), "{e}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_to_public() {
        let c = Cloud::from_settings(&env(&[])).unwrap();
        assert_eq!(c, Cloud::public());
        assert_eq!(c.vault_url("kv1"), "https://kv1.vault.azure.net/");
    }

    #[test]
    fn sovereign_clouds() {
        assert_eq!(
            Cloud::from_settings(&env(&[("AZURE_CLOUD", "China")]))
                .unwrap()
                .key_vault_suffix,
            "vault.azure.cn"
        );
        assert_eq!(
            Cloud::from_settings(&env(&[("AZURE_CLOUD", "usgovernment")]))
                .unwrap()
                .resource_manager,
            "https://management.usgovcloudapi.net"
        );
    }

    #[test]
    fn custom_requires_endpoints_and_names_them() {
        let e = Cloud::from_settings(&env(&[("AZURE_CLOUD", "custom")])).unwrap_err();
        assert!(e.to_string().contains("AZURE_AUTHORITY_HOST"), "{e}");
        let e = Cloud::from_settings(&env(&[
            ("AZURE_CLOUD", "custom"),
            ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:1"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("expected an https URL"), "{e}");
        let c = Cloud::from_settings(&env(&[
            ("AZURE_CLOUD", "custom"),
            ("AZURE_AUTHORITY_HOST", "https://127.0.0.1:1/"),
            ("AZURE_RESOURCE_MANAGER_ENDPOINT", "https://127.0.0.1:2"),
        ]))
        .unwrap();
        assert_eq!(c.authority_host, "https://127.0.0.1:1");
        assert!(!c.verify_key_vault_challenge);
    }

    #[test]
    fn unknown_cloud_is_an_error() {
        let e = Cloud::from_settings(&env(&[("AZURE_CLOUD", "mars")])).unwrap_err();
        assert!(e.to_string().contains("AZURE_CLOUD"));
    }
}

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
        )
    }

    /// Azure operated by 21Vianet (China).
    pub fn china() -> Self {
        Self::known(
            "china",
            "https://login.chinacloudapi.cn",
            "https://management.chinacloudapi.cn",
            "vault.azure.cn",
        )
    }

    /// Azure US Government.
    pub fn us_government() -> Self {
        Self::known(
            "usgovernment",
            "https://login.microsoftonline.us",
            "https://management.usgovcloudapi.net",
            "vault.usgovcloudapi.net",
        )
    }

    fn known(name: &str, authority: &str, arm: &str, kv: &str) -> Self {
        Self {
            name: name.into(),
            authority_host: authority.into(),
            resource_manager: arm.into(),
            key_vault_suffix: kv.into(),
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
                Ok(Self {
                    name: "custom".into(),
                    authority_host: need("AZURE_AUTHORITY_HOST")?,
                    resource_manager: need("AZURE_RESOURCE_MANAGER_ENDPOINT")?,
                    key_vault_suffix: get("AZURE_KEYVAULT_DNS_SUFFIX").unwrap_or("vault.azure.net").to_string(),
                    verify_key_vault_challenge: false,
                    web_api_version: WEB_API_VERSION.into(),
                })
            }
            Some(other) => Err(Error::config(format!(
                "{CLOUD_SETTING}: unknown cloud \"{other}\"; expected public, china, usgovernment or custom"
            ))),
        }
    }

    /// The base URL of the vault called `name` in this cloud.
    pub fn vault_url(&self, name: &str) -> String {
        format!("https://{name}.{}/", self.key_vault_suffix)
    }
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

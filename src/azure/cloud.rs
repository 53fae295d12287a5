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
}

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
        }
    }

    /// Reads `AZURE_CLOUD` (`public` by default) and, for `custom`, `AZURE_AUTHORITY_HOST`,
    /// `AZURE_RESOURCE_MANAGER_ENDPOINT` and `AZURE_KEYVAULT_DNS_SUFFIX`.
    pub fn from_settings(env: &BTreeMap<String, String>) -> Result<Self> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

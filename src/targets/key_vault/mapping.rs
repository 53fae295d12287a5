//! The `keyVault` section: a vault (by name or URL) and the secrets in it that hold keys.

use crate::mapping::walk::{index, join, name, plain_url, Place, Walked, Walker};
use crate::mapping::Group;
use serde_json::Value;
use url::Url;

/// One `keyVault` entry: a vault and the secrets in it that hold keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVaultGroup {
    /// The vault's base URL: `vaultName` resolved with the cloud's Key Vault suffix, or
    /// `vaultUrl` as given; always ends with `/`.
    pub vault_url: url::Url,
    /// How reports name the vault: `vaultName`, or the URL's `host[:port]` when given by URL.
    pub vault_label: String,
    /// The secrets of this vault, never empty.
    pub secrets: Vec<SecretMapping>,
}

/// One secret that holds the key of an API-manager app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMapping {
    /// The secret's name in the vault.
    pub secret_name: String,
    /// The API-manager app whose key the secret holds.
    pub apim_app_name: String,
}

impl Group for KeyVaultGroup {
    fn apim_app_names(&self) -> Vec<&str> {
        self.secrets
            .iter()
            .map(|s| s.apim_app_name.as_str())
            .collect()
    }

    fn only_app(&self, apim_app_name: &str) -> Option<Self> {
        let secrets: Vec<_> = self
            .secrets
            .iter()
            .filter(|s| s.apim_app_name == apim_app_name)
            .cloned()
            .collect();
        (!secrets.is_empty()).then(|| KeyVaultGroup {
            secrets,
            ..self.clone()
        })
    }
}

/// How reports name a vault given by URL: the vault's name (the first label of its host), or
/// `host[:port]` for an IP address.
pub fn vault_label(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match (url.host(), url.port()) {
        (Some(url::Host::Domain(d)), _) if d.contains('.') => {
            d.split('.').next().unwrap_or(d).to_string()
        }
        (_, Some(port)) => format!("{host}:{port}"),
        (_, None) => host.to_string(),
    }
}

/// Reads one `keyVault` entry at `path`.
pub(super) fn read(w: &mut Walker, v: &Value, path: &str) -> Option<Walked> {
    let obj = w.fields(v, path, &["vaultName", "vaultUrl", "secrets"])?;
    let cloud = w.cloud();
    let vault = match (obj.get("vaultName"), obj.get("vaultUrl")) {
        (Some(_), Some(_)) => {
            w.error(path, "give either vaultName or vaultUrl, not both");
            None
        }
        (None, None) => {
            w.error(path, "vaultName or vaultUrl is required");
            None
        }
        (Some(name), None) => w.string(name, &join(path, "vaultName"), |s| {
            let name = vault_name(s)?;
            let url = Url::parse(&cloud.vault_url(&name)).map_err(|e| {
                format!("no vault URL can be made with the cloud's Key Vault suffix ({e})")
            })?;
            Ok((url, name))
        }),
        (None, Some(url)) => w.string(url, &join(path, "vaultUrl"), |s| {
            let (url, label) = vault_url(s)?;
            if !cloud.is_key_vault(&url) {
                return Err(format!(
                    "{} is not a vault of the {} cloud (expected a host under {}): the rotator sends its Key Vault token only to the cloud's vaults",
                    url.host_str().unwrap_or_default(),
                    cloud.name,
                    cloud.key_vault_suffix
                ));
            }
            Ok((url, label))
        }),
    };

    let secrets_path = join(path, "secrets");
    let secrets = w
        .required(obj, path, "secrets")
        .and_then(|v| w.array(v, &secrets_path));
    if secrets.is_some_and(|s| s.is_empty()) {
        w.error(
            &secrets_path,
            "must not be empty; expected at least one secret",
        );
    }
    let mut group_secrets = Vec::new();
    let mut secret_paths: Vec<String> = Vec::new();
    for (j, s) in secrets.into_iter().flatten().enumerate() {
        let p = index(&secrets_path, j);
        if let Some(secret) = secret(w, s, &p) {
            group_secrets.push(secret);
            secret_paths.push(p);
        }
    }
    let (vault_url, vault_label) = vault?;
    // Key Vault names are case-insensitive, so the same secret may be spelled two ways.
    let vault = vault_url.as_str().to_ascii_lowercase();
    let places = secret_paths
        .into_iter()
        .zip(&group_secrets)
        .map(|(p, s)| Place::new(p, vault.clone(), s.secret_name.to_ascii_lowercase()))
        .collect();
    Some(Walked::new(
        KeyVaultGroup {
            vault_url,
            vault_label,
            secrets: group_secrets,
        },
        places,
    ))
}

fn secret(w: &mut Walker, v: &Value, path: &str) -> Option<SecretMapping> {
    let obj = w.fields(v, path, &["secretName", "apimAppName"])?;
    let secret_name = w.required_string(obj, path, "secretName", secret_name);
    let apim_app_name = w.required_string(obj, path, "apimAppName", name);
    Some(SecretMapping {
        secret_name: secret_name?,
        apim_app_name: apim_app_name?,
    })
}

fn vault_name(s: &str) -> Result<String, String> {
    let ok = (3..=24).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "\"{s}\" is not a vault name; expected 3-24 letters, digits and hyphens, starting with a letter, \
             without consecutive hyphens or a trailing hyphen"
        ))
    }
}

fn secret_name(s: &str) -> Result<String, String> {
    if (1..=127).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(s.to_string())
    } else {
        Err(format!(
            "\"{s}\" is not a secret name; expected 1-127 letters, digits and hyphens"
        ))
    }
}

/// A vault's base URL and its label (the vault's name, the first label of its host, or
/// `host[:port]` for an IP address); the path is given a trailing `/`.
fn vault_url(s: &str) -> Result<(Url, String), String> {
    let mut url = plain_url(s)?;
    if url.scheme() != "https" {
        return Err(format!(
            "only https URLs are accepted for Key Vault, got {}://",
            url.scheme()
        ));
    }
    if url.query().is_some() {
        return Err("must not contain a query; expected the vault's base URL".into());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    let label = vault_label(&url);
    Ok((url, label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_urls_get_a_trailing_slash_and_a_host_label() {
        for (given, url, label) in [
            (
                "https://kv1.vault.azure.net",
                "https://kv1.vault.azure.net/",
                "kv1",
            ),
            (
                "https://127.0.0.1:9443/kv1",
                "https://127.0.0.1:9443/kv1/",
                "127.0.0.1:9443",
            ),
            ("https://[::1]:9443/", "https://[::1]:9443/", "[::1]:9443"),
        ] {
            let (u, l) = vault_url(given).unwrap();
            assert_eq!((u.as_str(), l.as_str()), (url, label));
        }
    }
}

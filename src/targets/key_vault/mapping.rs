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
    use crate::mapping::walk::tests::{one_problem_each, valid};
    use serde_json::json;

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

    /// Each case changes one thing in the mapping's shared valid case and expects exactly one
    /// problem.
    #[test]
    fn one_tweak_one_problem() {
        let long = "a".repeat(257);
        one_problem_each(
            &valid(),
            vec![
            ("/keyVault/0/vaultName", None, "keyVault[0]: vaultName or vaultUrl is required"),
            ("/keyVault/0/vaultUrl", Some(json!("https://x.vault.azure.net/")), "keyVault[0]: give either vaultName or vaultUrl, not both"),
            ("/keyVault/0/vaultName", Some(json!(7)), "keyVault[0].vaultName: expected a string, got number"),
            ("/keyVault/0/vaultName", Some(json!("kv")), "keyVault[0].vaultName: \"kv\" is not a vault name"),
            ("/keyVault/0/vaultName", Some(json!("a".repeat(25))), "keyVault[0].vaultName: \"aaaaaaaaaaaaaaaaaaaaaaaaa\" is not a vault name"),
            ("/keyVault/0/vaultName", Some(json!("1kv")), "keyVault[0].vaultName: \"1kv\" is not a vault name"),
            ("/keyVault/0/vaultName", Some(json!("kv--x")), "keyVault[0].vaultName: \"kv--x\" is not a vault name"),
            ("/keyVault/0/vaultName", Some(json!("kv-x-")), "keyVault[0].vaultName: \"kv-x-\" is not a vault name"),
            ("/keyVault/0/vaultName", Some(json!("kv_x")), "keyVault[0].vaultName: \"kv_x\" is not a vault name"),
            ("/keyVault/1/vaultUrl", Some(json!("http://kv.vault.azure.net/")), "keyVault[1].vaultUrl: only https URLs are accepted for Key Vault, got http://"),
            // Trust boundaries: the vault token goes only to the cloud's vaults.
            ("/keyVault/1/vaultUrl", Some(json!("https://127.0.0.1:8443/")), "keyVault[1].vaultUrl: 127.0.0.1 is not a vault of the public cloud (expected a host under vault.azure.net)"),
            ("/keyVault/1/vaultUrl", Some(json!("https://kv.vault.azure.net.capture.example/")), "keyVault[1].vaultUrl: kv.vault.azure.net.capture.example is not a vault of the public cloud"),
            ("/keyVault/1/vaultUrl", Some(json!("https://kv.vault.azure.cn/")), "keyVault[1].vaultUrl: kv.vault.azure.cn is not a vault of the public cloud"),
            ("/keyVault/1/vaultUrl", Some(json!("kv.vault.azure.net")), "keyVault[1].vaultUrl: not a URL (relative URL without a base)"),
            ("/keyVault/1/vaultUrl", Some(json!("https://kv.vault.azure.net/?x=1")), "keyVault[1].vaultUrl: must not contain a query; expected the vault's base URL"),
            ("/keyVault/1/vaultUrl", Some(json!("https://u:p@kv.vault.azure.net/")), "keyVault[1].vaultUrl: must not contain a user name or password"),
            ("/keyVault/0/secrets", None, "keyVault[0].secrets: required"),
            ("/keyVault/0/secrets", Some(json!([])), "keyVault[0].secrets: must not be empty; expected at least one secret"),
            ("/keyVault/0/secrets", Some(json!({})), "keyVault[0].secrets: expected an array, got object"),
            ("/keyVault/0/secrets/0", Some(json!("s")), "keyVault[0].secrets[0]: expected an object, got string"),
            ("/keyVault/0/secrets/0/secretName", None, "keyVault[0].secrets[0].secretName: required"),
            ("/keyVault/0/secrets/0/secretName", Some(json!("a_b")), "keyVault[0].secrets[0].secretName: \"a_b\" is not a secret name; expected 1-127 letters, digits and hyphens"),
            ("/keyVault/0/secrets/0/secretName", Some(json!("")), "keyVault[0].secrets[0].secretName: \"\" is not a secret name"),
            ("/keyVault/0/secrets/0/secretName", Some(json!("a".repeat(128))), "keyVault[0].secrets[0].secretName: \"aaaa"),
            ("/keyVault/0/secrets/0/apimAppName", None, "keyVault[0].secrets[0].apimAppName: required"),
            ("/keyVault/0/secrets/0/apimAppName", Some(json!(null)), "keyVault[0].secrets[0].apimAppName: expected a string, got null"),
            ("/keyVault/0/secrets/0/apimAppName", Some(json!("")), "keyVault[0].secrets[0].apimAppName: must not be empty"),
            ("/keyVault/0/secrets/0/apimAppName", Some(json!(long)), "keyVault[0].secrets[0].apimAppName: too long; expected at most 256 characters"),
            ("/keyVault/0/secrets/0/apimAppName", Some(json!(" App1")), "keyVault[0].secrets[0].apimAppName: \" App1\" has surrounding spaces"),
            ("/keyVault/0/secrets/0/apimappname", Some(json!("x")), "keyVault[0].secrets[0].apimappname: unknown field; did you mean apimAppName?"),
            ("/keyVault/0/region", Some(json!("x")), "keyVault[0].region: unknown field; expected vaultName, vaultUrl, secrets (fields starting with _ are comments)"),
            ("/keyVault", Some(json!({})), "keyVault: expected an array, got object"),
            ("/keyVault/0", Some(json!([])), "keyVault[0]: expected an object, got array"),
        ]);
    }
}

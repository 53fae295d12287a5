//! App Service Key Vault references in app settings:
//! `@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/n[/ver])` or
//! `@Microsoft.KeyVault(VaultName=v;SecretName=n[;SecretVersion=x])`.

use crate::azure::cloud::Cloud;
use crate::targets::SecretRef;

/// What an app setting's value is, as far as Key Vault references go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A plain value.
    Plain,
    /// A reference to this secret.
    Reference(SecretRef),
    /// It starts like a reference but cannot be read as one (what is wrong).
    Malformed(String),
}

/// Reads `value` as a Key Vault reference (keys case-insensitive, whitespace allowed around
/// keys, values and separators); `VaultName` is resolved with the cloud's Key Vault suffix.
pub fn parse(value: &str, cloud: &Cloud) -> Parsed {
    const PREFIX: &str = "@microsoft.keyvault(";
    let v = value.trim();
    if v.len() < PREFIX.len() || !v[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return Parsed::Plain;
    }
    let Some(inner) = v[PREFIX.len()..].strip_suffix(')') else {
        return Parsed::Malformed("the reference does not end with ')'".into());
    };
    let (mut uri, mut vault, mut secret, mut version) = (None, None, None, None);
    for part in inner.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, val)) = part.split_once('=') else {
            return Parsed::Malformed(format!("\"{part}\" is not key=value"));
        };
        let val = val.trim().to_string();
        match key.trim().to_ascii_lowercase().as_str() {
            "secreturi" => uri = Some(val),
            "vaultname" => vault = Some(val),
            "secretname" => secret = Some(val),
            "secretversion" => version = Some(val).filter(|v| !v.is_empty()),
            other => return Parsed::Malformed(format!("unknown key \"{other}\"")),
        }
    }
    match (uri, vault, secret) {
        (Some(uri), None, None) => match SecretRef::from_secret_uri(&uri) {
            Some(r) => Parsed::Reference(r),
            None => Parsed::Malformed("SecretUri is not a Key Vault secret URI".into()),
        },
        (None, Some(vault), Some(secret)) if !vault.is_empty() && !secret.is_empty() => {
            match url::Url::parse(&cloud.vault_url(&vault)) {
                Ok(vault_url) => Parsed::Reference(SecretRef {
                    vault_url,
                    secret_name: secret,
                    version,
                }),
                Err(e) => Parsed::Malformed(format!("no vault URL for \"{vault}\" ({e})")),
            }
        }
        _ => Parsed::Malformed(
            "expected SecretUri=..., or VaultName=...;SecretName=...[;SecretVersion=...]".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(v: &str) -> SecretRef {
        match parse(v, &Cloud::public()) {
            Parsed::Reference(r) => r,
            other => panic!("{v}: {other:?}"),
        }
    }

    /// Both syntaxes, any key case, optional whitespace and versions.
    #[test]
    fn both_forms() {
        let r = reference("@Microsoft.KeyVault(SecretUri=https://v1.vault.azure.net/secrets/n1/)");
        assert_eq!(
            (r.vault_url.as_str(), r.secret_name.as_str(), r.version),
            ("https://v1.vault.azure.net/", "n1", None)
        );
        let r = reference(
            "@microsoft.keyvault( secreturi = https://v1.vault.azure.net/secrets/n1/abc )",
        );
        assert_eq!(r.version.as_deref(), Some("abc"));
        let r = reference("@Microsoft.KeyVault(VaultName=myvault; SecretName=mysecret)");
        assert_eq!(
            (r.vault_url.as_str(), r.secret_name.as_str(), r.version),
            ("https://myvault.vault.azure.net/", "mysecret", None)
        );
        let r = reference("@MICROSOFT.KEYVAULT(vaultname=v;secretname=s;SECRETVERSION=7)");
        assert_eq!(r.version.as_deref(), Some("7"));
        let china = parse(
            "@Microsoft.KeyVault(VaultName=v;SecretName=s)",
            &Cloud::china(),
        );
        assert!(
            matches!(china, Parsed::Reference(r) if r.vault_url.as_str() == "https://v.vault.azure.cn/")
        );
    }

    /// Plain values are plain; broken references are reported, never treated as plain values.
    #[test]
    fn plain_and_malformed() {
        let cloud = Cloud::public();
        for v in [
            "abc",
            "",
            "@Microsoft.Other(x)",
            "Microsoft.KeyVault(SecretUri=x)",
        ] {
            assert_eq!(parse(v, &cloud), Parsed::Plain, "{v}");
        }
        for v in [
            "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/keys/k)",
            "@Microsoft.KeyVault(VaultName=v)",
            "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/n",
            "@Microsoft.KeyVault(Vault=v;SecretName=s)",
            "@Microsoft.KeyVault(VaultName=v;SecretName=s;SecretUri=https://v.vault.azure.net/secrets/n)",
        ] {
            assert!(matches!(parse(v, &cloud), Parsed::Malformed(_)), "{v}");
        }
    }
}

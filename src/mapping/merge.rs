//! Merging the parts: sections are concatenated in setting order, and a target named twice,
//! in one part or across parts, is reported at its second place with the first one named.

use super::walk::Part;
use super::{AppsMapping, MappingError};
use std::collections::HashMap;

/// Concatenates the walked parts `(setting, part)` in order, pushing duplicates onto `errors`.
pub(super) fn merge(parts: Vec<(&str, Part)>, errors: &mut Vec<MappingError>) -> AppsMapping {
    let mut mapping = AppsMapping::default();
    // Target identity -> "SETTING: path" of its first place.
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    let mut check = |setting: &str, path: String, key: (String, String)| {
        let here = format!("{setting}: {path}");
        match seen.get(&key) {
            Some(first) => {
                errors.push(MappingError {
                    setting: setting.to_string(),
                    path,
                    message: format!("duplicate of {first}"),
                });
                false
            }
            None => {
                seen.insert(key, here);
                true
            }
        }
    };
    for (setting, part) in parts {
        for entry in part.key_vault {
            // Key Vault names are case-insensitive, so the same secret may be spelled two ways.
            let vault = entry.group.vault_url.as_str().to_ascii_lowercase();
            let mut group = entry.group;
            let mut paths = entry.secret_paths.into_iter();
            group.secrets.retain(|s| {
                let path = paths.next().unwrap_or_default();
                check(
                    setting,
                    path,
                    (vault.clone(), s.secret_name.to_ascii_lowercase()),
                )
            });
            mapping.key_vault.push(group);
        }
        for (mut group, paths) in part.app_settings {
            // Function Apps and Web Apps are both Microsoft.Web/sites: the same site may be
            // named in either section, so they share one identity space; names are
            // case-insensitive in ARM.
            let scope = format!(
                "{}/{}/{}/{}/{}",
                if group.kind == super::SiteKind::StaticWebApp {
                    "staticSites"
                } else {
                    "sites"
                },
                group.subscription_id,
                group.resource_group,
                group.name,
                group.slot.as_deref().unwrap_or("")
            )
            .to_ascii_lowercase();
            let mut paths = paths.into_iter();
            group.settings.retain(|s| {
                let path = paths.next().unwrap_or_default();
                check(
                    setting,
                    path,
                    (scope.clone(), s.setting_name.to_ascii_lowercase()),
                )
            });
            mapping.app_settings.push(group);
        }
        for entry in part.app_configuration {
            let endpoint = entry.store.endpoint.as_str().to_ascii_lowercase();
            let mut store = entry.store;
            let mut paths = entry.key_paths.into_iter();
            store.keys.retain(|k| {
                let path = paths.next().unwrap_or_default();
                // Keys and labels are case-sensitive; the NUL keeps "a" + label "b" apart from others.
                let id = format!("appcs\0{}\0{}", k.key, k.label.as_deref().unwrap_or("\0"));
                check(setting, path, (endpoint.clone(), id))
            });
            mapping.app_configuration.push(store);
        }
        for (path, api) in part.application_apis {
            if check(
                setting,
                path,
                (api.http_url.to_string(), api.app_name.clone()),
            ) {
                mapping.application_apis.push(api);
            }
        }
    }
    mapping
}

#[cfg(test)]
mod tests {
    use super::super::{parse, MappingError};
    use crate::azure::cloud::Cloud;

    fn errors(texts: &[&str]) -> Vec<MappingError> {
        let parts: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("P{i}"), t.to_string()))
            .collect();
        parse(&parts, &Cloud::public(), &|_| true).unwrap_err().0
    }

    #[test]
    fn duplicate_secret_within_one_group_and_one_part() {
        let e = errors(&[r#"{"keyVault": [
            {"vaultName": "kv1", "secrets": [{"secretName": "a", "apimAppName": "X"}]},
            {"vaultUrl": "https://KV1.vault.azure.net/", "secrets": [
                {"secretName": "b", "apimAppName": "X"}, {"secretName": "A", "apimAppName": "Y"}]}]}"#]);
        assert_eq!(
            e,
            [MappingError {
                setting: "P0".into(),
                path: "keyVault[1].secrets[1]".into(),
                message: "duplicate of P0: keyVault[0].secrets[0]".into(),
            }]
        );
    }

    /// Same endpoint, key and label twice is a duplicate; another label (or none) is not.
    #[test]
    fn duplicate_key_values_compare_endpoint_key_and_label() {
        let store = |key: &str, label: Option<&str>| {
            let mut kv = serde_json::json!({"key": key, "apimAppName": "X"});
            if let Some(l) = label {
                kv["label"] = l.into();
            }
            serde_json::json!({"appConfiguration": [{"endpoint": "https://APPCS.azconfig.io", "keys": [kv]}]})
                .to_string()
        };
        let e = errors(&[
            &store("k", Some("prd")),
            &store("k", None),
            &store("K", Some("prd")),
            &store("k", Some("prd")),
        ]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].setting, "P3");
        assert_eq!(e[0].path, "appConfiguration[0].keys[0]");
        assert_eq!(e[0].message, "duplicate of P0: appConfiguration[0].keys[0]");
    }

    #[test]
    fn duplicate_api_compares_normalised_urls() {
        let api = |url: &str| {
            format!(
                r#"{{"applicationApis": [{{"httpURL": "{url}", "appName": "n", "apimAppName": "X"}}]}}"#
            )
        };
        let e = errors(&[
            &api("https://API.contoso.com:443/keys"),
            "{}",
            &api("https://api.contoso.com/keys"),
        ]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].setting, "P2");
        assert_eq!(e[0].message, "duplicate of P0: applicationApis[0]");
    }
}

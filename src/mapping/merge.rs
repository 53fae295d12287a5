//! Merging the parts: each kind's groups are concatenated in setting order, and a target named
//! twice, in one part or across parts, is reported at its second place with the first one named.
//!
//! Which targets are the same is each kind's rule: its [`Place`](super::walk::Place)s carry the
//! identity. Identities share one space, so the rule never depends on the order of kinds.

use super::walk::Part;
use super::{AppsMapping, MappingError};
use std::collections::HashMap;

/// Concatenates the walked parts `(setting, part)` in order, pushing duplicates onto `errors`.
///
/// A mapping with duplicates is never used (its errors are returned instead), so the groups are
/// kept whole.
pub(super) fn merge(parts: Vec<(&str, Part)>, errors: &mut Vec<MappingError>) -> AppsMapping {
    // Target identity -> "SETTING: path" of its first place.
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    // Each kind's groups, by the kind's index in the registry.
    let mut sections: Vec<Option<Box<dyn super::Groups>>> = Vec::new();
    for (setting, part) in parts {
        for (kind, walked) in part {
            for place in walked.places {
                match seen.get(&place.identity) {
                    Some(first) => errors.push(MappingError {
                        setting: setting.to_string(),
                        message: format!("duplicate of {first}"),
                        path: place.path,
                    }),
                    None => {
                        seen.insert(place.identity, format!("{setting}: {}", place.path));
                    }
                }
            }
            if sections.len() <= kind {
                sections.resize_with(kind + 1, || None);
            }
            match &mut sections[kind] {
                Some(groups) => groups.append(walked.groups),
                slot @ None => *slot = Some(walked.groups),
            }
        }
    }
    let mut mapping = AppsMapping::default();
    for groups in sections.into_iter().flatten() {
        mapping.append(groups);
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

    /// Duplicates are reported in setting and document order, whatever their kinds.
    #[test]
    fn duplicates_of_several_kinds_come_in_document_order() {
        let first = r#"{"applicationApis": [{"httpURL": "https://api.contoso.com/keys", "appName": "n", "apimAppName": "X"}],
            "keyVault": [{"vaultName": "kv1", "secrets": [{"secretName": "a", "apimAppName": "X"}]}]}"#;
        let e = errors(&[first, first]);
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["applicationApis[0]", "keyVault[0].secrets[0]"]);
    }
}

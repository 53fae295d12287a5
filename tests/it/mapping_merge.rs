//! Property tests of the `APIKEYROTATIONAPPS` merge (PRODUCT.md §5): a valid mapping split at
//! random over `APIKEYROTATIONAPPS`, `2` and `3` parses to the same targets, in the same order,
//! as the single merged document, and a problem placed in part k is reported against part k's
//! setting.

use apikey_rotator::azure::cloud::Cloud;
use apikey_rotator::mapping::{self, AppsMapping, MappingErrors};
use apikey_rotator::settings::MAPPING_SETTINGS;
use apikey_rotator::targets::app_configuration::AppConfigurationStore;
use apikey_rotator::targets::app_settings::SiteGroup;
use apikey_rotator::targets::application_api::ApplicationApiMapping;
use apikey_rotator::targets::key_vault::KeyVaultGroup;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// The sections in the order the merged document lists them.
const SECTIONS: [&str; 6] = [
    "keyVault",
    "applicationApis",
    "functionApps",
    "webApps",
    "staticWebApps",
    "appConfiguration",
];

/// App settings the generated mappings name (header auth, HMAC connection strings) are set.
fn setting_exists(name: &str) -> bool {
    name.starts_with("SET_") || name.starts_with("APPAPI_SECRET_")
}

fn parse(parts: &[(String, String)]) -> Result<AppsMapping, MappingErrors> {
    mapping::parse(parts, &Cloud::public(), &setting_exists)
}

/// One entry of a section, with the number of targets it holds.
#[derive(Debug, Clone)]
struct Entry {
    section: usize,
    value: Value,
    targets: usize,
}

fn apim() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "APIKeyRotator_TestApp1_Sandbox",
        "APIKeyRotator_TestApp2_Sandbox",
        "ApiKeyRotator_TestApp3_Sandbox",
        "Partner App 4",
    ])
    .prop_map(str::to_string)
}

fn guid() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).hyphenated().to_string())
}

/// An entry of section `section`; `i` makes its identity unique in the whole mapping.
fn entry(section: usize, i: usize) -> BoxedStrategy<Entry> {
    let n = 1..4usize;
    match SECTIONS[section] {
        "keyVault" => (any::<bool>(), prop::collection::vec(apim(), n))
            .prop_map(move |(by_url, apps)| {
                let secrets: Vec<_> = apps
                    .iter()
                    .enumerate()
                    .map(|(j, a)| json!({"secretName": format!("secret-{j}-apikey"), "apimAppName": a}))
                    .collect();
                let mut v = json!({"secrets": secrets});
                if by_url {
                    v["vaultUrl"] = json!(format!("https://kv-url-{i}.vault.azure.net/"));
                } else {
                    v["vaultName"] = json!(format!("kv-name-{i}"));
                }
                Entry { section, targets: apps.len(), value: v }
            })
            .boxed(),
        "applicationApis" => (apim(), 0..3u8)
            .prop_map(move |(app, auth)| {
                let mut v = json!({
                    "httpURL": format!("https://api{i}.contoso.com/internal/api-keys"),
                    "appName": format!("consumer-{i}"),
                    "apimAppName": app,
                });
                match auth {
                    0 => {}
                    1 => v["auth"] = json!({"type": "managedIdentity", "scope": format!("api://app-{i}/.default")}),
                    _ => v["auth"] = json!({"type": "header", "name": "x-admin-token", "valueSetting": format!("APPAPI_SECRET_TOKEN_{i}")}),
                }
                Entry { section, targets: 1, value: v }
            })
            .boxed(),
        kind @ ("functionApps" | "webApps" | "staticWebApps") => {
            let static_site = kind == "staticWebApps";
            (guid(), any::<bool>(), prop::collection::vec(apim(), n))
                .prop_map(move |(sub, slot, apps)| {
                    let settings: Vec<_> = apps
                        .iter()
                        .enumerate()
                        .map(|(j, a)| json!({"settingName": format!("KEY_{j}"), "apimAppName": a}))
                        .collect();
                    let mut v = json!({
                        "subscriptionId": sub,
                        "resourceGroup": format!("rg-{i}"),
                        "name": format!("site-{kind}-{i}").to_ascii_lowercase(),
                        "settings": settings,
                    });
                    if slot && !static_site {
                        v["slot"] = json!("staging");
                    }
                    Entry { section, targets: apps.len(), value: v }
                })
                .boxed()
        }
        _ => (any::<bool>(), prop::collection::vec((apim(), any::<bool>()), n))
            .prop_map(move |(hmac, keys)| {
                let kvs: Vec<_> = keys
                    .iter()
                    .enumerate()
                    .map(|(j, (a, label))| {
                        let mut k = json!({"key": format!("consumer:{j}:apikey"), "apimAppName": a});
                        if *label {
                            k["label"] = json!("prd");
                        }
                        k
                    })
                    .collect();
                let mut v = json!({"endpoint": format!("https://appcs-{i}.azconfig.io"), "keys": kvs});
                if hmac {
                    v["connectionStringSetting"] = json!(format!("SET_APPCS_{i}"));
                }
                Entry { section, targets: keys.len(), value: v }
            })
            .boxed(),
    }
}

/// A valid mapping as a list of entries (at least one), each with the part (0..parts) it goes to.
fn mapping_and_split() -> impl Strategy<Value = (usize, Vec<(usize, Entry)>)> {
    (1..=3usize, prop::collection::vec(0..SECTIONS.len(), 1..10)).prop_flat_map(
        |(parts, sections)| {
            let entries: Vec<_> = sections
                .into_iter()
                .enumerate()
                .map(|(i, s)| (0..parts, entry(s, i)))
                .collect();
            (Just(parts), entries)
        },
    )
}

/// The JSON text of part `k`: its entries grouped by section, sections in the order given.
fn part_doc(entries: &[(usize, Entry)], k: usize, order: &[usize]) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("_comment".into(), json!(format!("part {k}")));
    for &s in order {
        let values: Vec<_> = entries
            .iter()
            .filter(|(p, e)| *p == k && e.section == s)
            .map(|(_, e)| e.value.clone())
            .collect();
        if !values.is_empty() {
            doc.insert(SECTIONS[s].into(), Value::Array(values));
        }
    }
    doc
}

fn settings(docs: &[Map<String, Value>]) -> Vec<(String, String)> {
    docs.iter()
        .zip(MAPPING_SETTINGS)
        .map(|(d, s)| (s.to_string(), Value::Object(d.clone()).to_string()))
        .collect()
}

/// The section order of each part: a rotation of the canonical order, so parts list their
/// sections differently from each other and from the merged document.
fn orders(parts: usize, rotations: &[usize]) -> Vec<Vec<usize>> {
    (0..parts)
        .map(|k| {
            let mut o: Vec<usize> = (0..SECTIONS.len()).collect();
            o.rotate_left(rotations[k] % SECTIONS.len());
            o
        })
        .collect()
}

/// The site groups of the merged document reordered as the split lists them: by part, then by
/// the part's section order, then by their place in the mapping.
fn sites_in_split_order(
    merged: &AppsMapping,
    entries: &[(usize, Entry)],
    orders: &[Vec<usize>],
) -> Vec<SiteGroup> {
    // The merged document lists sites by section, then by place.
    let mut sites: Vec<(usize, usize, usize)> = Vec::new();
    for s in 2..5 {
        for (i, (p, e)) in entries.iter().enumerate() {
            if e.section == s {
                let rank = orders[*p].iter().position(|&x| x == s).unwrap();
                sites.push((*p, rank, i));
            }
        }
    }
    assert_eq!(sites.len(), merged.groups::<SiteGroup>().len());
    let mut paired: Vec<_> = sites
        .into_iter()
        .zip(merged.groups::<SiteGroup>().to_vec())
        .collect();
    paired.sort_by_key(|(key, _)| *key);
    paired.into_iter().map(|(_, g)| g).collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Failures print their minimal input; nothing is written next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Splitting a mapping over 1-3 settings changes nothing: the same targets in the same order
    /// (sections concatenated in setting order), and as many targets as the parts hold together.
    #[test]
    fn split_parses_like_the_merged_document(
        (parts, entries) in mapping_and_split(),
        rotations in prop::collection::vec(0..6usize, 3),
    ) {
        let orders = orders(parts, &rotations);
        // The merged document lists each section's entries in setting order, as the merge does.
        let mut entries = entries;
        entries.sort_by_key(|(p, _)| *p);
        let docs: Vec<_> = (0..parts).map(|k| part_doc(&entries, k, &orders[k])).collect();
        let split = parse(&settings(&docs)).unwrap_or_else(|e| panic!("{e}"));
        let all: Vec<_> = entries.iter().map(|(_, e)| (0, e.clone())).collect();
        let canonical: Vec<usize> = (0..SECTIONS.len()).collect();
        let merged = parse(&settings(&[part_doc(&all, 0, &canonical)])).unwrap_or_else(|e| panic!("{e}"));

        // Sections other than app settings are whole sections, so they concatenate exactly.
        prop_assert_eq!(split.groups::<KeyVaultGroup>(), merged.groups::<KeyVaultGroup>());
        prop_assert_eq!(split.groups::<ApplicationApiMapping>(), merged.groups::<ApplicationApiMapping>());
        prop_assert_eq!(split.groups::<AppConfigurationStore>(), merged.groups::<AppConfigurationStore>());
        let sites = sites_in_split_order(&merged, &entries, &orders);
        prop_assert_eq!(split.groups::<SiteGroup>(), sites.as_slice());
        prop_assert_eq!(split.apim_app_names().len(), merged.apim_app_names().len());

        let expected: usize = entries.iter().map(|(_, e)| e.targets).sum();
        prop_assert_eq!(split.target_count(), expected);
        prop_assert_eq!(merged.target_count(), expected);
        let per_part: usize = docs
            .iter()
            .map(|d| match parse(&settings(std::slice::from_ref(d))) {
                Ok(m) => m.target_count(),
                Err(e) => {
                    // Only an empty part fails alone, and only for naming no targets.
                    assert_eq!(e.0.len(), 1, "{e}");
                    assert!(e.0[0].message.contains("names no targets"), "{e}");
                    0
                }
            })
            .sum();
        prop_assert_eq!(split.target_count(), per_part);
    }

    /// A problem placed in part k (an unknown field in one of its entries, an unknown section, a
    /// duplicate of an earlier part's target, or text that is not JSON) is reported once, against
    /// part k's setting, with its path there; the other parts stay silent.
    #[test]
    fn errors_name_the_setting_of_their_part(
        (parts, entries) in mapping_and_split(),
        pick in any::<prop::sample::Index>(),
        problem in 0..4u8,
    ) {
        let canonical: Vec<usize> = (0..SECTIONS.len()).collect();
        let k = pick.index(parts);
        let mut docs: Vec<_> = (0..parts).map(|p| part_doc(&entries, p, &canonical)).collect();
        let mut texts: Vec<String> = Vec::new();
        let expected_path = match problem {
            0 => {
                // An unknown field in the part's first entry of its first section (when it has one).
                match docs[k].iter_mut().find_map(|(s, v)| v.as_array_mut().map(|a| (s.clone(), a))) {
                    Some((section, array)) => {
                        array[0]["secretNmae"] = json!("typo");
                        format!("{section}[0].secretNmae")
                    }
                    None => {
                        docs[k].insert("secretNmae".into(), json!([]));
                        "secretNmae".into()
                    }
                }
            }
            1 => {
                docs[k].insert("keyVaults".into(), json!([]));
                "keyVaults".into()
            }
            2 => {
                // A copy of the whole mapping's first entry, appended to its section in part k:
                // a duplicate of a target placed in the same or an earlier part.
                let (p0, first) = &entries[0];
                prop_assume!(*p0 <= k);
                let section = SECTIONS[first.section];
                let array = docs[k].entry(section).or_insert_with(|| json!([]));
                let array = array.as_array_mut().unwrap();
                array.push(first.value.clone());
                format!("{section}[{}]", array.len() - 1)
            }
            _ => "$".into(),
        };
        for (p, d) in docs.iter().enumerate() {
            let text = Value::Object(d.clone()).to_string();
            texts.push(if problem == 3 && p == k { text[..text.len() / 2].to_string() } else { text });
        }
        let settings: Vec<_> = texts
            .into_iter()
            .zip(MAPPING_SETTINGS)
            .map(|(t, s)| (s.to_string(), t))
            .collect();
        let errors = parse(&settings).expect_err("a problem was placed").0;
        let setting = MAPPING_SETTINGS[k];
        for e in &errors {
            prop_assert_eq!(&e.setting, setting, "{}", e);
        }
        if problem == 2 {
            // One error per target of the duplicated entry, each under its path.
            prop_assert_eq!(errors.len(), entries[0].1.targets);
            for e in &errors {
                prop_assert!(e.path.starts_with(&expected_path), "{}", e);
                prop_assert!(e.message.starts_with("duplicate of "), "{}", e);
            }
        } else {
            prop_assert_eq!(errors.len(), 1, "{:?}", errors);
            prop_assert_eq!(&errors[0].path, &expected_path);
        }
    }
}

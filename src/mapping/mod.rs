//! The apps mapping (PRODUCT.md §5): which stores hold a key, and which API-manager app issues it.
//!
//! This module is the generic envelope; it names no target kind. [`parse`] reads the mapping
//! settings (`APIKEYROTATIONAPPS`, then the `2` and `3` continuations), walks each one by hand
//! ([`walk`]), handing every section's entries to the kind that owns the section (the registry,
//! [`crate::targets::KINDS`]), so that every problem is reported at once with its JSON
//! path; then it concatenates the parts and rejects duplicate targets ([`merge`]). Each kind's
//! model, checks, duplicate rule and JSON Schema fragment live in its folder under
//! `src/targets/`; `schema/apikeyrotationapps.schema.json` is this envelope's fragment
//! (`schema.json` here) with every kind's merged in (a test checks it), and
//! `examples/sampleAppsMapReq.json` is a commented sample.

mod groups;
pub mod key_checks;
mod merge;
pub mod walk;

pub use groups::Group;
use groups::Groups;

use crate::azure::cloud::Cloud;
use std::fmt;

/// The envelope's JSON Schema fragment: everything but the kinds' sections and definitions.
pub const SCHEMA_ENVELOPE: &str = include_str!("schema.json");

/// The validated, merged apps mapping: every target, as groups of the kinds' own types
/// ([`Group`]), in setting order.
#[derive(Clone, Default)]
pub struct AppsMapping {
    /// One list of groups per kind that has any, in the registry's order when parsed (so the
    /// plan, and the report, list kinds in that order), in the order added by [`AppsMapping::with`].
    sections: Vec<Box<dyn Groups>>,
    /// The `keyChecks` entries, one per app at most (no target: see [`key_checks`]).
    key_checks: Vec<key_checks::KeyCheck>,
}

impl AppsMapping {
    /// The groups of type `G` (one kind's), in setting order; empty when there are none.
    pub fn groups<G: Group>(&self) -> &[G] {
        self.sections
            .iter()
            .find_map(|s| s.as_any().downcast_ref::<Vec<G>>())
            .map_or(&[], Vec::as_slice)
    }

    /// The mapping with `groups` appended to those of their kind.
    pub fn with<G: Group>(mut self, groups: impl IntoIterator<Item = G>) -> Self {
        self.append(Box::new(groups.into_iter().collect::<Vec<G>>()));
        self
    }

    /// The mapping with these key checks added (one per app; the parser checks that).
    pub fn with_key_checks(
        mut self,
        checks: impl IntoIterator<Item = key_checks::KeyCheck>,
    ) -> Self {
        self.key_checks.extend(checks);
        self
    }

    /// How to try a key of `apim_app_name` before it is distributed, if the mapping says.
    pub fn key_check(&self, apim_app_name: &str) -> Option<&key_checks::KeyCheck> {
        self.key_checks
            .iter()
            .find(|c| c.apim_app_name == apim_app_name)
    }

    /// Every key check, in setting and document order.
    pub fn key_checks(&self) -> &[key_checks::KeyCheck] {
        &self.key_checks
    }

    fn append(&mut self, groups: Box<dyn Groups>) {
        let id = (*groups.as_any()).type_id();
        match self
            .sections
            .iter_mut()
            .find(|s| (*s.as_any()).type_id() == id)
        {
            Some(known) => known.append(groups),
            None => self.sections.push(groups),
        }
    }

    fn non_empty(&self) -> impl Iterator<Item = &dyn Groups> {
        self.sections
            .iter()
            .map(|s| s.as_ref())
            .filter(|s| !s.is_empty())
    }

    /// The API-manager apps named by any target, each once, in first-seen order (kinds in the
    /// registry's order: Key Vault targets first, then application APIs, then app settings, then
    /// App Configuration).
    pub fn apim_app_names(&self) -> Vec<String> {
        // A set beside the list: tens of thousands of apps must not cost a scan each.
        let mut seen = std::collections::HashSet::new();
        let mut names: Vec<String> = Vec::new();
        for name in self.sections.iter().flat_map(|s| s.apim_app_names()) {
            if seen.insert(name) {
                names.push(name.to_string());
            }
        }
        names
    }

    /// The number of targets (secrets, application APIs, app settings, key-values, ...).
    pub fn target_count(&self) -> usize {
        self.sections.iter().map(|s| s.apim_app_names().len()).sum()
    }

    /// A mapping with only the targets of `apim_app_name`; groups left empty are dropped.
    pub fn only_app(&self, apim_app_name: &str) -> AppsMapping {
        AppsMapping {
            sections: self
                .sections
                .iter()
                .map(|s| s.only_app(apim_app_name))
                .filter(|s| !s.is_empty())
                .collect(),
            key_checks: self
                .key_checks
                .iter()
                .filter(|c| c.apim_app_name == apim_app_name)
                .cloned()
                .collect(),
        }
    }
}

/// Equal when every kind has the same groups (kinds without groups, and their order, do not count).
impl PartialEq for AppsMapping {
    fn eq(&self, other: &Self) -> bool {
        self.key_checks == other.key_checks
            && self.non_empty().count() == other.non_empty().count()
            && self
                .non_empty()
                .all(|s| other.non_empty().any(|o| s.eq_box(o)))
    }
}

impl Eq for AppsMapping {}

impl fmt::Debug for AppsMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        list.entries(self.non_empty());
        if !self.key_checks.is_empty() {
            list.entry(&self.key_checks);
        }
        list.finish()
    }
}

/// One problem in the mapping: the setting it is in, its JSON path there, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    /// The app setting (`APIKEYROTATIONAPPS`, `APIKEYROTATIONAPPS2`, ...).
    pub setting: String,
    /// The JSON path inside that setting (`keyVault[0].secrets[2].apimAppName`); `$` is the whole.
    pub path: String,
    /// What is wrong, and what is expected.
    pub message: String,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.setting, self.path, self.message)
    }
}

/// Every problem found in the mapping, in setting and document order; never empty when returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingErrors(pub Vec<MappingError>);

impl fmt::Display for MappingErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MappingErrors {}

impl From<MappingErrors> for crate::error::Error {
    fn from(e: MappingErrors) -> Self {
        crate::error::Error::config(e.to_string())
    }
}

/// Parses and merges the parts (setting name, JSON text) in order, validating everything and
/// reporting EVERY problem with its JSON path.
///
/// `setting_exists` tells whether an app setting is set; header auth and App Configuration
/// connection strings name one.
pub fn parse(
    parts: &[(String, String)],
    cloud: &Cloud,
    setting_exists: &dyn Fn(&str) -> bool,
) -> Result<AppsMapping, MappingErrors> {
    let Some((first, _)) = parts.first() else {
        return Err(MappingErrors(vec![MappingError {
            setting: crate::settings::MAPPING_SETTINGS[0].to_string(),
            path: "$".into(),
            message:
                "missing; expected the apps mapping as JSON (see examples/sampleAppsMapReq.json)"
                    .into(),
        }]));
    };
    let mut errors = Vec::new();
    let mut checks = Vec::new();
    let walked: Vec<_> = parts
        .iter()
        .map(|(setting, text)| {
            let mut walker = walk::Walker::new(setting, cloud, setting_exists);
            let part = walker.part(text);
            errors.append(&mut walker.errors);
            checks.push((setting.as_str(), std::mem::take(&mut walker.key_checks)));
            (setting.as_str(), part)
        })
        .collect();
    let mapping = merge::merge(walked, &mut errors);
    let checks = key_checks::merge(checks, &mapping.apim_app_names(), &mut errors);
    let mapping = mapping.with_key_checks(checks);
    // Only when all else is right: a mapping whose entries are all wrong is not also "empty".
    if errors.is_empty() && mapping.target_count() == 0 {
        errors.push(MappingError {
            setting: first.clone(),
            path: "$".into(),
            message: format!(
                "the mapping names no targets; expected at least one entry in {}",
                crate::targets::SECTIONS.join(" or ")
            ),
        });
    }
    if errors.is_empty() {
        Ok(mapping)
    } else {
        Err(MappingErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::app_configuration::AppConfigurationStore;
    use crate::targets::app_settings::{SiteGroup, SiteSection};
    use crate::targets::application_api::{ApiAuth, ApplicationApiMapping};
    use crate::targets::key_vault::KeyVaultGroup;
    use crate::targets::{KINDS, SECTIONS};
    use serde_json::json;

    const SAMPLE: &str = include_str!("../../examples/sampleAppsMapReq.json");
    const SCHEMA: &str = include_str!("../../schema/apikeyrotationapps.schema.json");
    const SAMPLE_HEADER_SETTING: &str = "APPAPI_SECRET_REFERENCEAPI_ADMIN_TOKEN";
    const SAMPLE_CS_SETTING: &str = "APPCS_PARTNERS_CONNECTION_STRING";

    fn parts(texts: &[&str]) -> Vec<(String, String)> {
        texts
            .iter()
            .zip(crate::settings::MAPPING_SETTINGS)
            .map(|(t, s)| (s.to_string(), t.to_string()))
            .collect()
    }

    fn parse_all(texts: &[&str]) -> Result<AppsMapping, MappingErrors> {
        parse(&parts(texts), &Cloud::public(), &|_| true)
    }

    fn errors_of(texts: &[&str]) -> Vec<String> {
        parse_all(texts)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn kv(vault: &str, secrets: &[(&str, &str)]) -> String {
        let secrets: Vec<_> = secrets
            .iter()
            .map(|(s, a)| json!({"secretName": s, "apimAppName": a}))
            .collect();
        json!({"keyVault": [{"vaultName": vault, "secrets": secrets}]}).to_string()
    }

    fn api(url: &str, app: &str, apim: &str) -> String {
        json!({"applicationApis": [{"httpURL": url, "appName": app, "apimAppName": apim}]})
            .to_string()
    }

    #[test]
    fn sample_parses() {
        let m = parse(&parts(&[SAMPLE]), &Cloud::public(), &|s| {
            s == SAMPLE_HEADER_SETTING || s == SAMPLE_CS_SETTING
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.groups::<AppConfigurationStore>().len(), 2);
        assert_eq!(
            m.groups::<AppConfigurationStore>()[0].connection_string_setting,
            None
        );
        assert_eq!(
            m.groups::<AppConfigurationStore>()[1]
                .connection_string_setting
                .as_deref(),
            Some(SAMPLE_CS_SETTING)
        );
        assert_eq!(
            m.groups::<AppConfigurationStore>()[0].keys[0]
                .label
                .as_deref(),
            Some("sandbox")
        );
        assert_eq!(m.groups::<AppConfigurationStore>()[0].keys[1].label, None);
        assert!(
            m.groups::<KeyVaultGroup>().len() >= 2
                && m.groups::<ApplicationApiMapping>().len() >= 2
        );
        assert!(m
            .groups::<ApplicationApiMapping>()
            .iter()
            .any(|a| matches!(a.auth, ApiAuth::ManagedIdentity { .. })));
        assert!(m
            .groups::<ApplicationApiMapping>()
            .iter()
            .any(|a| matches!(&a.auth, ApiAuth::Header { value_setting, .. } if value_setting == SAMPLE_HEADER_SETTING)));
        // The header's setting is checked: without it the sample fails, naming it.
        let e = parse(&parts(&[SAMPLE]), &Cloud::public(), &|_| false).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("app setting {SAMPLE_HEADER_SETTING} is not set")),
            "{e}"
        );
        assert!(
            e.to_string().contains(&format!(
                "appConfiguration[1].connectionStringSetting: app setting {SAMPLE_CS_SETTING} is not set"
            )),
            "{e}"
        );
    }

    #[test]
    fn sample_has_a_readme_for_each_supported_section() {
        let v: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        let readme = v["_readme"].to_string();
        for section in SECTIONS.iter().chain([&key_checks::SECTION]) {
            assert!(
                readme.contains(section),
                "_readme does not explain {section}"
            );
        }
    }

    #[test]
    fn missing_mapping_is_reported_on_the_first_setting() {
        let e = parse(&[], &Cloud::public(), &|_| true).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].setting, "APIKEYROTATIONAPPS");
        assert!(e.0[0].message.starts_with("missing"), "{e}");
    }

    #[test]
    fn empty_mapping_names_no_targets() {
        for text in [
            r#"{}"#,
            r#"{"_readme": "x", "keyVault": [], "applicationApis": []}"#,
        ] {
            assert_eq!(
                errors_of(&[text]),
                [format!("APIKEYROTATIONAPPS: $: the mapping names no targets; expected at least one entry in {}", SECTIONS.join(" or "))]
            );
        }
        // Another part with targets makes the whole non-empty.
        assert!(parse_all(&["{}", &kv("kv-one", &[("s1", "App1")])]).is_ok());
    }

    #[test]
    fn parts_are_concatenated_in_order() {
        let m = parse_all(&[
            &kv("kv-one", &[("s1", "App1")]),
            &api("https://api.contoso.com/keys", "ref", "App2"),
            &kv("kv-two", &[("s2", "App2"), ("s3", "App1")]),
        ])
        .unwrap();
        let labels: Vec<_> = m
            .groups::<KeyVaultGroup>()
            .iter()
            .map(|g| g.vault_label.as_str())
            .collect();
        assert_eq!(labels, ["kv-one", "kv-two"]);
        assert_eq!(
            m.groups::<KeyVaultGroup>()[1].vault_url.as_str(),
            "https://kv-two.vault.azure.net/"
        );
        assert_eq!(m.groups::<ApplicationApiMapping>().len(), 1);
        assert_eq!(m.target_count(), 4);
        assert_eq!(m.apim_app_names(), ["App1", "App2"]);
    }

    #[test]
    fn errors_name_the_part_and_the_path_within_it() {
        let errs = errors_of(&[
            &kv("kv-one", &[("s1", "App1")]),
            &kv("kv-two", &[("s2", "App1"), ("s3", "")]),
            r#"{"keyVault": [{"vaultName": "kv-three", "secrets": [{"secretName": "s4"}]}]}"#,
        ]);
        assert_eq!(
            errs,
            [
                "APIKEYROTATIONAPPS2: keyVault[0].secrets[1].apimAppName: must not be empty",
                "APIKEYROTATIONAPPS3: keyVault[0].secrets[0].apimAppName: required",
            ]
        );
    }

    #[test]
    fn every_part_is_checked_even_when_one_is_not_json() {
        let errs = errors_of(&["{ nope", r#"[1]"#, r#"{"keyVault": 3}"#]);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "APIKEYROTATIONAPPS: $: not valid JSON: key must be a string at line 1 column 3"
            ),
            "{}",
            errs[0]
        );
        assert_eq!(
            errs[1],
            "APIKEYROTATIONAPPS2: $: expected an object, got array"
        );
        assert_eq!(
            errs[2],
            "APIKEYROTATIONAPPS3: keyVault: expected an array, got number"
        );
    }

    #[test]
    fn duplicates_across_parts_name_both_places() {
        let errs = errors_of(&[
            &kv("kv-one", &[("s1", "App1"), ("s2", "App1")]),
            &kv("KV-One", &[("S2", "App2")]),
        ]);
        assert_eq!(
            errs,
            ["APIKEYROTATIONAPPS2: keyVault[0].secrets[0]: duplicate of APIKEYROTATIONAPPS: keyVault[0].secrets[1]"]
        );
        // By URL and by name, the same vault is the same target.
        let by_url = json!({"keyVault": [{"vaultUrl": "https://kv-one.vault.azure.net", "secrets": [{"secretName": "s1", "apimAppName": "A"}]}]});
        let errs = errors_of(&[&kv("kv-one", &[("s1", "App1")]), &by_url.to_string()]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("duplicate of APIKEYROTATIONAPPS: keyVault[0].secrets[0]"));

        let a = api("https://api.contoso.com/keys", "ref", "App1");
        let errs = errors_of(&[&a, &a]);
        assert_eq!(
            errs,
            ["APIKEYROTATIONAPPS2: applicationApis[0]: duplicate of APIKEYROTATIONAPPS: applicationApis[0]"]
        );
        // Another appName on the same API, or another vault, is another target.
        assert!(parse_all(&[&a, &api("https://api.contoso.com/keys", "ref2", "App1")]).is_ok());
        assert!(parse_all(&[&kv("kv-one", &[("s1", "A")]), &kv("kv-two", &[("s1", "A")])]).is_ok());
    }

    fn site(
        section: &str,
        rg: &str,
        name: &str,
        slot: Option<&str>,
        settings: &[(&str, &str)],
    ) -> String {
        let settings: Vec<_> = settings
            .iter()
            .map(|(s, a)| json!({"settingName": s, "apimAppName": a}))
            .collect();
        let mut entry = json!({"subscriptionId": "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345",
                               "resourceGroup": rg, "name": name, "settings": settings});
        if let Some(slot) = slot {
            entry["slot"] = json!(slot);
        }
        json!({ section: [entry] }).to_string()
    }

    /// The same site and setting (case-insensitive), in either sites section, is a duplicate;
    /// another slot, or a static site of the same name, is another target.
    #[test]
    fn duplicate_app_settings() {
        let errs = errors_of(&[
            &site(
                "functionApps",
                "rg-a",
                "func-a",
                None,
                &[("KEY", "App1"), ("OTHER", "App1")],
            ),
            &site("webApps", "RG-A", "Func-A", None, &[("key", "App2")]),
        ]);
        assert_eq!(
            errs,
            ["APIKEYROTATIONAPPS2: webApps[0].settings[0]: duplicate of APIKEYROTATIONAPPS: functionApps[0].settings[0]"]
        );
        let m = parse_all(&[
            &site("functionApps", "rg-a", "func-a", None, &[("KEY", "App1")]),
            &site(
                "functionApps",
                "rg-a",
                "func-a",
                Some("staging"),
                &[("KEY", "App1")],
            ),
            &site("staticWebApps", "rg-a", "func-a", None, &[("KEY", "App2")]),
        ])
        .unwrap();
        assert_eq!(m.target_count(), 3);
        assert_eq!(m.apim_app_names(), ["App1", "App2"]);
        let two = m.only_app("App2");
        assert_eq!(two.groups::<SiteGroup>().len(), 1);
        assert_eq!(
            two.groups::<SiteGroup>()[0].section,
            SiteSection::StaticWebApp
        );
    }

    #[test]
    fn only_app_keeps_that_apps_targets() {
        let m = parse_all(&[
            &kv("kv-one", &[("s1", "App1"), ("s2", "App2")]),
            &kv("kv-two", &[("s3", "App2")]),
            &api("https://api.contoso.com/keys", "ref", "App1"),
        ])
        .unwrap();
        let one = m.only_app("App1");
        assert_eq!(one.groups::<KeyVaultGroup>().len(), 1);
        assert_eq!(one.groups::<KeyVaultGroup>()[0].vault_label, "kv-one");
        assert_eq!(
            one.groups::<KeyVaultGroup>()[0].secrets[0].secret_name,
            "s1"
        );
        assert_eq!(one.groups::<ApplicationApiMapping>().len(), 1);
        assert_eq!(one.target_count(), 2);
        let two = m.only_app("App2");
        assert_eq!(two.target_count(), 2);
        assert!(two.groups::<ApplicationApiMapping>().is_empty());
        assert_eq!(two.apim_app_names(), ["App2"]);
        assert_eq!(m.only_app("nobody"), AppsMapping::default());
    }

    #[test]
    fn errors_display_one_per_line() {
        let e = MappingErrors(vec![
            MappingError {
                setting: "A".into(),
                path: "x".into(),
                message: "m1".into(),
            },
            MappingError {
                setting: "B".into(),
                path: "$".into(),
                message: "m2".into(),
            },
        ]);
        assert_eq!(e.to_string(), "A: x: m1\nB: $: m2");
        let domain: crate::error::Error = e.into();
        assert_eq!(domain.kind(), crate::error::ErrorKind::ConfigInvalid);
    }

    fn schema_accepts(value: &serde_json::Value) -> bool {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        jsonschema::draft202012::new(&schema)
            .expect("the schema compiles")
            .is_valid(value)
    }

    /// The schema file is the envelope's fragment with every kind's merged in: a kind's
    /// fragment and the file cannot disagree. `APIKEYROTATOR_BLESS_SCHEMA=1 cargo test --lib
    /// schema_file` writes the file from the fragments instead.
    #[test]
    fn schema_file_is_the_kinds_fragments() {
        let file: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let mut merged: serde_json::Value = serde_json::from_str(SCHEMA_ENVELOPE).unwrap();
        // The kinds' fragments, then the one section no kind owns.
        let fragments = KINDS
            .iter()
            .map(|k| (k.sections(), k.schema()))
            .chain([(&[key_checks::SECTION][..], key_checks::SCHEMA)]);
        for (sections, schema) in fragments {
            let fragment: serde_json::Value =
                serde_json::from_str(schema).unwrap_or_else(|e| panic!("{sections:?}: {e}"));
            let keys: Vec<_> = fragment.as_object().unwrap().keys().cloned().collect();
            assert_eq!(keys, ["properties", "$defs"], "{sections:?}");
            let properties = fragment["properties"].as_object().unwrap();
            let owned: Vec<_> = properties.keys().map(String::as_str).collect();
            assert_eq!(owned, sections, "a fragment describes its kind's sections");
            for (part, values) in [
                ("properties", properties),
                ("$defs", fragment["$defs"].as_object().unwrap()),
            ] {
                for (name, value) in values {
                    let into = merged[part].as_object_mut().unwrap();
                    assert!(
                        into.insert(name.clone(), value.clone()).is_none(),
                        "{part}.{name} is defined twice"
                    );
                }
            }
        }
        if std::env::var_os("APIKEYROTATOR_BLESS_SCHEMA").is_some() {
            // Regenerates the file from the fragments (serde_json's layout) after a kind changed.
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/schema/apikeyrotationapps.schema.json"
            );
            let text = serde_json::to_string_pretty(&merged).unwrap() + "\n";
            std::fs::write(path, text).unwrap();
            return;
        }
        for part in ["properties", "$defs"] {
            for (name, value) in merged[part].as_object().unwrap() {
                assert_eq!(
                    Some(value),
                    file[part].get(name),
                    "{part}.{name} differs from the schema file"
                );
            }
            for name in file[part].as_object().unwrap().keys() {
                assert!(
                    merged[part].get(name).is_some(),
                    "{part}.{name} is in the file only"
                );
            }
        }
        assert_eq!(
            merged, file,
            "run with APIKEYROTATOR_BLESS_SCHEMA=1 to regenerate the file"
        );
        // The file is exactly what the fragments generate, layout included, so regenerating it
        // after a kind changed shows only that kind's part in the diff.
        assert!(
            SCHEMA == serde_json::to_string_pretty(&merged).unwrap() + "\n",
            "the schema file's layout is not the generated one: run with APIKEYROTATOR_BLESS_SCHEMA=1"
        );
    }

    #[test]
    fn schema_accepts_the_sample() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let sample: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
        let problems: Vec<_> = validator
            .iter_errors(&sample)
            .map(|e| e.to_string())
            .collect();
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn schema_rejects_what_the_parser_rejects() {
        let sample: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        let cases: [(&str, Option<serde_json::Value>); 18] = [
            ("/keyVault/0/secrets/0/secretNam", Some(json!("x"))),
            (
                "/keyVault/0/vaultUrl",
                Some(json!("https://x.vault.azure.net/")),
            ),
            ("/keyVault/0/vaultName", Some(json!("1kv"))),
            ("/keyVault/0/vaultName", Some(json!("kv--one"))),
            ("/keyVault/0/secrets", Some(json!([]))),
            ("/keyVault/0/secrets/0/secretName", Some(json!("bad_name"))),
            ("/keyVault/0/secrets/0/apimAppName", None),
            (
                "/applicationApis/0/httpURL",
                Some(json!("http://api.contoso.com/")),
            ),
            ("/applicationApis/0/auth/type", Some(json!("basic"))),
            ("/applicationApis/0/auth/extra", Some(json!(1))),
            ("/appConfiguration/0/keys", Some(json!([]))),
            ("/appConfiguration/0/keys/0/key", Some(json!(".."))),
            ("/appConfiguration/0/keys/0/label", Some(json!(""))),
            (
                "/appConfiguration/0/endpoint",
                Some(json!("http://appcs.azconfig.io")),
            ),
            (
                "/appConfiguration/0/endpoint",
                Some(json!("https://appcs.azconfig.io/kv")),
            ),
            ("/appConfiguration/1/connectionString", Some(json!("x"))),
            ("/functionApps/0/subscriptionId", Some(json!("not-a-guid"))),
            ("/webapps", Some(json!([]))),
        ];
        for (pointer, value) in cases {
            let mut v = sample.clone();
            walk::tests::tweak(&mut v, pointer, value);
            assert!(!schema_accepts(&v), "schema accepted {pointer}");
            let text = v.to_string();
            assert!(
                parse(&parts(&[&text]), &Cloud::public(), &|_| true).is_err(),
                "parser accepted {pointer}"
            );
        }
        // Comments, and loopback http, are accepted by both.
        let mut v = sample.clone();
        walk::tests::tweak(&mut v, "/keyVault/0/_note", Some(json!({"any": 1})));
        walk::tests::tweak(
            &mut v,
            "/applicationApis/0/httpURL",
            Some(json!("http://127.0.0.1:8080/keys")),
        );
        walk::tests::tweak(
            &mut v,
            "/appConfiguration/0/endpoint",
            Some(json!("http://127.0.0.1:8443")),
        );
        assert!(schema_accepts(&v));
        // A loopback store is a store only of a custom cloud that declares loopback its domain
        // (the sandbox's).
        let loopback_cloud = Cloud::from_settings(
            &[
                ("AZURE_CLOUD", "custom"),
                ("AZURE_AUTHORITY_HOST", "https://127.0.0.1:1"),
                ("AZURE_RESOURCE_MANAGER_ENDPOINT", "https://127.0.0.1:2"),
                (
                    "AZURE_APPCONFIGURATION_DNS_SUFFIX",
                    "127.0.0.1, azconfig.io",
                ),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
        .unwrap();
        assert!(parse(&parts(&[&v.to_string()]), &loopback_cloud, &|_| true).is_ok());
        assert!(parse(&parts(&[&v.to_string()]), &Cloud::public(), &|_| true).is_err());
    }
}

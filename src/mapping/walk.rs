//! The generic walk: reads one part of the mapping from a [`serde_json::Value`] by hand, checking
//! every field and recording every problem with its JSON path instead of stopping at the first.
//!
//! The envelope (an object whose fields are sections, `_` fields being comments) is read here;
//! each entry of a section is handed to the kind that owns the section ([`Kind::read`]), which
//! reads it with the [`Walker`]'s field helpers. Entries that pass their kind's checks are kept
//! with the path and identity of each of their targets ([`Walked`]), so [`super::merge`] can look
//! for duplicates across parts and name both places.

use super::groups::{Group, Groups};
use super::MappingError;
use crate::azure::cloud::Cloud;
use crate::targets::Kind;
use crate::targets::{KINDS, SECTIONS};
use serde_json::{Map, Value};
use url::Url;

/// One target an entry names, as [`super::merge`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Its JSON path in its setting (`keyVault[0].secrets[1]`).
    pub path: String,
    /// What makes two targets the same (the kind's duplicate rule): the container's identity
    /// and the entry's, normalised as the service compares them (case-insensitive names are
    /// lower-cased).
    pub identity: (String, String),
}

impl Place {
    /// The target at `path` whose identity is `(container, entry)`.
    pub fn new(path: String, container: String, entry: String) -> Self {
        Self {
            path,
            identity: (container, entry),
        }
    }
}

/// What a kind's reading of one section entry yields: its group and the place of each target
/// it kept, in entry order.
pub struct Walked {
    pub(super) groups: Box<dyn Groups>,
    pub(super) places: Vec<Place>,
}

impl Walked {
    /// `group`, whose kept targets are at `places`.
    pub fn new<G: Group>(group: G, places: Vec<Place>) -> Self {
        Self {
            groups: Box::new(vec![group]),
            places,
        }
    }

    /// The group, if it is a `G`.
    #[cfg(test)]
    pub(crate) fn group<G: Group>(&self) -> Option<&G> {
        self.groups.as_any().downcast_ref::<Vec<G>>()?.first()
    }
}

/// What one part yields: each kept entry with the index of its kind in [`KINDS`], in document
/// order.
pub(super) type Part = Vec<(usize, Walked)>;

/// Walks the parts of one setting, collecting problems in `errors`.
pub struct Walker<'a> {
    setting: &'a str,
    cloud: &'a Cloud,
    setting_exists: &'a dyn Fn(&str) -> bool,
    /// Problems found so far, in document order.
    pub(super) errors: Vec<MappingError>,
    /// The `keyChecks` entries read so far, each with its path (the one section no kind owns).
    pub(super) key_checks: Vec<(String, super::key_checks::KeyCheck)>,
}

impl<'a> Walker<'a> {
    /// A walker for the setting called `setting`.
    pub(super) fn new(
        setting: &'a str,
        cloud: &'a Cloud,
        setting_exists: &'a dyn Fn(&str) -> bool,
    ) -> Self {
        Self {
            setting,
            cloud,
            setting_exists,
            errors: Vec::new(),
            key_checks: Vec::new(),
        }
    }

    /// The cloud whose service domains the mapping's URLs must be under.
    pub fn cloud(&self) -> &'a Cloud {
        self.cloud
    }

    /// Whether the app setting `name` is set (settings the mapping names must be).
    pub fn setting_exists(&self, name: &str) -> bool {
        (self.setting_exists)(name)
    }

    /// Parses and walks the JSON text of the part.
    pub(super) fn part(&mut self, text: &str) -> Part {
        let mut part = Part::default();
        // Duplicate keys are errors: a typo'd second "keyVault" must not hide the first.
        let value: Value = match crate::json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let hint = if text.trim_start().starts_with("@Microsoft.KeyVault(") {
                    " (an unresolved Key Vault reference: check the function app's access to the vault)"
                } else {
                    ""
                };
                self.error("", format!("not valid JSON: {e}{hint}"));
                return part;
            }
        };
        let Some(top) = self.object(&value, "") else {
            return part;
        };
        for (key, v) in top {
            if key.starts_with('_') {
                continue;
            }
            if key == super::key_checks::SECTION {
                let mut checks = super::key_checks::read_section(self, v, key);
                self.key_checks.append(&mut checks);
                continue;
            }
            let Some(at) = KINDS
                .iter()
                .position(|k| k.sections().contains(&key.as_str()))
            else {
                let mut sections = SECTIONS.to_vec();
                sections.push(super::key_checks::SECTION);
                self.error(key, unknown(key, &sections));
                continue;
            };
            let kind: &dyn Kind = KINDS[at];
            for (i, e) in self.array(v, key).into_iter().flatten().enumerate() {
                if let Some(walked) = kind.read(key, e, &index(key, i), self) {
                    part.push((at, walked));
                }
            }
        }
        part
    }

    // The field-reading helpers every kind uses.

    /// Reports `message` at `path` (`""` is the whole part, reported as `$`).
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(MappingError {
            setting: self.setting.to_string(),
            path: if path.is_empty() { "$" } else { path }.to_string(),
            message: message.into(),
        });
    }

    /// `v` as an object.
    pub fn object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        let obj = v.as_object();
        if obj.is_none() {
            self.error(path, expected("an object", v));
        }
        obj
    }

    /// Reports every field of `obj` that is neither in `allowed` nor a `_` comment.
    pub fn known_fields(&mut self, obj: &Map<String, Value>, path: &str, allowed: &[&str]) {
        for key in obj.keys() {
            if !key.starts_with('_') && !allowed.contains(&key.as_str()) {
                self.error(&join(path, key), unknown(key, allowed));
            }
        }
    }

    /// `v` as an object whose fields are all in `allowed` (or comments).
    pub fn fields<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        allowed: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let obj = self.object(v, path)?;
        self.known_fields(obj, path, allowed);
        Some(obj)
    }

    /// `v` as an array.
    pub fn array<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Vec<Value>> {
        let arr = v.as_array();
        if arr.is_none() {
            self.error(path, expected("an array", v));
        }
        arr
    }

    /// The field `key` of `obj`, reported as required when absent.
    pub fn required<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v Value> {
        let v = obj.get(key);
        if v.is_none() {
            self.error(&join(path, key), "required");
        }
        v
    }

    /// `v` as a string, converted by `check`, whose error message is reported at `path`.
    pub fn string<T>(
        &mut self,
        v: &Value,
        path: &str,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let Some(s) = v.as_str() else {
            self.error(path, expected("a string", v));
            return None;
        };
        check(s).map_err(|m| self.error(path, m)).ok()
    }

    /// The field `key` of `obj` as a string, converted by `check`; reported when absent.
    pub fn required_string<T>(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let v = self.required(obj, path, key)?;
        self.string(v, &join(path, key), check)
    }
}

/// `path.key` (`key` at the top).
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[i]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn expected(what: &str, got: &Value) -> String {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("expected {what}, got {got}")
}

fn unknown(key: &str, allowed: &[&str]) -> String {
    match allowed.iter().find(|a| a.eq_ignore_ascii_case(key)) {
        Some(a) => format!("unknown field; did you mean {a}?"),
        None => format!(
            "unknown field; expected {} (fields starting with _ are comments)",
            allowed.join(", ")
        ),
    }
}

// Value checks: each returns what is kept, or the message to report.

/// An app or setting name: non-empty, at most 256 characters, no surrounding spaces.
pub fn name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else if s.chars().count() > 256 {
        Err("too long; expected at most 256 characters".into())
    } else if s.trim() != s || s.chars().any(char::is_control) {
        Err(format!(
            "{s:?} has surrounding spaces or control characters"
        ))
    } else {
        Ok(s.to_string())
    }
}

/// A URL without credentials or fragment (they would leak into reports, or mean nothing).
pub fn plain_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("must not contain a #fragment".into());
    }
    Ok(url)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::targets::app_settings::{SiteGroup, SiteSection};
    use crate::targets::application_api::{ApiAuth, ApplicationApiMapping};
    use crate::targets::key_vault::KeyVaultGroup;
    use serde_json::json;

    /// Sets (or with `None` removes) the value at a JSON pointer whose parent exists.
    pub(crate) fn tweak(v: &mut Value, pointer: &str, value: Option<Value>) {
        let (parent, last) = pointer.rsplit_once('/').expect("a pointer");
        let parent = v
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no parent for {pointer}"));
        match (parent, value) {
            (Value::Object(m), Some(x)) => {
                m.insert(last.to_string(), x);
            }
            (Value::Object(m), None) => {
                m.remove(last);
            }
            (Value::Array(a), Some(x)) => a[last.parse::<usize>().unwrap()] = x,
            (Value::Array(a), None) => {
                a.remove(last.parse::<usize>().unwrap());
            }
            _ => panic!("parent of {pointer} is not a container"),
        }
    }

    /// A valid mapping naming every kind's sections, with comments where objects allow them.
    pub(crate) fn valid() -> Value {
        json!({
            "_readme": ["comments are allowed anywhere objects are"],
            "keyVault": [
                { "vaultName": "kv-consumers-prd", "_note": 1,
                  "secrets": [ { "secretName": "healthcheck-prd-apikey", "apimAppName": "App1" } ] },
                { "vaultUrl": "https://kv-partners-prd.vault.azure.net",
                  "secrets": [ { "secretName": "other-apikey", "apimAppName": "App2", "_why": {} } ] }
            ],
            "applicationApis": [
                { "httpURL": "https://api.contoso.com/internal/api-keys", "appName": "ref-prd",
                  "apimAppName": "App3", "auth": { "type": "managedIdentity", "scope": "api://x/.default" } },
                { "httpURL": "https://api.contoso.com/keys", "appName": "other", "apimAppName": "App3",
                  "auth": { "type": "header", "name": "x-admin-token", "valueSetting": "APPAPI_SECRET_ADMIN_TOKEN", "_c": "" } },
                { "httpURL": "http://localhost:7071/keys", "appName": "local", "apimAppName": "App1" }
            ],
            "functionApps": [
                { "subscriptionId": "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345", "resourceGroup": "rg-orders",
                  "name": "func-orders", "slot": "staging",
                  "settings": [ { "settingName": "ORDERS_API_KEY", "apimAppName": "App2" } ] }
            ],
            "webApps": [
                { "subscriptionId": "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345", "resourceGroup": "rg-web.(eu)_1",
                  "name": "app-storefront", "_n": 1,
                  "settings": [ { "settingName": "Catalog.Api-Key_1", "apimAppName": "App2" } ] }
            ],
            "staticWebApps": [
                { "subscriptionId": "34ADFA4F-CEDF-4DC0-BA29-B6D1A69AB345", "resourceGroup": "rg-web",
                  "name": "swa-portal",
                  "settings": [ { "settingName": "PORTAL_API_KEY", "apimAppName": "App3" } ] }
            ],
            "appConfiguration": [
                { "endpoint": "https://appcs-consumers.azconfig.io", "_c": 1,
                  "keys": [ { "key": "Orders:ApiKey", "label": "prd", "apimAppName": "App2" },
                            { "key": "Orders:ApiKey", "apimAppName": "App2" } ] },
                { "endpoint": "https://appcs-partners.azconfig.io", "connectionStringSetting": "APPCS_CS",
                  "keys": [ { "key": "k", "apimAppName": "App1" } ] }
            ]
        })
    }

    /// The walked part of `v` and its problems as `path: message`.
    pub(crate) fn walk(v: &Value) -> (Part, Vec<String>) {
        let cloud = Cloud::public();
        let exists = |s: &str| s == "APPAPI_SECRET_ADMIN_TOKEN" || s == "APPCS_CS";
        let mut w = Walker::new("APIKEYROTATIONAPPS", &cloud, &exists);
        let part = w.part(&v.to_string());
        let errors = w
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        (part, errors)
    }

    /// The groups of type `G` that `part` kept, each with the paths of its targets.
    fn kept<G: Group>(part: &Part) -> Vec<(G, Vec<String>)> {
        part.iter()
            .filter_map(|(_, w)| {
                let paths = w.places.iter().map(|p| p.path.clone()).collect();
                w.group::<G>().map(|g| (g.clone(), paths))
            })
            .collect()
    }

    #[test]
    fn the_valid_case_is_valid() {
        let (part, errors) = walk(&valid());
        assert!(errors.is_empty(), "{errors:?}");
        let site_groups = kept::<SiteGroup>(&part);
        let sites: Vec<_> = site_groups
            .iter()
            .map(|(g, paths)| {
                (
                    g.section,
                    g.label(),
                    g.subscription_id.as_str(),
                    paths.clone(),
                )
            })
            .collect();
        assert_eq!(
            sites,
            [
                (
                    SiteSection::FunctionApp,
                    "func-orders/staging".to_string(),
                    "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345",
                    vec!["functionApps[0].settings[0]".to_string()]
                ),
                (
                    SiteSection::WebApp,
                    "app-storefront".to_string(),
                    "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345",
                    vec!["webApps[0].settings[0]".to_string()]
                ),
                (
                    SiteSection::StaticWebApp,
                    "swa-portal".to_string(),
                    "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345",
                    vec!["staticWebApps[0].settings[0]".to_string()]
                ),
            ]
        );
        assert_eq!(
            site_groups[0].0.resource_path().join("/"),
            "subscriptions/34adfa4f-cedf-4dc0-ba29-b6d1a69ab345/resourceGroups/rg-orders/providers/Microsoft.Web/sites/func-orders/slots/staging"
        );
        assert_eq!(
            site_groups[2].0.resource_path().join("/"),
            "subscriptions/34adfa4f-cedf-4dc0-ba29-b6d1a69ab345/resourceGroups/rg-web/providers/Microsoft.Web/staticSites/swa-portal"
        );
        let vaults = kept::<KeyVaultGroup>(&part);
        let g = &vaults[0].0;
        assert_eq!(
            g.vault_url.as_str(),
            "https://kv-consumers-prd.vault.azure.net/"
        );
        assert_eq!(g.vault_label, "kv-consumers-prd");
        assert_eq!(vaults[0].1, ["keyVault[0].secrets[0]"]);
        let g = &vaults[1].0;
        assert_eq!(
            g.vault_url.as_str(),
            "https://kv-partners-prd.vault.azure.net/"
        );
        assert_eq!(g.vault_label, "kv-partners-prd");
        let apis: Vec<_> = kept::<ApplicationApiMapping>(&part)
            .iter()
            .map(|(a, _)| a.auth.clone())
            .collect();
        assert_eq!(
            apis,
            [
                ApiAuth::ManagedIdentity {
                    scope: "api://x/.default".into()
                },
                ApiAuth::Header {
                    name: "x-admin-token".into(),
                    value_setting: "APPAPI_SECRET_ADMIN_TOKEN".into()
                },
                ApiAuth::None,
            ]
        );
    }

    /// Each case changes one thing in `valid` (a mapping without problems, such as [`valid`])
    /// and expects exactly one problem, whose text starts with the case's third part (each kind
    /// tests its section's).
    pub(crate) fn one_problem_each(valid: &Value, cases: Vec<(&str, Option<Value>, &str)>) {
        for (pointer, value, want) in cases {
            let mut v = valid.clone();
            tweak(&mut v, pointer, value);
            let (_, errors) = walk(&v);
            assert_eq!(errors.len(), 1, "{pointer}: {errors:?}");
            assert!(
                errors[0].starts_with(want),
                "{pointer}: got {:?}, want {want:?}",
                errors[0]
            );
        }
    }

    /// The envelope's problems: unknown sections (each kind tests its own section's problems).
    #[test]
    fn one_tweak_one_problem() {
        one_problem_each(
            &valid(),
            vec![
            ("/keyvault", Some(json!([])), "keyvault: unknown field; did you mean keyVault?"),
            ("/secrets", Some(json!([])), "secrets: unknown field; expected keyVault, applicationApis, appConfiguration, functionApps, webApps, staticWebApps"),
        ]);
    }

    #[test]
    fn accepted_variants() {
        let cases: Vec<(&str, Option<Value>)> = vec![
            (
                "/applicationApis/0/httpURL",
                Some(json!("http://127.0.0.1:7071/keys")),
            ),
            (
                "/applicationApis/0/httpURL",
                Some(json!("http://127.8.9.10/keys")),
            ),
            (
                "/applicationApis/0/httpURL",
                Some(json!("http://[::1]:8080/keys")),
            ),
            (
                "/applicationApis/0/httpURL",
                Some(json!("http://LOCALHOST/keys")),
            ),
            (
                "/applicationApis/0/auth",
                Some(json!({"type": "none", "_c": 1})),
            ),
            ("/applicationApis/0/auth", None),
            ("/keyVault/0/vaultName", Some(json!("ABC"))),
            (
                "/keyVault/0/vaultName",
                Some(json!("a-b-c-d-e-f-g-h-i-j-k-l")),
            ),
            ("/keyVault/0/secrets/0/secretName", Some(json!("A-1"))),
            ("/_comment", Some(json!(null))),
            ("/applicationApis/0/_", Some(json!([1, 2]))),
            (
                "/appConfiguration/0/endpoint",
                Some(json!("https://appcs.appconfig.azure.com/")),
            ),
            (
                "/appConfiguration/0/keys/0/key",
                Some(json!(".appconfig.featureflag/x y")),
            ),
            ("/appConfiguration/0/keys/0/label", Some(json!("a,b*"))),
            ("/appConfiguration/0/keys/1/_why", Some(json!("comment"))),
        ];
        for (pointer, value) in cases {
            let mut v = valid();
            tweak(&mut v, pointer, value);
            let (_, errors) = walk(&v);
            assert!(errors.is_empty(), "{pointer}: {errors:?}");
        }
    }

    #[test]
    fn vault_names_use_the_clouds_suffix() {
        let cloud = Cloud::china();
        let mut w = Walker::new("S", &cloud, &|_| true);
        let part = w.part(r#"{"keyVault": [{"vaultName": "kv1", "secrets": [{"secretName": "s", "apimAppName": "a"}]}]}"#);
        assert_eq!(
            kept::<KeyVaultGroup>(&part)[0].0.vault_url.as_str(),
            "https://kv1.vault.azure.cn/"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut v = valid();
        tweak(&mut v, "/keyVault/0/vaultName", Some(json!("x")));
        tweak(&mut v, "/keyVault/0/secrets/0/apimAppName", None);
        tweak(&mut v, "/keyVault/1/secrets/0/secretName", Some(json!(1)));
        tweak(
            &mut v,
            "/applicationApis/0/httpURL",
            Some(json!("http://api.contoso.com")),
        );
        tweak(
            &mut v,
            "/applicationApis/1/auth/valueSetting",
            Some(json!("NOPE")),
        );
        tweak(&mut v, "/applicationApis/2/extra", Some(json!(1)));
        tweak(&mut v, "/webApps", Some(json!({})));
        let (_, errors) = walk(&v);
        let paths: Vec<_> = errors
            .iter()
            .map(|e| e.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "keyVault[0].vaultName",
                "keyVault[0].secrets[0].apimAppName",
                "keyVault[1].secrets[0].secretName",
                "applicationApis[0].httpURL",
                "applicationApis[1].auth.valueSetting",
                "applicationApis[2].extra",
                "webApps",
            ]
        );
    }

    /// A key given twice is an error with its path, not a silent last-one-wins.
    #[test]
    fn duplicate_keys_are_errors() {
        let text = r#"{"keyVault": [{"vaultName": "kv-one", "vaultName": "kv-two",
            "secrets": [{"secretName": "s", "apimAppName": "a"}]}]}"#;
        let cloud = Cloud::public();
        let mut w = Walker::new("APIKEYROTATIONAPPS", &cloud, &|_| true);
        w.part(text);
        let errors: Vec<String> = w.errors.iter().map(|e| e.message.clone()).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("keyVault[0].vaultName: duplicate key"),
            "{errors:?}"
        );
    }

    #[test]
    fn not_json_says_where() {
        let (_, errors) = walk(&json!(null));
        assert_eq!(errors, ["$: expected an object, got null"]);
        let cloud = Cloud::public();
        let mut w = Walker::new("S", &cloud, &|_| true);
        w.part("{\n  \"keyVault\": [,]\n}");
        assert_eq!(w.errors[0].path, "$");
        assert!(
            w.errors[0].message.contains("line 2 column 16"),
            "{}",
            w.errors[0].message
        );
        let mut w = Walker::new("S", &cloud, &|_| true);
        w.part("@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/map/)");
        assert!(
            w.errors[0]
                .message
                .contains("unresolved Key Vault reference"),
            "{}",
            w.errors[0].message
        );
    }
}

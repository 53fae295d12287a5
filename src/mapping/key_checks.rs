//! The `keyChecks` section: per API-manager app, how to try a key through the API gateway
//! before it is distributed (issue 15). It names no target, so it is no target kind: the
//! envelope reads it here, keeps it next to the kinds' groups ([`super::AppsMapping::key_check`])
//! and checks what only the whole mapping can tell (one check per app across the parts, and
//! a check only for an app some target names).

use super::walk::{index, join, name, plain_url, Walker};
use super::MappingError;
use serde_json::Value;
use url::Url;

/// The section's name in the mapping.
pub const SECTION: &str = "keyChecks";

/// The section's JSON Schema fragment (its `properties` and `$defs`, merged into the schema
/// file like a kind's).
pub const SCHEMA: &str = include_str!("key_checks.schema.json");

/// Where the check sends the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyIn {
    /// In this request header.
    Header(String),
    /// In this query parameter.
    QueryParameter(String),
}

/// The method of the check's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMethod {
    /// `GET` (the default).
    Get,
    /// `HEAD`.
    Head,
}

/// One `keyChecks` entry: how to try a key of `apim_app_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    /// The API-manager app whose keys it tries.
    pub apim_app_name: String,
    /// The URL through the API gateway (https, or http on a loopback address). The key is sent
    /// to this URL only.
    pub url: Url,
    /// Where the key goes.
    pub key_in: KeyIn,
    /// `GET` or `HEAD`.
    pub method: CheckMethod,
    /// The statuses that mean the key works (default `[200]`).
    pub expect_status: Vec<u16>,
}

impl KeyCheck {
    /// Host (and port) and path of the URL, for reports and logs: never its query, which
    /// could carry the key or another secret.
    pub fn describe_url(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}{}", self.url.path()),
            None => format!("{host}{}", self.url.path()),
        }
    }
}

const FIELDS: [&str; 6] = [
    "apimAppName",
    "url",
    "header",
    "queryParameter",
    "method",
    "expectStatus",
];

/// Reads every entry of the section at `path` (its key in the part).
pub(super) fn read_section(w: &mut Walker, v: &Value, path: &str) -> Vec<(String, KeyCheck)> {
    let mut out = Vec::new();
    for (i, e) in w.array(v, path).into_iter().flatten().enumerate() {
        let at = index(path, i);
        if let Some(check) = read(w, e, &at) {
            out.push((at, check));
        }
    }
    out
}

fn read(w: &mut Walker, v: &Value, path: &str) -> Option<KeyCheck> {
    let obj = w.fields(v, path, &FIELDS)?;
    let apim_app_name = w.required_string(obj, path, "apimAppName", name);
    let url = w.required_string(obj, path, "url", check_url);
    let key_in = match (obj.get("header"), obj.get("queryParameter")) {
        (Some(h), None) => w
            .string(h, &join(path, "header"), header_name)
            .map(KeyIn::Header),
        (None, Some(q)) => w
            .string(q, &join(path, "queryParameter"), parameter_name)
            .map(KeyIn::QueryParameter),
        (Some(_), Some(_)) => {
            w.error(
                path,
                "both header and queryParameter are set; expected exactly one: where the gateway reads the key",
            );
            None
        }
        (None, None) => {
            w.error(
                path,
                "neither header nor queryParameter is set; expected exactly one: where the gateway reads the key",
            );
            None
        }
    };
    let method = match obj.get("method") {
        None => Some(CheckMethod::Get),
        Some(m) => w.string(m, &join(path, "method"), |s| match s {
            "GET" => Ok(CheckMethod::Get),
            "HEAD" => Ok(CheckMethod::Head),
            _ => Err(format!("expected GET or HEAD, got \"{s}\"")),
        }),
    };
    let expect_status = match obj.get("expectStatus") {
        None => Some(vec![200]),
        Some(v) => statuses(w, v, &join(path, "expectStatus")),
    };
    let (url, key_in) = (url?, key_in?);
    if let KeyIn::QueryParameter(p) = &key_in {
        if url.query_pairs().any(|(k, _)| k == p.as_str()) {
            w.error(
                &join(path, "url"),
                format!("already has a query parameter {p}; the check adds it with the key"),
            );
            return None;
        }
    }
    Some(KeyCheck {
        apim_app_name: apim_app_name?,
        url,
        key_in,
        method: method?,
        expect_status: expect_status?,
    })
}

fn statuses(w: &mut Walker, v: &Value, path: &str) -> Option<Vec<u16>> {
    let items = w.array(v, path)?;
    if items.is_empty() {
        w.error(
            path,
            "must not be empty; expected the statuses that mean the key works, such as [200]",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match item.as_u64().filter(|s| (100..=599).contains(s)) {
            Some(s) => out.push(s as u16),
            None => {
                w.error(&index(path, i), "expected an HTTP status from 100 to 599");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn check_url(s: &str) -> Result<Url, String> {
    let url = plain_url(s)?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if crate::settings::is_loopback(&url) => Ok(url),
        _ => {
            Err("only https URLs are accepted (http is allowed for loopback addresses only)".into())
        }
    }
}

fn header_name(s: &str) -> Result<String, String> {
    match reqwest::header::HeaderName::from_bytes(s.as_bytes()) {
        Ok(_) => Ok(s.to_string()),
        Err(_) => Err(format!("\"{s}\" is not a valid HTTP header name")),
    }
}

fn parameter_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!("\"{s}\" is not a valid query parameter name"))
    } else {
        Ok(s.to_string())
    }
}

/// The checks of every part `(setting, [(path, check)])` in order, with a problem for each
/// check of an app already checked (in this part or an earlier one) and for each check of an
/// app that no target names (`apps`): it would never run, and is most likely a typo.
pub(super) fn merge(
    parts: Vec<(&str, Vec<(String, KeyCheck)>)>,
    apps: &[String],
    errors: &mut Vec<MappingError>,
) -> Vec<KeyCheck> {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for (setting, checks) in parts {
        for (path, check) in checks {
            if let Some((_, first)) = seen.iter().find(|(app, _)| *app == check.apim_app_name) {
                errors.push(MappingError {
                    setting: setting.to_string(),
                    path,
                    message: format!("duplicate of {first}: one key check per apimAppName"),
                });
                continue;
            }
            seen.push((check.apim_app_name.clone(), format!("{setting}: {path}")));
            if !apps.contains(&check.apim_app_name) {
                errors.push(MappingError {
                    setting: setting.to_string(),
                    path: join(&path, "apimAppName"),
                    message: format!(
                        "no target names app \"{}\"; a key check is for an app whose key the mapping distributes",
                        check.apim_app_name
                    ),
                });
                continue;
            }
            out.push(check);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::cloud::Cloud;
    use crate::mapping::walk::tests::{one_problem_each, tweak, valid};
    use serde_json::json;

    /// The shared valid case with a check of App1 (header) and one of App2 (query parameter).
    fn with_checks() -> Value {
        let mut v = valid();
        v["keyChecks"] = json!([
            { "apimAppName": "App1", "url": "https://api.contoso.com/healthcheck/v1/ping",
              "header": "x-apikey", "_why": "comments are allowed" },
            { "apimAppName": "App2", "url": "http://127.0.0.1:8080/orders/v1/status?probe=1",
              "queryParameter": "apikey", "method": "HEAD", "expectStatus": [200, 204] }
        ]);
        v
    }

    fn parse(parts: &[&str]) -> Result<crate::mapping::AppsMapping, crate::mapping::MappingErrors> {
        let parts: Vec<_> = parts
            .iter()
            .zip(crate::settings::MAPPING_SETTINGS)
            .map(|(t, s)| (s.to_string(), t.to_string()))
            .collect();
        crate::mapping::parse(&parts, &Cloud::public(), &|_| true)
    }

    #[test]
    fn checks_are_read_with_their_defaults() {
        let m = parse(&[&with_checks().to_string()]).unwrap_or_else(|e| panic!("{e}"));
        let one = m.key_check("App1").unwrap();
        assert_eq!(one.key_in, KeyIn::Header("x-apikey".into()));
        assert_eq!(
            (one.method, one.expect_status.as_slice()),
            (CheckMethod::Get, &[200][..])
        );
        let two = m.key_check("App2").unwrap();
        assert_eq!(two.key_in, KeyIn::QueryParameter("apikey".into()));
        assert_eq!(
            (two.method, two.expect_status.as_slice()),
            (CheckMethod::Head, &[200, 204][..])
        );
        assert_eq!(
            two.describe_url(),
            "127.0.0.1:8080/orders/v1/status",
            "never the query"
        );
        assert!(m.key_check("App3").is_none());
        // A check is not a target, and a check follows its app.
        assert_eq!(
            m.target_count(),
            parse(&[&valid().to_string()]).unwrap().target_count()
        );
        assert_eq!(m.only_app("App2").key_checks(), std::slice::from_ref(two));
        assert!(m.only_app("App3").key_checks().is_empty());
    }

    #[test]
    fn one_tweak_one_problem() {
        one_problem_each(
            &with_checks(),
            vec![
            ("/keyChecks", Some(json!({})), "keyChecks: expected an array, got object"),
            ("/keyChecks/0", Some(json!("x")), "keyChecks[0]: expected an object, got string"),
            ("/keyChecks/0/apimAppName", None, "keyChecks[0].apimAppName: required"),
            ("/keyChecks/0/apimAppName", Some(json!("")), "keyChecks[0].apimAppName: must not be empty"),
            ("/keyChecks/0/url", None, "keyChecks[0].url: required"),
            ("/keyChecks/0/url", Some(json!("http://api.contoso.com/ping")), "keyChecks[0].url: only https URLs are accepted (http is allowed for loopback addresses only)"),
            ("/keyChecks/0/url", Some(json!("not a url")), "keyChecks[0].url: not a URL"),
            ("/keyChecks/0/url", Some(json!("https://user:pw@api.contoso.com/")), "keyChecks[0].url: must not contain a user name or password"),
            ("/keyChecks/1/url", Some(json!("https://api.contoso.com/x?apikey=1")), "keyChecks[1].url: already has a query parameter apikey"),
            ("/keyChecks/0/header", None, "keyChecks[0]: neither header nor queryParameter is set"),
            ("/keyChecks/0/queryParameter", Some(json!("apikey")), "keyChecks[0]: both header and queryParameter are set"),
            ("/keyChecks/0/header", Some(json!("x apikey")), "keyChecks[0].header: \"x apikey\" is not a valid HTTP header name"),
            ("/keyChecks/1/queryParameter", Some(json!("")), "keyChecks[1].queryParameter: must not be empty"),
            ("/keyChecks/0/method", Some(json!("POST")), "keyChecks[0].method: expected GET or HEAD, got \"POST\""),
            ("/keyChecks/0/expectStatus", Some(json!([])), "keyChecks[0].expectStatus: must not be empty"),
            ("/keyChecks/0/expectStatus", Some(json!(200)), "keyChecks[0].expectStatus: expected an array, got number"),
            ("/keyChecks/0/expectStatus", Some(json!([200, 99])), "keyChecks[0].expectStatus[1]: expected an HTTP status from 100 to 599"),
            ("/keyChecks/0/expectstatus", Some(json!([200])), "keyChecks[0].expectstatus: unknown field; did you mean expectStatus?"),
            ("/keychecks", Some(json!([])), "keychecks: unknown field; did you mean keyChecks?"),
        ]);
    }

    /// What only the whole mapping tells: a check of an app no target names, and a second
    /// check of one app (in one setting, or across the three), which names the first.
    #[test]
    fn duplicates_and_checks_of_no_target() {
        for (pointer, value, want) in [
            ("/keyChecks/0/apimAppName", json!("Nobody"), "APIKEYROTATIONAPPS: keyChecks[0].apimAppName: no target names app \"Nobody\"; a key check is for an app whose key the mapping distributes"),
            ("/keyChecks/1/apimAppName", json!("App1"), "APIKEYROTATIONAPPS: keyChecks[1]: duplicate of APIKEYROTATIONAPPS: keyChecks[0]: one key check per apimAppName"),
        ] {
            let mut v = with_checks();
            tweak(&mut v, pointer, Some(value));
            let e = parse(&[&v.to_string()]).unwrap_err();
            assert_eq!(e.to_string(), want);
        }
        let check = json!({"keyChecks": [{"apimAppName": "App1", "url": "https://gw.contoso.com/a", "header": "x-apikey"}]});
        let target = json!({"keyVault": [{"vaultName": "kv-one", "secrets": [{"secretName": "s", "apimAppName": "App1"}]}]});
        let e = parse(&[&target.to_string(), &check.to_string(), &check.to_string()]).unwrap_err();
        let texts: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            texts,
            ["APIKEYROTATIONAPPS3: keyChecks[0]: duplicate of APIKEYROTATIONAPPS2: keyChecks[0]: one key check per apimAppName"]
        );
        // A check in one setting for a target in another is fine.
        assert!(parse(&[&target.to_string(), &check.to_string()]).is_ok());
        // A mapping of checks only names no target: its check names no app either.
        let e = parse(&[&check.to_string()]).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert!(e.0[0].message.starts_with("no target names app"), "{e}");
    }

    #[test]
    fn the_schema_agrees() {
        let schema: Value =
            serde_json::from_str(include_str!("../../schema/apikeyrotationapps.schema.json"))
                .unwrap();
        let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
        assert!(validator.is_valid(&with_checks()));
        for (pointer, value) in [
            ("/keyChecks/0/header", None),
            ("/keyChecks/0/queryParameter", Some(json!("apikey"))),
            ("/keyChecks/0/method", Some(json!("POST"))),
            ("/keyChecks/0/expectStatus", Some(json!([]))),
            ("/keyChecks/0/url", Some(json!("http://api.contoso.com/"))),
            ("/keyChecks/0/extra", Some(json!(1))),
        ] {
            let mut v = with_checks();
            tweak(&mut v, pointer, value);
            assert!(!validator.is_valid(&v), "schema accepted {pointer}");
            assert!(
                parse(&[&v.to_string()]).is_err(),
                "parser accepted {pointer}"
            );
        }
    }
}

//! The `appConfiguration` section: a store (Entra ID, or HMAC with a connection string) and
//! the key-values in it that hold keys.

use crate::mapping::walk::{index, join, name, plain_url, Place, Walked, Walker};
use crate::mapping::Group;
use serde_json::Value;
use url::Url;

/// One `appConfiguration` entry: a store and the key-values in it that hold keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfigurationStore {
    /// The store's endpoint (https, or a loopback address), without path, query or trailing `/`.
    pub endpoint: url::Url,
    /// The app setting holding the store's connection string (HMAC); `None` means Entra ID.
    pub connection_string_setting: Option<String>,
    /// The key-values of this store, never empty.
    pub keys: Vec<KeyValueMapping>,
}

/// One key-value that holds the key of an API-manager app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValueMapping {
    /// The key.
    pub key: String,
    /// The label; `None` is the null label.
    pub label: Option<String>,
    /// The API-manager app whose key the key-value holds.
    pub apim_app_name: String,
}

impl Group for AppConfigurationStore {
    fn apim_app_names(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.apim_app_name.as_str()).collect()
    }

    fn only_app(&self, apim_app_name: &str) -> Option<Self> {
        let keys: Vec<_> = self
            .keys
            .iter()
            .filter(|k| k.apim_app_name == apim_app_name)
            .cloned()
            .collect();
        (!keys.is_empty()).then(|| AppConfigurationStore {
            keys,
            ..self.clone()
        })
    }
}

/// Reads one `appConfiguration` entry at `path`.
pub(super) fn read(w: &mut Walker, v: &Value, path: &str) -> Option<Walked> {
    let obj = w.fields(v, path, &["endpoint", "connectionStringSetting", "keys"])?;
    let cloud = w.cloud();
    let endpoint = w.required_string(obj, path, "endpoint", |s| {
        let url = store_endpoint(s)?;
        if !cloud.is_app_configuration(&url) {
            return Err(format!(
                "{} is not an App Configuration store of the {} cloud (expected a host under {}): the rotator sends its App Configuration token only to the cloud's stores",
                url.host_str().unwrap_or_default(),
                cloud.name,
                cloud.app_configuration_suffixes.join(" or ")
            ));
        }
        Ok(url)
    });
    let setting = match obj.get("connectionStringSetting") {
        None => Some(None),
        Some(v) => {
            let p = join(path, "connectionStringSetting");
            match w.string(v, &p, name) {
                Some(s) if !w.setting_exists(&s) => {
                    w.error(&p, format!("app setting {s} is not set"));
                    None
                }
                other => other.map(Some),
            }
        }
    };
    let keys_path = join(path, "keys");
    let keys = w
        .required(obj, path, "keys")
        .and_then(|v| w.array(v, &keys_path));
    if keys.is_some_and(|k| k.is_empty()) {
        w.error(&keys_path, "must not be empty; expected at least one key");
    }
    let mut store_keys = Vec::new();
    let mut key_paths: Vec<String> = Vec::new();
    for (j, k) in keys.into_iter().flatten().enumerate() {
        let p = index(&keys_path, j);
        if let Some(kv) = key_value(w, k, &p) {
            store_keys.push(kv);
            key_paths.push(p);
        }
    }
    let endpoint = endpoint?;
    let store = endpoint.as_str().to_ascii_lowercase();
    let places = key_paths
        .into_iter()
        .zip(&store_keys)
        .map(|(p, k)| {
            // Keys and labels are case-sensitive; the NUL keeps "a" + label "b" apart from others.
            let id = format!("appcs\0{}\0{}", k.key, k.label.as_deref().unwrap_or("\0"));
            Place::new(p, store.clone(), id)
        })
        .collect();
    Some(Walked::new(
        AppConfigurationStore {
            endpoint,
            connection_string_setting: setting?,
            keys: store_keys,
        },
        places,
    ))
}

fn key_value(w: &mut Walker, v: &Value, path: &str) -> Option<KeyValueMapping> {
    let obj = w.fields(v, path, &["key", "label", "apimAppName"])?;
    let key = w.required_string(obj, path, "key", kv_key);
    let label = match obj.get("label") {
        None => Some(None),
        Some(v) => w.string(v, &join(path, "label"), kv_label).map(Some),
    };
    let apim_app_name = w.required_string(obj, path, "apimAppName", name);
    Some(KeyValueMapping {
        key: key?,
        label: label?,
        apim_app_name: apim_app_name?,
    })
}

/// An App Configuration endpoint: https (or a loopback address), no path, query or credentials.
fn store_endpoint(s: &str) -> Result<Url, String> {
    let url = plain_url(s)?;
    let loopback = crate::settings::is_loopback(&url);
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(
            "only https URLs are accepted for App Configuration (http is allowed for loopback addresses only)"
                .into(),
        );
    }
    if url.query().is_some() || url.path() != "/" {
        return Err(
            "must be the store's endpoint without a path or query, such as https://<store>.azconfig.io"
                .into(),
        );
    }
    Ok(url)
}

/// A key: non-empty, no control characters, not `.` or `..` (the service refuses them).
fn kv_key(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else if s == "." || s == ".." {
        Err(format!("\"{s}\" is not a valid key"))
    } else if s.chars().any(char::is_control) {
        Err(format!("{s:?} contains control characters"))
    } else if s.chars().count() > 10_000 {
        Err("too long".into())
    } else {
        Ok(s.to_string())
    }
}

/// A label: no control characters (an empty label is the null label too: use no label).
fn kv_label(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty; leave label out for the null label".into())
    } else if s.chars().any(char::is_control) {
        Err(format!("{s:?} contains control characters"))
    } else {
        Ok(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use crate::mapping::walk::tests::{one_problem_each, valid};
    use serde_json::json;

    /// Each case changes one thing in the mapping's shared valid case and expects exactly one
    /// problem.
    #[test]
    fn one_tweak_one_problem() {
        one_problem_each(
            &valid(),
            vec![
            ("/appConfiguration/0/endpoint", None, "appConfiguration[0].endpoint: required"),
            ("/appConfiguration/0/endpoint", Some(json!("http://appcs.azconfig.io")), "appConfiguration[0].endpoint: only https URLs are accepted for App Configuration (http is allowed for loopback addresses only)"),
            ("/appConfiguration/0/endpoint", Some(json!("https://appcs.azconfig.io/kv")), "appConfiguration[0].endpoint: must be the store's endpoint without a path or query"),
            ("/appConfiguration/0/endpoint", Some(json!("https://appcs.azconfig.io/?a=1")), "appConfiguration[0].endpoint: must be the store's endpoint without a path or query"),
            ("/appConfiguration/0/endpoint", Some(json!("https://u:p@appcs.azconfig.io")), "appConfiguration[0].endpoint: must not contain a user name or password"),
            ("/appConfiguration/0/Endpoint", Some(json!("x")), "appConfiguration[0].Endpoint: unknown field; did you mean endpoint?"),
            ("/appConfiguration/0/keys", None, "appConfiguration[0].keys: required"),
            ("/appConfiguration/0/keys", Some(json!([])), "appConfiguration[0].keys: must not be empty; expected at least one key"),
            ("/appConfiguration/0/keys/0/key", None, "appConfiguration[0].keys[0].key: required"),
            ("/appConfiguration/0/keys/0/key", Some(json!("")), "appConfiguration[0].keys[0].key: must not be empty"),
            ("/appConfiguration/0/keys/0/key", Some(json!(".")), "appConfiguration[0].keys[0].key: \".\" is not a valid key"),
            ("/appConfiguration/0/keys/0/key", Some(json!("..")), "appConfiguration[0].keys[0].key: \"..\" is not a valid key"),
            ("/appConfiguration/0/keys/0/key", Some(json!("a\nb")), "appConfiguration[0].keys[0].key: \"a\\nb\" contains control characters"),
            ("/appConfiguration/0/keys/0/label", Some(json!(1)), "appConfiguration[0].keys[0].label: expected a string, got number"),
            ("/appConfiguration/0/keys/0/label", Some(json!("a\u{7}")), "appConfiguration[0].keys[0].label: \"a\\u{7}\" contains control characters"),
            ("/appConfiguration/0/keys/0/apimAppName", None, "appConfiguration[0].keys[0].apimAppName: required"),
            ("/appConfiguration/0/keys/0/value", Some(json!("x")), "appConfiguration[0].keys[0].value: unknown field; expected key, label, apimAppName"),
            ("/appConfiguration/0/endpoint", Some(json!("https://127.0.0.1:8443")), "appConfiguration[0].endpoint: 127.0.0.1 is not an App Configuration store of the public cloud (expected a host under azconfig.io or appconfig.azure.com)"),
            ("/appConfiguration/0/endpoint", Some(json!("https://appcs.azconfig.io.capture.example")), "appConfiguration[0].endpoint: appcs.azconfig.io.capture.example is not an App Configuration store"),
            ("/appConfiguration/0/endpoint", Some(json!("http://localhost:8483")), "appConfiguration[0].endpoint: localhost is not an App Configuration store of the public cloud (expected a host under azconfig.io or appconfig.azure.com)"),
            ("/appConfiguration/1/connectionStringSetting", Some(json!("MISSING_CS")), "appConfiguration[1].connectionStringSetting: app setting MISSING_CS is not set"),
            ("/appConfiguration/1/connectionStringSetting", Some(json!("")), "appConfiguration[1].connectionStringSetting: must not be empty"),
            ("/appConfiguration", Some(json!({})), "appConfiguration: expected an array, got object"),
        ]);
    }
}

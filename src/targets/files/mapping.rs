//! The `files` section: a file on the host, its format, and the keys in it.

use super::Format;
use crate::mapping::walk::{index, join, name, Place, Walked, Walker};
use crate::mapping::Group;
use serde_json::Value;
use std::path::PathBuf;

/// One `files` entry: a file and the keys it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGroup {
    /// The file's absolute path.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Whether the previous version is kept as `<file>.bak` when the file is rewritten.
    pub backup: bool,
    /// The keys in it, never empty (exactly one for `plain`).
    pub keys: Vec<FileKeyMapping>,
}

/// One key in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileKeyMapping {
    /// Where the key is in the file: a name (`env`, `properties`), a JSON Pointer (`json`);
    /// [`PLAIN_ENTRY`] for a `plain` file.
    pub key: String,
    /// The API-manager app whose key it is.
    pub apim_app_name: String,
}

/// The entry name of the key a `plain` file holds (the mapping gives it no `key`).
pub const PLAIN_ENTRY: &str = "(whole file)";

impl Group for FileGroup {
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
        (!keys.is_empty()).then(|| FileGroup {
            keys,
            ..self.clone()
        })
    }
}

fn file_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if s.is_empty() || !p.is_absolute() {
        return Err("expected an absolute path".into());
    }
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err("must not contain .. (name the file itself)".into());
    }
    if s.ends_with('/') || s.chars().any(char::is_control) {
        return Err("expected the path of a file".into());
    }
    Ok(p)
}

fn format(s: &str) -> Result<Format, String> {
    Format::ALL
        .into_iter()
        .find(|f| f.name() == s)
        .ok_or_else(|| format!("expected plain, env, properties, json or yaml, got \"{s}\""))
}

/// Reads one `files` entry at `path`; the same file path and key is the same target.
pub(super) fn read(w: &mut Walker, v: &Value, path: &str) -> Option<Walked> {
    let obj = w.fields(v, path, &["path", "format", "backup", "keys"])?;
    let file = w.required_string(obj, path, "path", file_path);
    let fmt = w.required_string(obj, path, "format", format);
    let backup = match obj.get("backup") {
        None => Some(false),
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            w.error(&join(path, "backup"), "expected true or false");
            None
        }
    };
    let keys_path = join(path, "keys");
    let keys = w
        .required(obj, path, "keys")
        .and_then(|v| w.array(v, &keys_path));
    if keys.is_some_and(|k| k.is_empty()) {
        w.error(&keys_path, "must not be empty; expected at least one key");
    }
    if fmt == Some(Format::Plain) && keys.is_some_and(|k| k.len() > 1) {
        w.error(&keys_path, "a plain file holds one key; expected one entry");
    }
    let mut out = Vec::new();
    let mut paths = Vec::new();
    for (j, k) in keys.into_iter().flatten().enumerate() {
        let p = index(&keys_path, j);
        let allowed: &[&str] = if fmt == Some(Format::Plain) {
            &["apimAppName"]
        } else {
            &["key", "apimAppName"]
        };
        let Some(kobj) = w.fields(k, &p, allowed) else {
            continue;
        };
        let key = match fmt {
            Some(Format::Plain) => Some(PLAIN_ENTRY.to_string()),
            Some(Format::Json) => w.required_string(kobj, &p, "key", json_pointer),
            Some(Format::Yaml) => w.required_string(kobj, &p, "key", yaml_path),
            _ => w.required_string(kobj, &p, "key", name),
        };
        let apim = w.required_string(kobj, &p, "apimAppName", name);
        if let (Some(key), Some(apim_app_name)) = (key, apim) {
            out.push(FileKeyMapping { key, apim_app_name });
            paths.push(p);
        }
    }
    let group = FileGroup {
        path: file?,
        format: fmt?,
        backup: backup?,
        keys: out,
    };
    let container = group.path.to_string_lossy().into_owned();
    let places = paths
        .into_iter()
        .zip(&group.keys)
        .map(|(p, k)| Place::new(p, container.clone(), k.key.clone()))
        .collect();
    Some(Walked::new(group, places))
}

fn yaml_path(s: &str) -> Result<String, String> {
    let s = name(s)?;
    if s.split('.').any(|k| k.trim().is_empty() || k.trim() != k) {
        return Err("expected a dotted path of mapping keys, such as orders.apiKey".into());
    }
    Ok(s)
}

fn json_pointer(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(
            "expected a JSON Pointer (RFC 6901) to a string, such as /orders/apiKey".into(),
        );
    }
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("~ must be followed by 0 or 1 in a JSON Pointer".into());
        }
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use crate::mapping::walk::tests::{one_problem_each, valid};
    use serde_json::json;

    /// Each case changes one thing in a valid mapping with a `files` section and expects
    /// exactly one problem.
    #[test]
    fn one_tweak_one_problem() {
        let mut v = valid();
        v["files"] = json!([
            { "path": "/etc/orders/app.properties", "format": "properties", "backup": true,
              "keys": [ { "key": "orders.apiKey", "apimAppName": "App1" } ] },
            { "path": "/etc/orders/key.txt", "format": "plain", "keys": [ { "apimAppName": "App2" } ] },
            { "path": "/etc/orders/app.json", "format": "json", "keys": [ { "key": "/orders/apiKey", "apimAppName": "App2" } ] },
            { "path": "/etc/orders/app.yaml", "format": "yaml", "keys": [ { "key": "orders.apiKey", "apimAppName": "App2" } ] }
        ]);
        one_problem_each(
            &v,
            vec![
                ("/files/0/path", None, "files[0].path: required"),
                (
                    "/files/0/path",
                    Some(json!("app.properties")),
                    "files[0].path: expected an absolute path",
                ),
                (
                    "/files/0/path",
                    Some(json!("/etc/../x")),
                    "files[0].path: must not contain ..",
                ),
                (
                    "/files/0/path",
                    Some(json!(1)),
                    "files[0].path: expected a string, got number",
                ),
                ("/files/0/format", None, "files[0].format: required"),
                (
                    "/files/0/format",
                    Some(json!("ini")),
                    "files[0].format: expected plain, env, properties, json or yaml, got \"ini\"",
                ),
                (
                    "/files/0/backup",
                    Some(json!("yes")),
                    "files[0].backup: expected true or false",
                ),
                (
                    "/files/0/keys",
                    Some(json!([])),
                    "files[0].keys: must not be empty",
                ),
                (
                    "/files/0/keys/0/key",
                    None,
                    "files[0].keys[0].key: required",
                ),
                (
                    "/files/0/keys/0/key",
                    Some(json!("")),
                    "files[0].keys[0].key: must not be empty",
                ),
                (
                    "/files/0/keys/0/apimAppName",
                    None,
                    "files[0].keys[0].apimAppName: required",
                ),
                (
                    "/files/0/keys/0/secret",
                    Some(json!("x")),
                    "files[0].keys[0].secret: unknown field",
                ),
                (
                    "/files/0/Path",
                    Some(json!("x")),
                    "files[0].Path: unknown field; did you mean path?",
                ),
                (
                    "/files/1/keys/0/key",
                    Some(json!("k")),
                    "files[1].keys[0].key: unknown field; expected apimAppName",
                ),
                (
                    "/files/1/keys",
                    Some(json!([{ "apimAppName": "App1" }, { "apimAppName": "App2" }])),
                    "files[1].keys: a plain file holds one key",
                ),
                (
                    "/files/2/keys/0/key",
                    Some(json!("orders.apiKey")),
                    "files[2].keys[0].key: expected a JSON Pointer",
                ),
                (
                    "/files/2/keys/0/key",
                    Some(json!("/a~2")),
                    "files[2].keys[0].key: ~ must be followed by 0 or 1",
                ),
            ],
        );
    }
}

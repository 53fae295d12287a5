//! The files target kind end to end: the real binary's `rotate` against the sandbox's API
//! manager, with one file of each format in a temporary folder (issue 17). The first run writes
//! each file once, keeping every other byte; the second writes nothing (bytes and mtimes
//! unchanged); a file with the key twice is an error naming it and both lines, left untouched,
//! and does not stop the others; no output holds the key.

use crate::common;

use common::Env;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const APP3: &str = "ApiKeyRotator_TestApp3_Sandbox";

fn rotate(env: &Env, root: &Path, mapping: &Value) -> (Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_apikey-rotator"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.settings(&[
            ("APIKEYROTATIONAPPS", &mapping.to_string()),
            ("APIKEYROTATIONAPPS2", ""),
            ("APIKEYROTATIONAPPS3", ""),
            ("FILES_ALLOWED_ROOTS", &root.display().to_string()),
        ]))
        .arg("rotate")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {all}"));
    (report, all)
}

const ENV: &str = "# orders\r\nexport ORDERS_KEY=\"old\" # rotated\r\nOTHER=1\r\n";
const PROPERTIES: &str = "! shop\norders.apiKey = old\nshop.url=https://x\n";
const YAML: &str = "shop:\r\n  url: https://x # the API\r\n  apiKey: old\r\nlist:\r\n  - a\r\n";
const JSON: &str = "{\n  \"z\": [1, 2],\n  \"orders\": { \"apiKey\": \"old\" }\n}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_writes_each_file_once_and_then_nothing() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let files = [
        ("key.txt", "old\n"),
        ("app.env", ENV),
        ("app.properties", PROPERTIES),
        ("app.json", JSON),
        ("app.yaml", YAML),
    ];
    for (name, text) in files {
        std::fs::write(root.join(name), text).unwrap();
    }
    let entry = |name: &str, format: &str, key: Option<&str>| {
        let mut k = json!({ "apimAppName": APP3 });
        if let Some(key) = key {
            k["key"] = json!(key);
        }
        json!({ "path": root.join(name), "format": format, "keys": [k] })
    };
    let mapping = json!({ "files": [
        entry("key.txt", "plain", None),
        entry("app.env", "env", Some("ORDERS_KEY")),
        entry("app.properties", "properties", Some("orders.apiKey")),
        entry("app.yaml", "yaml", Some("shop.apiKey")),
        { "path": root.join("app.json"), "format": "json", "backup": true,
          "keys": [ { "key": "/orders/apiKey", "apimAppName": APP3 } ] },
    ]});

    let (first, out1) = rotate(&env, &root, &mapping);
    assert_eq!(first["summary"]["updated"], 5, "{first:#}");
    assert_eq!(first["summary"]["failed"], 0, "{first:#}");
    let key = std::fs::read_to_string(root.join("key.txt")).unwrap();
    let key = key
        .strip_suffix('\n')
        .expect("the trailing newline is kept");
    assert!(key.len() > 8 && key != "old");
    assert_eq!(
        std::fs::read_to_string(root.join("app.env")).unwrap(),
        ENV.replace("\"old\"", &format!("\"{key}\""))
    );
    assert_eq!(
        std::fs::read_to_string(root.join("app.properties")).unwrap(),
        PROPERTIES.replace("= old", &format!("= {key}"))
    );
    assert_eq!(
        std::fs::read_to_string(root.join("app.json")).unwrap(),
        JSON.replace("\"old\"", &format!("\"{key}\""))
    );
    let yaml = std::fs::read_to_string(root.join("app.yaml")).unwrap();
    let key_is_plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./+=".contains(c));
    let want = if key_is_plain {
        key.to_string()
    } else {
        format!("\"{key}\"")
    };
    assert_eq!(
        yaml,
        YAML.replace("apiKey: old", &format!("apiKey: {want}"))
    );
    assert_eq!(
        std::fs::read_to_string(root.join("app.json.bak")).unwrap(),
        JSON
    );

    let before: Vec<_> = files
        .iter()
        .map(|(n, _)| {
            let p = root.join(n);
            (
                std::fs::read(&p).unwrap(),
                std::fs::metadata(&p).unwrap().modified().unwrap(),
            )
        })
        .collect();
    let (second, out2) = rotate(&env, &root, &mapping);
    assert_eq!(
        (
            second["summary"]["updated"].clone(),
            second["summary"]["unchanged"].clone()
        ),
        (json!(0), json!(5)),
        "{second:#}"
    );
    let after: Vec<_> = files
        .iter()
        .map(|(n, _)| {
            let p = root.join(n);
            (
                std::fs::read(&p).unwrap(),
                std::fs::metadata(&p).unwrap().modified().unwrap(),
            )
        })
        .collect();
    assert_eq!(before, after, "the second run rewrote a file");
    // Nothing but the files and the one backup: no temporary left behind.
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 6);

    // A file holding the key twice fails alone, named with both lines, and is left as it was.
    let dup = "ORDERS_KEY=a\nORDERS_KEY=b\n";
    std::fs::write(root.join("dup.env"), dup).unwrap();
    let mut with_dup = mapping.clone();
    with_dup["files"]
        .as_array_mut()
        .unwrap()
        .push(entry("dup.env", "env", Some("ORDERS_KEY")));
    let (third, out3) = rotate(&env, &root, &with_dup);
    assert_eq!(third["summary"]["unchanged"], 5, "{third:#}");
    assert_eq!(third["summary"]["failed"], 1, "{third:#}");
    let text = third["errors"].to_string();
    assert!(
        text.contains("dup.env") && text.contains("at lines 1 and 2"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(root.join("dup.env")).unwrap(), dup);

    for out in [out1, out2, out3] {
        assert!(!out.contains(key), "a key reached the output");
    }
}

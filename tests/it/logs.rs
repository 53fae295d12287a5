//! The handler's log lines are what the README's Application Insights queries read
//! (`traces | extend e = parse_json(message)`): one JSON object per line, no key twice (a
//! duplicate `target` would make `e.target` ambiguous), "target failed" with `target_kind`,
//! `target` and `code`, and "rotation run finished" with the run's `run_id` and counts.

use crate::common;

use common::{Env, Handler};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{json, Value};
use std::fmt;

/// The keys of one JSON object, in order, duplicates kept.
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_carry_the_fields_the_readme_queries_use() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let fault = json!({"service": "keyVault", "match": "/secrets/orders-prd-apikey", "status": 403, "times": 100});
    let r = env
        .admin
        .post(format!("{}/faults", env.info.endpoints.admin))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 207, "{report:#}");
    let failed_target = report["errors"][0]["target"].as_str().unwrap().to_string();

    // The run's closing line is written just before the answer; give the pipe a moment.
    let mut output = handler.output();
    for _ in 0..50 {
        if output.contains("rotation run finished") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        output = handler.output();
    }

    let mut failed = Vec::new();
    let mut finished = Vec::new();
    for line in output.lines().filter(|l| l.starts_with('{')) {
        let Keys(keys) = serde_json::from_str(line).unwrap();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len(), "a key appears twice: {line}");
        let e: Value = serde_json::from_str(line).unwrap();
        match e["message"].as_str() {
            Some("target failed") => failed.push(e),
            Some("rotation run finished") => finished.push(e),
            _ => {}
        }
    }
    assert_eq!(failed.len(), 1, "{output}");
    assert_eq!(failed[0]["target_kind"], "KEY_VAULT");
    assert_eq!(failed[0]["target"], failed_target.as_str());
    assert_eq!(failed[0]["code"], report["errors"][0]["code"]);
    assert_eq!(failed[0]["level"], "WARN");

    assert_eq!(finished.len(), 1, "{output}");
    let f = &finished[0];
    assert_eq!(f["run_id"], report["runId"]);
    assert_eq!(f["failed"], 1);
    assert_eq!(f["updated"], report["summary"]["updated"]);
    assert!(f["duration_ms"].is_u64(), "{f}");
}

//! A dry run plans exactly what a run does (issue 12): `rotate --dry-run` against the sandbox,
//! then the real `rotate`; the plan names the same renewals, the same targets to write (Key
//! Vault references followed included), the same unchanged and failed targets, and the same
//! counts, and it wrote nothing.

use crate::common;

use common::Env;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

fn rotate(env: &Env, dry_run: bool) -> Value {
    let mut c = Command::new(env!("CARGO_BIN_EXE_apikey-rotator"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.settings(&[]))
        .arg("rotate");
    if dry_run {
        c.arg("--dry-run");
    }
    let out = c.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// (type, app, target) of every entry of `list`.
fn ids(report: &Value, list: &str) -> BTreeSet<(String, String, String)> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["appName"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_what_the_real_run_then_does() {
    let env = Env::start().await;
    let plan = rotate(&env, true);
    assert!(
        env.writes().await.is_empty(),
        "the dry run wrote: {:#?}",
        env.writes().await
    );
    let real = rotate(&env, false);

    assert_eq!(plan["dryRun"], true);
    for counter in [
        "apps",
        "targets",
        "updated",
        "unchanged",
        "failed",
        "renewed",
    ] {
        assert_eq!(
            plan["summary"][counter], real["summary"][counter],
            "summary.{counter}: plan {} vs run {}",
            plan["summary"], real["summary"]
        );
    }
    // The demo: App1 is inside its renewal window, so its renewal and every write it causes
    // are planned, not only the targets that are stale already.
    assert_eq!(real["summary"]["renewed"], 1, "{real:#}");
    assert_eq!(real["summary"]["updated"], 13, "{real:#}");
    for list in ["successes", "unchanged", "errors"] {
        assert_eq!(ids(&plan, list), ids(&real, list), "{list}");
    }
    // Planned entries say "would"; those for the key still to be created show no key.
    for e in plan["successes"].as_array().unwrap() {
        let message = e["message"].as_str().unwrap();
        if e["type"] == "TOOLKIT" {
            assert!(message.starts_with("Dry run: would create"), "{message}");
            assert!(e.get("apiKey").is_none(), "{e}");
        } else {
            assert!(message.starts_with("Would "), "{message}");
        }
        if e["appName"] == "APIKeyRotator_TestApp1_Sandbox" {
            assert!(
                e.get("apiKey").is_none(),
                "a key that does not exist yet: {e}"
            );
        }
    }
    // A Key Vault reference to follow is planned as the update of its secret.
    assert!(
        plan["successes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"]
                .as_str()
                .unwrap()
                .contains("the reference itself is unchanged")),
        "{plan:#}"
    );
}

//! The audit trail end to end: the real binary's `rotate` appends hash-chained records to
//! `AUDIT_LOG_FILE`, `audit verify` finds the line a tampering broke, `audit export` writes
//! CSV, a sink that fails is reported, and no full key is ever in the file.

use crate::common::{binary, text, Env};
use serde_json::Value;

fn rotate(settings: &std::collections::BTreeMap<String, String>, audit: &str) -> Value {
    let out = binary()
        .envs(settings)
        .env("AUDIT_LOG_FILE", audit)
        .env("USER", "audit-tester")
        .arg("rotate")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}\n{stderr}"))
}

fn audit(args: &[&str]) -> (Option<i32>, String, String) {
    let out = binary().arg("audit").args(args).output().unwrap();
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_chain_verify_detects_tampering_and_export_writes_csv() {
    let env = Env::start().await;
    let settings = env.settings(&[]);
    let file = env.dir.path().join("audit.jsonl");
    let path = file.to_str().unwrap();

    let first = rotate(&settings, path);
    assert!(first["summary"]["renewed"].as_u64().unwrap() > 0, "{first}");
    let second = rotate(&settings, path);
    for report in [&first, &second] {
        assert!(
            report["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["type"] != "AUDIT"),
            "{report}"
        );
    }

    let log = std::fs::read_to_string(&file).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Every success and error of each run is one record, between run.started and run.ended.
    let expected = |r: &Value| {
        2 + r["successes"].as_array().unwrap().len() + r["errors"].as_array().unwrap().len()
    };
    assert_eq!(records.len(), expected(&first) + expected(&second), "{log}");
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[0], "run.started");
    assert_eq!(actions.iter().filter(|a| **a == "run.ended").count(), 2);
    assert_eq!(
        actions.iter().filter(|a| **a == "key.created").count() as u64,
        first["summary"]["renewed"].as_u64().unwrap()
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "target.written").count() as u64,
        first["summary"]["updated"].as_u64().unwrap()
            + second["summary"]["updated"].as_u64().unwrap()
    );
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1);
        assert_eq!(
            (r["trigger"].as_str(), r["who"].as_str()),
            (Some("cli"), Some("audit-tester"))
        );
    }
    assert_eq!(records[0]["runId"], first["runId"]);
    assert_eq!(records.last().unwrap()["runId"], second["runId"]);
    let created = records
        .iter()
        .find(|r| r["action"] == "key.created")
        .unwrap();
    assert!(
        created["newKey"].as_str().unwrap().starts_with("****"),
        "{created}"
    );

    // No full key the API managers hold is in the file.
    for key in env.all_keys().await {
        assert!(
            !log.contains(key.as_str()),
            "a full key is in the audit log"
        );
    }

    let (code, stdout, stderr) = audit(&["verify", "--file", path]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("intact: {} records", records.len())),
        "{stdout}"
    );

    let (code, csv, stderr) = audit(&["export", "--file", path, "--format", "csv"]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some(
            "time,seq,runId,trigger,who,app,target,action,oldKey,newKey,outcome,code,message,prev"
        )
    );
    assert_eq!(rows.count(), records.len());
    // --until before the first record: only the header.
    let (code, none, _) = audit(&[
        "export",
        "--file",
        path,
        "--format",
        "jsonl",
        "--until",
        "2000-01-01T00:00:00Z",
    ]);
    assert_eq!((code, none.as_str()), (Some(0), ""));

    // Edit one field of line 3: the chain breaks at line 4, and verify says so.
    let mut lines: Vec<String> = log.lines().map(str::to_string).collect();
    lines[2] = lines[2].replacen("\"outcome\":\"", "\"outcome\":\"x", 1);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (code, _, stderr) = audit(&["verify", "--file", path]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("line 4:") && stderr.contains("line 3"),
        "{stderr}"
    );
    let (code, _, _) = audit(&["export", "--file", path, "--format", "csv"]);
    assert_eq!(code, Some(1), "a tampered log is not exported");

    // Delete line 2 of the original: caught at line 2.
    let mut deleted: Vec<&str> = log.lines().collect();
    deleted.remove(1);
    std::fs::write(&file, deleted.join("\n") + "\n").unwrap();
    let (code, _, stderr) = audit(&["verify", "--file", path]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("line 2:"), "{stderr}");

    let (code, _, stderr) = audit(&["verify", "--file", "/nonexistent/audit.jsonl"]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_is_reported_with_the_records_not_written() {
    let env = Env::start().await;
    let settings = env.settings(&[]);
    // A folder cannot be appended to.
    let report = rotate(&settings, env.dir.path().to_str().unwrap());
    let warning = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["type"] == "AUDIT")
        .unwrap_or_else(|| panic!("no AUDIT warning: {report}"));
    assert_eq!(warning["code"], "AuditWriteFailed");
    let expected = 2
        + report["successes"].as_array().unwrap().len()
        + report["errors"].as_array().unwrap().len();
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{expected} audit records not written")),
        "{warning}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_records_its_runs_and_toolkit_app_handouts() {
    let env = Env::start().await;
    let file = env.dir.path().join("handler-audit.jsonl");
    let path = file.to_str().unwrap();
    let handler = crate::common::Handler::start(&env.settings(&[("AUDIT_LOG_FILE", path)])).await;
    let app = "APIKeyRotator_TestApp1_Sandbox";
    let (status, _) = handler.toolkit(format!(r#"{{"appName":"{app}"}}"#)).await;
    assert_eq!(status, 200);
    let (status, report) = handler.rotate("").await;
    assert!(status == 200 || status == 207, "{report}");

    let log = std::fs::read_to_string(&file).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let handout = records
        .iter()
        .find(|r| r["action"] == "key.handedOut")
        .unwrap_or_else(|| panic!("no handout recorded:\n{log}"));
    assert_eq!(handout["app"], app);
    assert!(handout["newKey"].as_str().unwrap().starts_with("****"));
    assert!(records.iter().all(|r| r["trigger"] == "http"), "{log}");
    assert!(records.iter().any(|r| r["action"] == "run.ended"), "{log}");
    for key in env.all_keys().await {
        assert!(
            !log.contains(key.as_str()),
            "a full key is in the audit log"
        );
    }
    let (code, stdout, stderr) = audit(&["verify", "--file", path]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
}

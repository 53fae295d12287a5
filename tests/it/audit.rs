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

// The blob trail: append blobs in the host storage account (Azurite here).

use crate::common::azurite::{Azurite, ACCOUNT, ACCOUNT_KEY};
use apikey_rotator::audit::{self as trail, blob::BlobSink, Event, Head, Origin, AUDIT_CONTAINER};
use apikey_rotator::azure::retry::{Call, RetryPolicy};
use apikey_rotator::azure::storage::{AppendOutcome, BlobClient, StorageAccount};

fn call() -> Call {
    Call::new(std::sync::Arc::new(RetryPolicy::default()), None)
}

fn blob_client(azurite: &Azurite) -> BlobClient {
    BlobClient::new(
        reqwest::Client::new(),
        StorageAccount::from_connection_string(&azurite.connection_string()).unwrap(),
    )
}

/// The trail's blobs in name order, with their text, read straight from Azurite.
async fn trail_blobs(client: &BlobClient) -> Vec<(String, String)> {
    let listed = client
        .list_blobs(&call(), AUDIT_CONTAINER, "audit-")
        .await
        .unwrap()
        .expect("the container exists");
    let mut out = Vec::new();
    for b in listed {
        let bytes = client
            .get_blob(&call(), AUDIT_CONTAINER, &b.name, None)
            .await
            .unwrap()
            .unwrap();
        out.push((b.name, String::from_utf8(bytes).unwrap()));
    }
    out
}

/// Replaces `blob` by an append blob holding `text`, as someone with the account key could
/// (without an immutability policy on the container).
async fn rewrite(client: &BlobClient, blob: &str, text: &str) {
    assert!(client
        .create_append_blob(&call(), AUDIT_CONTAINER, blob, true)
        .await
        .unwrap());
    if !text.is_empty() {
        let appended = client
            .append_block(&call(), AUDIT_CONTAINER, blob, 0, text.as_bytes().to_vec())
            .await
            .unwrap();
        assert!(
            matches!(appended, AppendOutcome::Appended { .. }),
            "{appended:?}"
        );
    }
}

/// `apikey-rotator audit <args>` with `AzureWebJobsStorage` set to `storage` (and nothing
/// else of the environment).
fn audit_storage(storage: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = binary()
        .env("AzureWebJobsStorage", storage)
        .arg("audit")
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

fn seed_event(action: &'static str) -> Event {
    Event {
        time: "2000-01-31T23:00:00.000Z".into(),
        app: String::new(),
        target: String::new(),
        action,
        old_key: None,
        new_key: None,
        outcome: "success",
        code: None,
        message: "an earlier month".into(),
    }
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The Functions host with `AzureWebJobsStorage` writes its runs and ToolkitApp handouts to the
/// month's append blob, chained after the trail's earlier blob; `audit verify` (the storage
/// account in the environment) reads every blob in name order, `export --storage` prints their
/// lines; a CLI run names the container to write there too. An edited, a deleted and swapped
/// lines, and a removed earlier blob are each detected, naming the blob and its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_runs_land_in_the_blob_trail_which_verify_reads_and_checks() {
    let azurite = Azurite::start();
    let client = blob_client(&azurite);
    let env = Env::start().await;
    let cs = azurite.connection_string();

    // An earlier month's blob: two records from the genesis.
    client
        .create_container(&call(), AUDIT_CONTAINER)
        .await
        .unwrap();
    let (seed, seed_head) = trail::chain(
        &Head::empty(),
        "seed-run",
        &Origin::default(),
        &[seed_event("run.started"), seed_event("run.ended")],
    );
    let seed_text = seed.join("\n") + "\n";
    rewrite(&client, "audit-2000-01.jsonl", &seed_text).await;

    let settings = env.settings(&[("AzureWebJobsStorage", cs.as_str())]);
    let handler = crate::common::Handler::start(&settings).await;
    let app = "APIKeyRotator_TestApp1_Sandbox";
    let (status, _) = handler.toolkit(format!(r#"{{"appName":"{app}"}}"#)).await;
    assert_eq!(status, 200);
    let mut reports = Vec::new();
    for _ in 0..2 {
        let (status, report) = handler.rotate("").await;
        assert!(status == 200 || status == 207, "{report}");
        assert!(
            report["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["type"] != "AUDIT"),
            "{report}"
        );
        reports.push(report);
    }

    let blobs = trail_blobs(&client).await;
    let month = trail::blob::month_blob(time::OffsetDateTime::now_utc());
    let names: Vec<&str> = blobs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["audit-2000-01.jsonl", month.as_str()]);
    assert_eq!(blobs[0].1, seed_text, "the earlier blob is untouched");
    let records = parse_lines(&blobs[1].1);
    // The month's first record chains after the earlier blob's last.
    assert_eq!(records[0]["seq"], 3);
    assert_eq!(records[0]["prev"], seed_head.hash.as_str());
    let handout = records
        .iter()
        .find(|r| r["action"] == "key.handedOut")
        .unwrap_or_else(|| panic!("no handout recorded:\n{}", blobs[1].1));
    assert_eq!(handout["app"], app);
    assert!(
        records.iter().all(|r| r["trigger"] == "http"),
        "{}",
        blobs[1].1
    );
    let expected = |r: &Value| {
        2 + r["successes"].as_array().unwrap().len() + r["errors"].as_array().unwrap().len()
    };
    let handout_records = records
        .iter()
        .filter(|r| r["runId"] == handout["runId"])
        .count();
    assert_eq!(
        records.len(),
        handout_records + expected(&reports[0]) + expected(&reports[1]),
        "{}",
        blobs[1].1
    );
    for key in env.all_keys().await {
        assert!(
            !blobs[1].1.contains(key.as_str()),
            "a full key is in the audit blob"
        );
    }

    let total = 2 + records.len();
    let (code, stdout, stderr) = audit_storage(&cs, &["verify"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "intact: {total} records in 2 blobs of blob {ACCOUNT}/{AUDIT_CONTAINER}"
        )),
        "{stdout}"
    );
    let (code, jsonl, stderr) = audit_storage(&cs, &["export", "--storage", "--format", "jsonl"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(jsonl, seed_text + &blobs[1].1);

    // A command-line run writes the blob trail when the container is named.
    let out = binary()
        .envs(&settings)
        .env("AUDIT_LOG_BLOB_CONTAINER", AUDIT_CONTAINER)
        .env("USER", "audit-tester")
        .arg("rotate")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let cli_report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}\n{stderr}"));
    let after = trail_blobs(&client).await;
    let tail = parse_lines(&after[1].1);
    assert_eq!(
        tail.len(),
        records.len() + expected(&cli_report),
        "{cli_report}"
    );
    assert_eq!(tail.last().unwrap()["trigger"], "cli");
    assert_eq!(tail.last().unwrap()["who"], "audit-tester");
    let (code, stdout, stderr) = audit_storage(&cs, &["verify", "--storage"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");

    // Tampering, each on the month's blob as it is now, each detected at its blob and line.
    let original = after[1].1.clone();
    let lines: Vec<&str> = original.lines().collect();
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[2] = edited[2].replacen("\"outcome\":\"", "\"outcome\":\"x", 1);
    let mut deleted = lines.clone();
    deleted.remove(1);
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    let cases = [
        (edited.join("\n") + "\n", 4, "prev does not match line 5"),
        (deleted.join("\n") + "\n", 2, "removed"),
        (swapped.join("\n") + "\n", 2, "removed"),
    ];
    for (tampered, line, why) in cases {
        rewrite(&client, &month, &tampered).await;
        let (code, _, stderr) = audit_storage(&cs, &["verify"]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{month} line {line} (line {} of the trail)",
                line + 2
            )) && stderr.contains(why),
            "{stderr}"
        );
        let (code, _, _) = audit_storage(&cs, &["export", "--format", "csv"]);
        assert_eq!(code, Some(1), "a tampered trail is not exported");
    }
    // The earlier month's blob emptied: the month's first record no longer follows anything.
    rewrite(&client, &month, &original).await;
    rewrite(&client, "audit-2000-01.jsonl", "").await;
    let (code, _, stderr) = audit_storage(&cs, &["verify"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{month} line 1")) && stderr.contains("seq is 3, expected 1"),
        "{stderr}"
    );

    // A wrong account key: exit 2, said, the key never shown.
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==";
    let wrong = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={wrong_key};BlobEndpoint={};",
        azurite.blob_endpoint()
    );
    let (code, stdout, stderr) = audit_storage(&wrong, &["verify"]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    assert!(!stderr.contains(wrong_key) && !stderr.contains(ACCOUNT_KEY));
}

/// Writers appending at the same moment (here twelve sinks, each with its own client, as
/// separate instances have) keep one unbroken chain: an append at a position another writer
/// passed is refused (412), and its records are chained again after the new end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_keep_one_chain() {
    let azurite = Azurite::start();
    let client = blob_client(&azurite);
    // What the sink relies on: Azurite refuses an append at a stale position.
    client
        .create_container(&call(), AUDIT_CONTAINER)
        .await
        .unwrap();
    assert!(client
        .create_append_blob(&call(), AUDIT_CONTAINER, "audit-probe.jsonl", false)
        .await
        .unwrap());
    assert!(!client
        .create_append_blob(&call(), AUDIT_CONTAINER, "audit-probe.jsonl", false)
        .await
        .unwrap());
    let first = client
        .append_block(
            &call(),
            AUDIT_CONTAINER,
            "audit-probe.jsonl",
            0,
            b"one\n".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(
        first,
        AppendOutcome::Appended {
            offset: 0,
            blocks: 1
        }
    );
    let stale = client
        .append_block(
            &call(),
            AUDIT_CONTAINER,
            "audit-probe.jsonl",
            0,
            b"two\n".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(stale, AppendOutcome::Moved);

    let (writers, runs, per_run) = (12, 3, 4);
    let now = time::OffsetDateTime::now_utc();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let sink = BlobSink::new(blob_client(&azurite), AUDIT_CONTAINER);
            tokio::spawn(async move {
                for r in 0..runs {
                    let events: Vec<Event> =
                        (0..per_run).map(|_| seed_event("key.handedOut")).collect();
                    sink.append(
                        &call(),
                        &format!("w{w}-r{r}"),
                        &Origin::default(),
                        &events,
                        now,
                    )
                    .await
                    .unwrap_or_else(|(n, e)| panic!("writer {w}: {n} written: {e}"));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let sink = BlobSink::new(client.clone(), AUDIT_CONTAINER);
    let blobs = sink.read(&call()).await.unwrap();
    let lines: Vec<String> = blobs.iter().flat_map(|b| b.lines.clone()).collect();
    assert_eq!(lines.len(), writers * runs * per_run);
    let verified = trail::verify(lines.iter().map(String::as_str))
        .unwrap_or_else(|b| panic!("the chain forked: {b}"));
    assert_eq!(verified.records, lines.len());
    // The tail is the trail's last lines.
    assert_eq!(
        sink.tail(&call(), 5).await.unwrap(),
        lines[lines.len() - 5..]
    );
    // A run's records stay together in one block: each run id's records are consecutive.
    let ids: Vec<String> = lines
        .iter()
        .map(|l| trail::parse(l).unwrap().run_id)
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for chunk in ids.chunk_by(|a, b| a == b) {
        assert_eq!(chunk.len(), per_run, "{ids:?}");
        assert!(seen.insert(chunk[0].clone()), "{ids:?}");
    }
}

/// Two host processes hand out keys through ToolkitApp at the same moment: every handout is
/// one record of the one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_handing_out_keys_at_once_keep_one_chain() {
    let azurite = Azurite::start();
    let env = Env::start().await;
    let cs = azurite.connection_string();
    let settings = env.settings(&[("AzureWebJobsStorage", cs.as_str())]);
    let (first, second) = tokio::join!(
        crate::common::Handler::start(&settings),
        crate::common::Handler::start(&settings)
    );
    let body = r#"{"appName":"APIKeyRotator_TestApp1_Sandbox","dryRun":true}"#;
    let each = 4;
    let asks = (0..each).flat_map(|_| [first.toolkit(body), second.toolkit(body)]);
    let answers = futures::future::join_all(asks).await;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
    }
    let (code, stdout, stderr) = audit_storage(&cs, &["verify"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("intact: {} records", 2 * each)),
        "{stdout}"
    );
}

/// The storage account goes away while a run is under way (after it took the run lock): the
/// run still writes its targets, and its report says the audit records were not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_that_cannot_be_written_is_reported_and_the_targets_are_still_written() {
    let azurite = Azurite::start();
    let env = Env::start().await;
    let cs = azurite.connection_string();
    let handler =
        crate::common::Handler::start(&env.settings(&[("AzureWebJobsStorage", cs.as_str())])).await;
    env.add_fault(
        &serde_json::json!({"service": "apigee", "match": "", "delayMs": 1500, "times": 2}),
    )
    .await;
    env.clear_requests().await;
    let (run, ()) = tokio::join!(handler.rotate(""), async {
        // The run holds the lock once it calls Apigee; then the storage account stops.
        for _ in 0..600 {
            if env
                .requests()
                .await
                .iter()
                .any(|r| r["service"] == "apigee")
            {
                drop(azurite);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the run never reached Apigee");
    });
    let (status, report) = run;
    assert!(status == 200 || status == 207, "{report}");
    assert!(
        report["summary"]["updated"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(!env.writes().await.is_empty());
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
        warning["message"].as_str().unwrap().starts_with(&format!(
            "{expected} audit records not written (blob {ACCOUNT}/{AUDIT_CONTAINER})"
        )),
        "{warning}"
    );
    assert!(
        handler.output().contains("audit trail not written"),
        "the log has the error too"
    );
}

/// A bad AUDIT_LOG_BLOB_CONTAINER is named by `validate --settings` and stops a run at its
/// start, changing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_container_setting_fails_validate_and_stops_the_run() {
    let env = Env::start().await;
    let settings = env.settings(&[
        ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
        ("AUDIT_LOG_BLOB_CONTAINER", "Audit_Trail"),
    ]);
    let expected = "AUDIT_LOG_BLOB_CONTAINER: not a blob container name";
    crate::common::assert_settings_refused(&env, &settings, expected).await;
}

//! A command line for people (issue 12): text logs and a summary with codes, hints and correct
//! plurals for a person; JSON lines when piped; `--log-format` to choose; a progress bar on a
//! terminal only; the report's `unchanged` list; shell completions.

use crate::common;

use common::{binary, text, Env};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;

fn rotate(settings: &BTreeMap<String, String>, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = binary()
        .envs(settings)
        .args(args)
        .arg("rotate")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not the report ({e}):\n{stdout}\n{stderr}"));
    (out.status.code(), report, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_output_is_json_lines_and_text_summarises_for_people() {
    let env = Env::start().await;
    let settings = env.settings(&[]);
    env.add_fault(
        &json!({"service": "keyVault", "match": "/secrets/orders-prd-apikey", "status": 403}),
    )
    .await;

    // Piped, without a flag: every stderr line is a JSON object, and no summary text.
    let (code, report, stderr) = rotate(&settings, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.trim().is_empty());
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object()),
            "not a JSON line: {line}"
        );
    }
    // Unchanged targets have their own list; warnings hold only warnings.
    assert_eq!(report["warnings"], json!([]), "{report:#}");
    let unchanged = report["unchanged"].as_array().unwrap();
    assert_eq!(
        unchanged.len() as u64,
        report["summary"]["unchanged"].as_u64().unwrap()
    );
    assert!(
        unchanged.iter().all(|e| e["message"]
            .as_str()
            .unwrap()
            .starts_with("No update needed")),
        "{report:#}"
    );
    assert!(!unchanged.is_empty());

    // --log-format json says the same explicitly.
    let (_, _, stderr) = rotate(&settings, &["--log-format", "json"]);
    assert!(stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));

    // --log-format text: log lines for a person, then the summary.
    let (code, report, stderr) = rotate(&settings, &["--log-format", "text"]);
    assert_eq!(code, Some(1), "{stderr}");
    let logs: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" INFO ") || l.contains(" WARN "))
        .collect();
    assert!(!logs.is_empty(), "{stderr}");
    assert!(
        logs.iter()
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "{stderr}"
    );
    assert!(
        !stderr.contains("\u{1b}["),
        "no colours when not on a terminal"
    );
    let summary = stderr
        .lines()
        .find(|l| l.contains(" targets: "))
        .unwrap_or_else(|| panic!("no summary:\n{stderr}"));
    let s = &report["summary"];
    assert_eq!(
        summary.split(" (").next().unwrap(),
        format!(
            "3 apps, 17 targets: {} updated, {} unchanged, 1 failed; 0 keys renewed",
            s["updated"], s["unchanged"]
        ),
        "App1 was renewed by the first run: {stderr}"
    );
    let failed = stderr
        .lines()
        .position(|l| {
            l.starts_with("  FAILED KEY_VAULT ") && l.contains("/orders-prd-apikey [Forbidden]: ")
        })
        .unwrap_or_else(|| panic!("the failure is not marked with its code:\n{stderr}"));
    assert_eq!(
        stderr.lines().nth(failed + 1).unwrap().trim(),
        "what to do: grant the rotator's identity Key Vault Secrets Officer on the vault (access-policy vaults: secret Get and Set)",
        "{stderr}"
    );

    // One key renewed reads "1 key".
    env.clear_faults().await;
    let (code, _, stderr) = rotate(&settings, &["--log-format", "text"]);
    assert_eq!(code, Some(0), "{stderr}");
    let out = binary()
        .envs(&settings)
        .args([
            "--log-format",
            "text",
            "rotate",
            "--app",
            "ApiKeyRotator_TestApp3_Sandbox",
            "--force",
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 app, 5 targets: 5 updated, 0 unchanged, 0 failed; 1 key renewed"),
        "{stderr}"
    );
    // And a dry run says what it would do.
    let out = binary()
        .envs(&settings)
        .args(["rotate", "--dry-run", "--log-format", "text"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("[dry run] 3 apps, 17 targets: 0 would be updated, 17 unchanged, 0 failed; 0 keys would be renewed"),
        "{stderr}"
    );
}

/// Under a terminal (a pty from `script`), logs are text and the progress bar is drawn on
/// stderr with every target counted; when piped there is no bar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_text_logs_and_a_progress_bar() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let env = Env::start().await;
    let settings = env.settings(&[]);
    let command = format!(
        "{} rotate --dry-run >/dev/null",
        env!("CARGO_BIN_EXE_apikey-rotator")
    );
    let out = Command::new("script")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&settings)
        .env("TERM", "xterm")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    // `script` runs the command with stdout and stderr on the pty; stdout went to /dev/null.
    let typed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{typed}");
    assert!(typed.contains("17/17 targets"), "no progress bar:\n{typed}");
    assert!(typed.contains("keys 3/3"), "{typed}");
    assert!(typed.contains("[dry run] 3 apps, 17 targets"), "{typed}");
    assert!(
        !typed.contains("{\"timestamp\""),
        "JSON logs on a terminal:\n{typed}"
    );

    let out = binary()
        .envs(&settings)
        .args(["rotate", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        !text(&out).1.contains("targets,"),
        "a bar when piped: {}",
        text(&out).1
    );
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = binary().args(["completions", shell]).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{shell}: {stderr}");
        assert!(stdout.contains("apikey-rotator"), "{shell}: {stdout}");
        for word in [
            "rotate",
            "validate",
            "dry-run",
            "log-format",
            "write-local-settings",
        ] {
            assert!(stdout.contains(word), "{shell} completes {word}");
        }
    }
    let out = binary().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown shell is refused");
}

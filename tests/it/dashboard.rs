//! The Dashboard function in a real browser (issue 16, point 3): the real handler against the
//! sandbox with an audit file, two rotations (one with a failing target, one clean) and a target
//! set back by hand to an older key; then headless Chromium (Debian's `chromium`, which `.ci/run`
//! installs) loads `GET /api/Dashboard` with JavaScript blocked and the test checks what the
//! rendered page shows: every app, the drifted target marked drifted, the failing run with its
//! code, both run ids, the audit tail. It writes a screenshot to `dashboard.png` in the cargo
//! target directory (`target/dashboard.png` by default). The page is self-contained (no script,
//! no outside URL, a policy that forbids loading anything), holds no full key, and loading it
//! writes nothing. `apikey-rotator dashboard --out FILE` writes the same page.

use crate::common;

use azure_security_keyvault_secrets::models::SetSecretParameters;
use common::issuer::{IssuerDouble, ISSUERS};
use common::{Env, Handler};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const APPS: [&str; 3] = [
    "APIKeyRotator_TestApp1_Sandbox",
    "APIKeyRotator_TestApp2_Sandbox",
    "ApiKeyRotator_TestApp3_Sandbox",
];
const VAULT: &str = "kv-consumers-prd";

/// Debian's Chromium on the PATH, or a failure that says how to get it: a browser test that
/// silently passes without its browser tests nothing.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "headless Chromium is not installed: this test needs Debian's `chromium` package on the \
         PATH. `.ci/run` installs it (apt-get install -y chromium); locally run \
         `sudo apt-get install -y chromium`"
    );
}

/// A Chromium profile in `dir` whose content settings block JavaScript on every page.
///
/// `--blink-settings=scriptEnabled=false` cannot be used: with it, Chromium's headless
/// `--dump-dom` and `--screenshot` print nothing (they read the page through its script
/// engine), so the content setting blocks page scripts instead.
fn no_script_profile(dir: &Path) -> PathBuf {
    let profile = dir.join("chromium-profile");
    std::fs::create_dir_all(profile.join("Default")).unwrap();
    let prefs = json!({"profile": {"default_content_setting_values": {"javascript": 2}}});
    std::fs::write(profile.join("Default/Preferences"), prefs.to_string()).unwrap();
    profile
}

/// Runs headless Chromium with `profile` and `args`, then `url`: its stdout.
async fn browse(profile: &Path, args: &[&str], url: &str) -> String {
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true);
    // The guard only keeps a hung browser from hanging the suite.
    let out = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("chromium finished")
        .expect("chromium starts");
    let (stdout, stderr) = common::text(&out);
    assert!(out.status.success(), "chromium failed: {stderr}");
    stdout
}

/// The `<tr>` elements of `html` that contain `needle`.
fn rows_with<'a>(html: &'a str, needle: &str) -> Vec<&'a str> {
    html.split("<tr")
        .skip(1)
        .map(|r| &r[..r.find("</tr>").unwrap_or(r.len())])
        .filter(|r| r.contains(needle))
        .collect()
}

/// Asserts that `html` loads nothing from anywhere and carries no script: no element that
/// loads or embeds, no attribute that names a resource (the page has no link at all), no CSS
/// that fetches. (URLs in text, such as a key check's gateway, load nothing.)
fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for banned in [
        "<script",
        "<link",
        "<iframe",
        "<img",
        "<object",
        "<embed",
        "<base",
        "<meta http-equiv",
        "url(",
        "@import",
        "src=",
        "srcset=",
        "href=",
        "action=",
        "javascript:",
    ] {
        assert!(!lower.contains(banned), "the page holds {banned}");
    }
}

/// Every `consumerKey` and `consumerSecret` under `v` (the Apigee double's state).
fn consumer_secrets(v: &Value) -> Vec<String> {
    match v {
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("consumerKey" | "consumerSecret", Value::String(s)) => vec![s.clone()],
                _ => consumer_secrets(v),
            })
            .collect(),
        Value::Array(a) => a.iter().flat_map(consumer_secrets).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_keys_drift_runs_and_the_audit_tail_in_a_browser() {
    // Fail first, and clearly, when there is no browser.
    chromium();
    let env = Env::start().await;
    let audit = env.dir.path().join("audit.jsonl");
    let handler =
        Handler::start(&env.settings(&[("AUDIT_LOG_FILE", audit.to_str().unwrap())])).await;
    let issuer: &dyn IssuerDouble = ISSUERS[0];
    let app1_before: Vec<String> = issuer
        .stored_keys(&env.state().await, APPS[0])
        .into_iter()
        .map(|k| k.key)
        .collect();

    // A run with a failing target, then a clean one.
    env.add_fault(&json!({
        "service": "keyVault", "match": "/secrets/partner-apikey", "method": "PUT",
        "kind": "status", "status": 403
    }))
    .await;
    let (status, failed) = handler.rotate("").await;
    assert_eq!(status, 207, "{failed:#}");
    env.clear_faults().await;
    let failing = &failed["errors"][0];
    let code = failing["code"].as_str().unwrap().to_string();
    assert!(failing["target"]
        .as_str()
        .unwrap()
        .ends_with("/partner-apikey"));
    let (status, clean) = handler.rotate("").await;
    assert_eq!(status, 200, "{clean:#}");
    let (failed_id, clean_id) = (
        failed["runId"].as_str().unwrap(),
        clean["runId"].as_str().unwrap(),
    );

    // Drift by hand: a secret set back to App1's replaced key (now `previous`).
    let vault = common::vault_sdk_client(&env, VAULT);
    let params = SetSecretParameters {
        value: Some(app1_before[1].clone()),
        ..Default::default()
    };
    vault
        .set_secret("healthcheck-prd-apikey", params.try_into().unwrap(), None)
        .await
        .unwrap();

    // The page over HTTP: HTML under a policy that loads nothing; loading it writes nothing.
    env.clear_requests().await;
    let url = format!("{}/api/Dashboard", handler.base);
    let r = handler.client.get(&url).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "drift is a finding, not a failure"
    );
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert!(header("content-security-policy").starts_with("default-src 'none'"));
    assert_eq!(header("cache-control"), "no-store");
    let served = r.text().await.unwrap();
    let writes = env.writes().await;
    assert!(writes.is_empty(), "the dashboard wrote: {writes:#?}");
    assert_self_contained(&served);

    // JavaScript is really off in the browser's profile: a page's script does not run.
    let profile = no_script_profile(env.dir.path());
    let control = env.dir.path().join("control.html");
    std::fs::write(
        &control,
        // Its source does not hold what it would write.
        "<p>control</p><script>document.body.append('SCRIPT' + '-RAN')</script>",
    )
    .unwrap();
    let dom = browse(
        &profile,
        &["--dump-dom"],
        &format!("file://{}", control.display()),
    )
    .await;
    assert!(dom.contains("<p>control</p>"), "{dom}");
    assert!(!dom.contains("SCRIPT-RAN"), "JavaScript ran: {dom}");

    // What the browser shows, scripts off.
    let dom = browse(&profile, &["--dump-dom"], &url).await;
    for app in APPS {
        assert!(
            dom.contains(&format!("<h3>{app}</h3>")),
            "{app} has its block"
        );
    }
    let drifted = rows_with(&dom, "/healthcheck-prd-apikey</code>");
    assert_eq!(drifted.len(), 2, "in the drift list and the app's targets");
    for row in &drifted {
        assert!(row.contains("drifted: previous"), "{row}");
    }
    let in_sync = rows_with(&dom, "/reference-prd-apikey</code>");
    assert!(in_sync.iter().all(|r| r.contains("in sync")), "{in_sync:?}");
    // Every app's keys are on its timeline, with today and a renewal due date marked.
    assert_eq!(dom.matches("<svg").count(), 3);
    assert!(dom.matches(">today</text>").count() == 3);
    assert!(dom.contains(">renewal due</text>"));
    // The runs, newest first: the clean one, then the failing one with its target's code.
    let runs = &dom[dom.find("id=\"runs\"").unwrap()..dom.find("id=\"apps\"").unwrap()];
    let (clean_at, failed_at) = (runs.find(clean_id).unwrap(), runs.find(failed_id).unwrap());
    assert!(clean_at < failed_at, "newest first");
    let failed_row = rows_with(runs, failed_id);
    assert_eq!(failed_row.len(), 1);
    assert!(failed_row[0].contains(">failed<"), "{}", failed_row[0]);
    assert!(
        failed_row[0].contains(&format!("<code>{code}</code>"))
            && failed_row[0].contains("/partner-apikey"),
        "{}",
        failed_row[0]
    );
    assert!(rows_with(runs, clean_id)[0].contains(">succeeded<"));
    // The audit tail: the trail's records, newest first.
    let tail = &dom[dom.find("id=\"audit\"").unwrap()..];
    let log = std::fs::read_to_string(&audit).unwrap();
    let records = log.lines().count();
    assert!(
        tail.contains(&format!("The last {} record(s)", records.min(50))),
        "{tail}"
    );
    assert!(tail.contains("run.ended") && tail.contains("target.failed"));

    // The screenshot, scripts off.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
        ],
        &url,
    )
    .await;
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{}",
        png.len()
    );
    eprintln!("dashboard screenshot: {}", shot.display());

    // `?app=` shows that app only; an app not in the mapping is the JSON 404.
    let one = handler
        .client
        .get(format!("{url}?app={}", APPS[1]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(one.contains(&format!("<h3>{}</h3>", APPS[1])));
    assert!(!one.contains(APPS[0]) && !one.contains(APPS[2]));
    let r = handler
        .client
        .get(format!("{url}?app=NoSuchApp"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AppNotFound");

    // The command line writes the same page to a file.
    let file = env.dir.path().join("dashboard.html");
    let out = common::binary()
        .envs(env.settings(&[("AUDIT_LOG_FILE", audit.to_str().unwrap())]))
        .args(["dashboard", "--out", file.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains(clean_id) && written.contains(failed_id));
    assert!(rows_with(&written, "/healthcheck-prd-apikey</code>")
        .iter()
        .all(|r| r.contains("drifted: previous")));
    assert_self_contained(&written);

    // No full key (nor an Apigee consumer secret) in the page, as served or as rendered, nor
    // in the handler's logs.
    let mut keys = env.all_keys().await;
    keys.extend(app1_before);
    keys.extend(consumer_secrets(&env.state().await["apigee"]));
    keys.sort();
    keys.dedup();
    handler.assert_no_key_leaked(&keys, &[&served, &dom, &one, &written, &stdout, &stderr]);
}

/// Without an audit sink the page says plainly that there are no runs to show, and is still
/// the whole status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_audit_sink_the_page_says_so() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[("AUDIT_LOG_FILE", "")])).await;
    let r = handler
        .client
        .get(format!("{}/api/dashboard", handler.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("No audit trail is configured"), "{html}");
    for app in APPS {
        assert!(html.contains(&format!("<h3>{app}</h3>")));
    }
    assert!(html.contains("drifted: expired"), "the demo's own drift");
    handler.assert_no_key_leaked(&env.all_keys().await, &[&html]);
}

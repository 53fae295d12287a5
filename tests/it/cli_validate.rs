//! Checks a user can trust (issue 12): `validate` checks the mapping alone by default, and with
//! `--settings` or `--env local.settings.json` everything a run needs, failing on any problem
//! with the problem printed; `seal --check` shows a sealed value with its secrets redacted;
//! `sandbox --write-local-settings` writes a Core Tools settings file that validates.

use crate::common;

use common::{binary, text, Env};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

const UUID: &str = "3f2b7c1e-8d4a-4e2f-9b1c-0a5d6e7f8a9b";

fn sample() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/sampleAppsMapReq.json"
    ))
}

/// Company-details JSON with a fresh RSA key, `extra` merged at the top.
fn details(extra: serde_json::Value) -> (serde_json::Value, String) {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .unwrap()
        .serialize_pem();
    let mut v = serde_json::json!({
        "company": "Contoso",
        "issuer": {"type": "apigeeX", "organization": "contoso-prd", "developerEmail": "integrations@contoso.com",
            "serviceAccountKey": {"type": "service_account", "client_email": "rotator@contoso.iam.gserviceaccount.com",
                "private_key_id": "0123456789abcdef", "private_key": pem, "token_uri": "https://oauth2.googleapis.com/token"}},
        "policy": {"renewBeforeExpiryDays": 45, "newKeyLifetimeDays": 90}
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    (v, pem)
}

fn sealed(v: &serde_json::Value) -> String {
    apikey_rotator::toolkit::sealed::seal(UUID, v.to_string().as_bytes()).unwrap()
}

#[test]
fn the_sample_mapping_validates_alone_on_a_machine_without_settings() {
    let out = binary()
        .args(["validate", "--mapping"])
        .arg(sample())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("mapping valid: "), "{stdout}");
    // The settings it names are notes here, not problems.
    assert!(
        stderr
            .contains("note: the mapping reads app setting APPAPI_SECRET_REFERENCEAPI_ADMIN_TOKEN"),
        "{stderr}"
    );
    assert!(!stderr.contains("error:"), "{stderr}");

    // With --settings, on the same machine, every missing piece is an error.
    let out = binary()
        .args(["validate", "--settings", "--mapping"])
        .arg(sample())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    for needle in [
        "error: setting COMPANYDETAILS: missing",
        "error: setting TOOLKITUUID: missing",
        "valueSetting: app setting APPAPI_SECRET_REFERENCEAPI_ADMIN_TOKEN is not set",
        "connectionStringSetting: app setting APPCS_PARTNERS_CONNECTION_STRING is not set",
    ] {
        assert!(stderr.contains(needle), "{needle}:\n{stderr}");
    }
    assert!(!stdout.contains("settings valid"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_settings_unseals_and_fails_on_every_problem() {
    let env = Env::start().await;
    let settings = env.settings(&[]);
    let run = |settings: &BTreeMap<String, String>| {
        let out = binary()
            .envs(settings)
            .args(["validate", "--settings"])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        (out.status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = run(&settings);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("mapping valid: 3 apps, 17 targets"),
        "{stdout}"
    );
    assert!(stdout.contains("company details valid: "), "{stdout}");
    assert!(stdout.contains("settings valid"), "{stdout}");
    assert!(env.requests().await.is_empty(), "validate calls no service");

    // A wrong UUID, a broken value, a location mismatch: each fails, each printed.
    let mut wrong = settings.clone();
    wrong.insert(
        "TOOLKITUUID".into(),
        "00000000-0000-4000-8000-000000000000".into(),
    );
    let (code, stdout, stderr) = run(&wrong);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error: setting COMPANYDETAILS: Incorrect Toolkit UUID"),
        "{stderr}"
    );

    let mut broken = settings.clone();
    broken.insert("COMPANYDETAILS".into(), "v1.not-what-seal-printed".into());
    let (code, _, stderr) = run(&broken);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not a sealed value"), "{stderr}");

    let (bound, _) = details(serde_json::json!({"boundTo": {"siteName": "func-keyrotator-prd"}}));
    let mut elsewhere = settings.clone();
    elsewhere.insert("COMPANYDETAILS".into(), sealed(&bound));
    elsewhere.insert("TOOLKITUUID".into(), UUID.into());
    elsewhere.insert("WEBSITE_SITE_NAME".into(), "func-keyrotator-dev".into());
    let (code, _, stderr) = run(&elsewhere);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("location-bound to function app 'func-keyrotator-prd'"),
        "{stderr}"
    );
    elsewhere.insert("WEBSITE_SITE_NAME".into(), "func-keyrotator-prd".into());
    let (code, stdout, stderr) = run(&elsewhere);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("bound to function app func-keyrotator-prd"),
        "{stdout}"
    );

    // A setting the mapping names must exist, and a malformed one is named.
    let mut missing = settings.clone();
    missing.remove("APPCS_PARTNERS_CONNECTION_STRING");
    missing.insert("API_KEY_ROTATION_SCHEDULE".into(), "every tuesday".into());
    let (code, _, stderr) = run(&missing);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("error: setting API_KEY_ROTATION_SCHEDULE: "),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "connectionStringSetting: app setting APPCS_PARTNERS_CONNECTION_STRING is not set"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("problems found"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_env_reads_a_core_tools_local_settings_file() {
    let env = Env::start().await;
    let file = env.dir.path().join("local.settings.json");
    let write = |values: &BTreeMap<String, String>, encrypted: bool| {
        std::fs::write(
            &file,
            serde_json::json!({"IsEncrypted": encrypted, "Values": values}).to_string(),
        )
        .unwrap()
    };
    write(&env.settings(&[]), false);
    let out = binary()
        .args(["validate", "--env"])
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("settings valid"), "{stdout}");

    write(&env.settings(&[("TOOLKITUUID", "not-a-uuid")]), false);
    let out = binary()
        .args(["validate", "--env"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("TOOLKITUUID: not a UUID"),
        "{:?}",
        text(&out)
    );

    write(&env.settings(&[]), true);
    let out = binary()
        .args(["validate", "--env"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("IsEncrypted"), "{:?}", text(&out));
}

#[test]
fn seal_check_shows_the_contents_with_secrets_redacted() {
    let (v, pem) = details(serde_json::json!({"boundTo": {"siteName": "func-keyrotator-prd"}}));
    let value = sealed(&v);
    let check = |args: &[&str], stdin: Option<&str>| {
        let mut child = binary()
            .args(["seal", "--check"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    };
    for out in [
        check(&["--uuid", UUID, "--value", &value], None),
        check(&["--uuid", UUID], Some(&value)),
    ] {
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(shown["issuer"]["organization"], "contoso-prd");
        assert_eq!(
            shown["issuer"]["serviceAccountKey"]["client_email"],
            "ro****@contoso.iam.gserviceaccount.com"
        );
        assert_eq!(
            shown["issuer"]["serviceAccountKey"]["private_key_id"],
            "****cdef"
        );
        assert_eq!(shown["boundTo"]["siteName"], "func-keyrotator-prd");
        for secret in [
            pem.lines().nth(1).unwrap(),
            "BEGIN",
            "rotator@",
            "0123456789ab",
        ] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{secret} shown:\n{stdout}\n{stderr}"
            );
        }
        assert!(stderr.contains("valid: opens with this UUID"), "{stderr}");
    }

    let out = check(
        &[
            "--uuid",
            "00000000-0000-4000-8000-000000000000",
            "--value",
            &value,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.starts_with("error: Incorrect Toolkit UUID"),
        "{:?}",
        text(&out)
    );
    let out = binary()
        .args(["seal", "--check", "--value", &value])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--check needs --uuid");
}

/// Seal errors name the field path and never quote the value (issue 13): the service-account
/// key pasted as a string, a PEM where a number belongs.
#[test]
fn seal_errors_name_the_field_never_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let (v, pem) = details(serde_json::json!({}));
    let cases = [
        (
            "/issuer/serviceAccountKey",
            serde_json::json!(v["issuer"]["serviceAccountKey"].to_string()),
            "COMPANYDETAILS: issuer.serviceAccountKey: expected an object, found a string",
        ),
        (
            "/policy/renewBeforeExpiryDays",
            serde_json::json!(pem.clone()),
            "COMPANYDETAILS: policy.renewBeforeExpiryDays: expected a whole number, found a string",
        ),
        (
            "/issuer/serviceAccountKey/private_key",
            serde_json::json!({"pem": pem.clone()}),
            "COMPANYDETAILS: issuer.serviceAccountKey.private_key: expected a string, found an object",
        ),
    ];
    for (pointer, bad, expected) in cases {
        let mut broken = v.clone();
        *broken.pointer_mut(pointer).unwrap() = bad;
        let file = dir.path().join("company.json");
        std::fs::write(&file, broken.to_string()).unwrap();
        let out = binary()
            .args(["seal", "--uuid", UUID, "--in"])
            .arg(&file)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
        assert_eq!(stderr.trim(), format!("error: {expected}"));
        assert!(!stderr.contains(pem.lines().nth(1).unwrap()));
    }
}

#[test]
fn sandbox_writes_a_local_settings_file_that_validates() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox_dir = dir.path().join("sbx");
    let mut child = binary()
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .args(["sandbox", "--dir"])
        .arg(&sandbox_dir)
        .arg("--write-local-settings")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The file is written once the sandbox listens; "wrote" on stderr says so.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(n > 0, "the sandbox ended before writing the file");
        if line.starts_with("wrote ") {
            break;
        }
    }
    let written = dir.path().join("local.settings.json");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&written).unwrap()).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sandbox_dir.join("sandbox.json")).unwrap())
            .unwrap();
    assert_eq!(file["IsEncrypted"], false);
    let values = file["Values"].as_object().unwrap();
    assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
    assert_eq!(values["AzureWebJobsStorage"], "UseDevelopmentStorage=true");
    for (k, v) in info["env"].as_object().unwrap() {
        assert_eq!(&values[k], v, "{k}");
    }
    assert!(values.values().all(|v| v.is_string()));

    let out = binary()
        .args(["validate", "--env"])
        .arg(&written)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("settings valid"), "{stdout}");
}

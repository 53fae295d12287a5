//! The command line: demo, rotate, validate and seal, run as a user runs them.

use crate::common;

use common::{binary, text, Env};

#[test]
fn demo_runs_twice_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let out = binary()
        .args(["demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("== Run 1") && stdout.contains("== Run 2"),
        "{stdout}"
    );
    assert!(stdout.contains("Demo passed"), "{stdout}");
    assert!(dir.path().join("sandbox.json").is_file());

    // On premises: two local files rotated as `files` targets (once, then unchanged), and the
    // standalone toolkit answering POST /getkey with the key the .properties file now holds.
    let folder = dir.path().join("on-premises");
    let value = |file: &str, name: &str| {
        let text = std::fs::read_to_string(folder.join(file)).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{file} lost {name}:\n{text}"))
            .to_string();
        assert!(text.starts_with("# "), "{file} kept its comment:\n{text}");
        line[name.len() + 1..].to_string()
    };
    let env_key = value("orders.env", "ORDERS_API_KEY");
    let properties_key = value("healthcheck.properties", "healthcheck.apiKey");
    for key in [&env_key, &properties_key] {
        assert_ne!(key, "stale-key-from-the-last-quarter");
        assert!(key.len() >= 32, "a key was written");
        assert!(
            !stdout.contains(key.as_str()) && !stderr.contains(key.as_str()),
            "a full key ({}) in the demo's output",
            &key[key.len() - 4..]
        );
        assert!(stdout.contains(&format!("****{}", &key[key.len() - 4..])));
    }
    assert_eq!(stdout.matches("[FILE] Updated key").count(), 2, "{stdout}");
    assert_eq!(
        stdout.matches("[FILE] No update needed").count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("/getkey {\"appName\": \"APIKeyRotator_TestApp1_Sandbox\"} -> HTTP 200"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the key it serves is the one in"),
        "{stdout}"
    );
    assert!(stdout.contains("healthcheck.properties: yes"), "{stdout}");
    let sandbox: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("sandbox.json")).unwrap())
            .unwrap();
    assert!(sandbox["env"]["FILES_ALLOWED_ROOTS"].is_string());
    let mapping: serde_json::Value =
        serde_json::from_str(sandbox["env"]["APIKEYROTATIONAPPS"].as_str().unwrap()).unwrap();
    assert_eq!(mapping["files"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_prints_the_report_and_validate_checks_the_mapping() {
    let env = Env::start().await;
    let settings = env.settings(&[]);

    let out = binary()
        .envs(&settings)
        .args(["rotate", "--dry-run"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["dryRun"], true);
    assert!(env.writes().await.is_empty());

    let out = binary()
        .envs(&settings)
        .args(["rotate", "--app", "APIKeyRotator_TestApp1_Sandbox"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["summary"]["renewed"], 1);
    let keys = env.all_keys().await;
    for key in &keys {
        assert!(
            !stdout.contains(key.as_str()) && !stderr.contains(key.as_str()),
            "a key leaked on the command line"
        );
    }

    let out = binary().envs(&settings).arg("validate").output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.contains("mapping valid: 3 apps, 17 targets"),
        "{:?}",
        text(&out)
    );

    let bad = env.dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"keyVault":[{"vaultName":"kv1","secrets":[{"secretName":"a b"}]}]}"#,
    )
    .unwrap();
    let out = binary()
        .envs(&settings)
        .args(["validate", "--mapping"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("keyVault[0].secrets[0].secretName"),
        "{stderr}"
    );
    assert!(
        stderr.contains("keyVault[0].secrets[0].apimAppName"),
        "every problem is listed: {stderr}"
    );
}

#[test]
fn seal_output_opens_with_the_same_uuid_only() {
    let dir = tempfile::tempdir().unwrap();
    let company = dir.path().join("company.json");
    let private_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .unwrap()
        .serialize_pem();
    let details = serde_json::json!({
        "company": "Contoso",
        "issuer": {"type": "apigeeX", "organization": "contoso", "developerEmail": "a@contoso.com",
            "serviceAccountKey": {"type": "service_account", "client_email": "sa@contoso.iam.gserviceaccount.com",
                "private_key": private_key, "token_uri": "https://oauth2.googleapis.com/token"}},
        "policy": {"renewBeforeExpiryDays": 45, "newKeyLifetimeDays": 90}
    });
    std::fs::write(&company, details.to_string()).unwrap();
    let uuid = "3f2b7c1e-8d4a-4e2f-9b1c-0a5d6e7f8a9b";
    let out = binary()
        .args(["seal", "--uuid", uuid, "--in"])
        .arg(&company)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let sealed = stdout.trim();
    assert!(!sealed.contains("Contoso"), "the details must be encrypted");
    assert!(apikey_rotator::toolkit::sealed::open(uuid, sealed).is_ok());
    let wrong =
        apikey_rotator::toolkit::sealed::open("00000000-0000-4000-8000-000000000000", sealed)
            .unwrap_err();
    assert_eq!(wrong.to_string(), "Incorrect Toolkit UUID");

    // Invalid details are refused at sealing time, not at the first run.
    std::fs::write(&company, r#"{"company":"Contoso","unknownField":1}"#).unwrap();
    let out = binary()
        .args(["seal", "--uuid", uuid, "--in"])
        .arg(&company)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

//! The pipeline examples (`examples/pipelines/`): parsed as YAML, the structure that matters
//! checked (the OIDC permission, no stored Azure secret, the schedule), and their Rotate step
//! run as the CI system runs it (bash, with the step's environment and the pipeline's
//! expressions filled in) with the real binary against the sandbox, signed in to the sandbox's
//! Entra double with a token of its pipeline OIDC issuer (workload identity federation).

use crate::common::{self, Env};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use yaml_serde::Value as Yaml;

/// Where the sandbox's pipeline OIDC issuer hands out tokens, on the authority's host
/// (docs/sandbox.md).
const ISSUER_TOKEN_PATH: &str = "/pipeline-oidc/token";
const GITHUB_SUBJECT: &str = "repo:contoso/rotations:ref:refs/heads/main";
const AZURE_DEVOPS_SUBJECT: &str = "sc://contoso/rotations/apikey-rotator";
const MAPPING_FILE: &str = "config/apikeyrotationapps.json";

fn example(name: &str) -> (String, Yaml) {
    let path = format!("{}/examples/pipelines/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let yaml = yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    (text, yaml)
}

fn str_of<'a>(v: &'a Yaml, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

/// A step's script and environment, as the file has them (expressions not yet filled in).
struct Step {
    script: String,
    env: BTreeMap<String, String>,
}

fn env_of(step: &Yaml) -> BTreeMap<String, String> {
    step["env"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        str_of(k, "env name").to_string(),
                        str_of(v, "env value").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn github_steps(doc: &Yaml) -> &Vec<Yaml> {
    doc["jobs"]["rotate"]["steps"].as_sequence().unwrap()
}

fn github_step<'a>(doc: &'a Yaml, name: &str) -> &'a Yaml {
    github_steps(doc)
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no step {name}"))
}

fn github_rotate(doc: &Yaml) -> Step {
    let step = github_step(doc, "Rotate");
    Step {
        script: str_of(&step["run"], "run").to_string(),
        env: env_of(step),
    }
}

fn azure_cli_task(doc: &Yaml) -> &Yaml {
    doc["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["task"].as_str() == Some("AzureCLI@2"))
        .expect("an AzureCLI@2 task")
}

fn azure_rotate(doc: &Yaml) -> Step {
    let task = azure_cli_task(doc);
    Step {
        script: str_of(&task["inputs"]["inlineScript"], "inlineScript").to_string(),
        env: env_of(task),
    }
}

/// The one line of `script` that runs the rotator, split into words.
fn rotate_command(script: &str) -> Vec<String> {
    let lines: Vec<&str> = script
        .lines()
        .filter(|l| l.trim_start().starts_with("apikey-rotator "))
        .collect();
    assert_eq!(lines.len(), 1, "one apikey-rotator line: {lines:?}");
    lines[0].split_whitespace().map(str::to_string).collect()
}

/// Fills in `open ... close` expressions from `values`; an expression it does not know fails
/// the test (the examples must not grow an input the test does not play).
fn fill(text: &str, open: &str, close: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        out.push_str(&rest[..start]);
        let after = &rest[start + open.len()..];
        let end = after.find(close).expect("a closed expression");
        let expression = after[..end].trim();
        let value = values
            .get(expression)
            .unwrap_or_else(|| panic!("the test does not play the expression {expression:?}"));
        out.push_str(value);
        rest = &after[end + close.len()..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_examples_ask_for_oidc_store_no_azure_secret_and_run_on_a_schedule() {
    for name in ["github-actions.yml", "azure-pipelines.yml"] {
        let (text, _) = example(name);
        for secretish in [
            "AZURE_CLIENT_SECRET",
            "client-secret",
            "creds:",
            "servicePrincipalKey",
            "password",
        ] {
            assert!(!text.contains(secretish), "{name} names {secretish}");
        }
    }

    let (_, gh) = example("github-actions.yml");
    assert_eq!(gh["permissions"]["id-token"], Yaml::from("write"));
    let cron = str_of(&gh["on"]["schedule"][0]["cron"], "on.schedule[0].cron");
    assert_eq!(cron.split_whitespace().count(), 5, "{cron}");
    assert!(gh["on"].get("workflow_dispatch").is_some());
    for step in github_steps(&gh) {
        for input in step["with"].as_mapping().into_iter().flatten() {
            let (k, v) = (str_of(input.0, "with"), format!("{:?}", input.1));
            assert!(
                !k.contains("secret") && !v.contains("secrets."),
                "a step is given a secret: {k}"
            );
        }
    }
    let token_step = str_of(
        &github_step(&gh, "Get the job's OIDC token for Azure")["run"],
        "run",
    );
    assert!(
        token_step.contains("audience=api://AzureADTokenExchange"),
        "{token_step}"
    );
    // The file's bytes are the assertion: no trailing newline (`jq -j`, not `jq -r`).
    assert!(
        token_step.contains("| jq -j .value > \"$RUNNER_TEMP/azure-federated-token\""),
        "{token_step}"
    );
    let rotate = github_rotate(&gh);
    assert_eq!(
        rotate.env["AZURE_FEDERATED_TOKEN_FILE"],
        "${{ runner.temp }}/azure-federated-token"
    );
    assert!(rotate.env["AZURE_CLIENT_ID"].starts_with("${{ vars."));
    assert!(rotate.env["AZURE_TENANT_ID"].starts_with("${{ vars."));
    assert_eq!(
        rotate.env["COMPANYDETAILS"],
        "${{ secrets.COMPANYDETAILS }}"
    );
    assert_eq!(rotate.env["TOOLKITUUID"], "${{ secrets.TOOLKITUUID }}");
    assert_eq!(
        rotate_command(&rotate.script)[..4],
        ["apikey-rotator", "rotate", "--mapping", MAPPING_FILE]
    );

    let (_, ado) = example("azure-pipelines.yml");
    let cron = str_of(&ado["schedules"][0]["cron"], "schedules[0].cron");
    assert_eq!(cron.split_whitespace().count(), 5, "{cron}");
    assert_eq!(ado["schedules"][0]["always"], Yaml::from(true));
    assert_eq!(ado["trigger"], Yaml::from("none"));
    let task = azure_cli_task(&ado);
    assert_eq!(task["inputs"]["addSpnToEnvironment"], Yaml::from(true));
    assert_eq!(task["inputs"]["scriptType"], Yaml::from("bash"));
    assert!(task["inputs"]["azureSubscription"].is_string());
    let rotate = azure_rotate(&ado);
    assert!(
        rotate.script.contains(
            "printf '%s' \"$idToken\" > \"$(Agent.TempDirectory)/azure-federated-token\""
        ),
        "{}",
        rotate.script
    );
    assert!(rotate.script.contains(
        "export AZURE_FEDERATED_TOKEN_FILE=\"$(Agent.TempDirectory)/azure-federated-token\""
    ));
    assert_eq!(rotate.env["COMPANYDETAILS"], "$(COMPANYDETAILS)");
    assert_eq!(rotate.env["TOOLKITUUID"], "$(TOOLKITUUID)");
    assert_eq!(
        rotate_command(&rotate.script),
        [
            "apikey-rotator",
            "rotate",
            "--mapping",
            MAPPING_FILE,
            ">",
            "\"$(Agent.TempDirectory)/report.json\""
        ]
    );
}

/// Which pipeline runs the step.
#[derive(Clone, Copy)]
enum Platform {
    GitHub,
    AzureDevOps,
}

/// What a run of the Rotate step gave.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    report: Option<Value>,
}

/// The pipeline job's OIDC token from the sandbox's issuer, for `subject`.
async fn oidc_token(env: &Env, subject: &str, lifetime_seconds: i64) -> String {
    let url = format!("{}{ISSUER_TOKEN_PATH}", env.info.endpoints.authority);
    let body: Value = env
        .tls_client()
        .get(url)
        .query(&[
            ("audience", "api://AzureADTokenExchange"),
            ("subject", subject),
            ("lifetimeSeconds", &lifetime_seconds.to_string()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["value"].as_str().unwrap().to_string()
}

/// Runs the example's Rotate step in a checkout holding `mapping`, as `platform` runs it, with
/// `token` as the job's OIDC token.
async fn run_rotate_step(env: &Env, platform: Platform, mapping: &str, token: &str) -> Ran {
    run_rotate_step_with(env, platform, mapping, token, &[]).await
}

/// [`run_rotate_step`] with `extra` added to the runner's environment.
async fn run_rotate_step_with(
    env: &Env,
    platform: Platform,
    mapping: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> Ran {
    let checkout = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(checkout.path().join("config")).unwrap();
    std::fs::write(checkout.path().join(MAPPING_FILE), mapping).unwrap();
    let temp = checkout.path().join("_temp");
    std::fs::create_dir_all(&temp).unwrap();
    let temp_s = temp.display().to_string();
    let sandbox = &env.info.env;

    // The runner's own environment: the sandbox's custom cloud (a pipeline against public
    // Azure has none of it), its CA, the connection string the mapping names, and the site
    // name the sandbox's details are sealed for (a pipeline's details are sealed unbound).
    // No managed identity, no mapping, no details, no Azure IDs: the step brings those.
    let mut process: BTreeMap<String, String> = sandbox
        .iter()
        .filter(|(k, _)| {
            ![
                "IDENTITY_ENDPOINT",
                "IDENTITY_HEADER",
                "APIKEYROTATIONAPPS",
                "COMPANYDETAILS",
                "TOOLKITUUID",
                "AZURE_TENANT_ID",
                "SANDBOX_CLIENT_ID",
                "SANDBOX_CLIENT_SECRET",
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_apikey-rotator"))
        .parent()
        .unwrap();
    process.insert(
        "PATH".into(),
        format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    process.insert("HOME".into(), checkout.path().display().to_string());
    for (k, v) in extra {
        process.insert(k.to_string(), v.to_string());
    }

    let (step, values, shell_args): (Step, BTreeMap<&str, String>, &[&str]) = match platform {
        Platform::GitHub => {
            let (_, doc) = example("github-actions.yml");
            // What the "Get the job's OIDC token" step leaves behind (nothing when it failed).
            if !token.is_empty() {
                std::fs::write(temp.join("azure-federated-token"), token).unwrap();
            }
            process.insert("RUNNER_TEMP".into(), temp_s.clone());
            let values = BTreeMap::from([
                ("vars.AZURE_CLIENT_ID", sandbox["SANDBOX_CLIENT_ID"].clone()),
                ("vars.AZURE_TENANT_ID", sandbox["AZURE_TENANT_ID"].clone()),
                ("secrets.COMPANYDETAILS", sandbox["COMPANYDETAILS"].clone()),
                ("secrets.TOOLKITUUID", sandbox["TOOLKITUUID"].clone()),
                ("runner.temp", temp_s.clone()),
                ("inputs.dry-run && '--dry-run' || ''", String::new()),
            ]);
            // GitHub's `shell: bash`.
            (
                github_rotate(&doc),
                values,
                &["--noprofile", "--norc", "-eo", "pipefail"],
            )
        }
        Platform::AzureDevOps => {
            let (_, doc) = example("azure-pipelines.yml");
            // What AzureCLI@2 with addSpnToEnvironment hands the script.
            process.insert("idToken".into(), token.to_string());
            process.insert(
                "servicePrincipalId".into(),
                sandbox["SANDBOX_CLIENT_ID"].clone(),
            );
            process.insert("tenantId".into(), sandbox["AZURE_TENANT_ID"].clone());
            let values = BTreeMap::from([
                ("Agent.TempDirectory", temp_s.clone()),
                ("COMPANYDETAILS", sandbox["COMPANYDETAILS"].clone()),
                ("TOOLKITUUID", sandbox["TOOLKITUUID"].clone()),
            ]);
            (azure_rotate(&doc), values, &[])
        }
    };
    let (open, close) = match platform {
        Platform::GitHub => ("${{", "}}"),
        Platform::AzureDevOps => ("$(", ")"),
    };
    for (name, value) in &step.env {
        process.insert(name.clone(), fill(value, open, close, &values));
    }
    let script = checkout.path().join("_step.sh");
    std::fs::write(&script, fill(&step.script, open, close, &values)).unwrap();

    let out = tokio::process::Command::new("bash")
        .args(shell_args)
        .arg(&script)
        .current_dir(checkout.path())
        .env_clear()
        .envs(&process)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = common::text(&out);
    let report = std::fs::read_to_string(temp.join("report.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    Ran {
        code: out.status.code(),
        stdout,
        stderr,
        report,
    }
}

/// Asserts that no full key of the sandbox appears in what the run printed or reported.
async fn assert_no_key(env: &Env, ran: &Ran) {
    let report = ran
        .report
        .as_ref()
        .map(Value::to_string)
        .unwrap_or_default();
    for key in env.all_keys().await {
        for (what, text) in [
            ("stdout", &ran.stdout),
            ("stderr", &ran.stderr),
            ("report", &report),
        ] {
            assert!(
                !text.contains(key.as_str()),
                "a full key ({}) in the {what}",
                &key[key.len() - 4..]
            );
        }
    }
}

fn mapping(env: &Env) -> String {
    env.info.env["APIKEYROTATIONAPPS"].clone()
}

/// Requests of the Entra double that exchanged a federated assertion, with their status.
async fn token_requests(env: &Env) -> Vec<u64> {
    env.requests()
        .await
        .into_iter()
        .filter(|r| {
            r["service"] == "authority"
                && r["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/oauth2/v2.0/token"))
        })
        .map(|r| r["status"].as_u64().unwrap())
        .collect()
}

/// The fixture's description of `case` up to its first quoted value (what is Entra's wording,
/// not the example's values).
fn fixture_wording(case: &str) -> (u64, String, String) {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/entra/federated-assertion-errors.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let e = fixture["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["case"] == case)
        .unwrap();
    let code = e["code"].as_u64().unwrap();
    let description = e["description"].as_str().unwrap();
    let wording = description
        .strip_prefix(&format!("AADSTS{code}: "))
        .unwrap()
        .split(['\'', '.'])
        .next()
        .unwrap()
        .to_string();
    (code, e["error"].as_str().unwrap().to_string(), wording)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_rotate_step_signs_in_with_the_jobs_oidc_token_and_rotates() {
    let env = Env::start().await;
    let token = oidc_token(&env, GITHUB_SUBJECT, 300).await;
    let ran = run_rotate_step(&env, Platform::GitHub, &mapping(&env), &token).await;
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("Rotation finished"), "{}", ran.stdout);
    let report = ran
        .report
        .as_ref()
        .expect("the report in $RUNNER_TEMP/report.json");
    assert_eq!(report["summary"]["failed"], 0, "{report}");
    assert!(report["summary"]["updated"].as_u64() > Some(0), "{report}");
    // The first run creates partner-apikey, which the sandbox left empty.
    let state = env.state().await;
    assert!(
        state["keyVaults"]["kv-partners-prd"]["partner-apikey"].is_string(),
        "{}",
        state["keyVaults"]
    );
    let statuses = token_requests(&env).await;
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == 200),
        "{statuses:?}"
    );
    assert_no_key(&env, &ran).await;
}

/// A token for a subject no federated credential names (another branch): Entra's AADSTS700213,
/// every target refused as Unauthenticated, exit 1, and the step fails saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_with_a_subject_entra_does_not_trust_fails_with_exit_1() {
    let env = Env::start().await;
    let token = oidc_token(&env, "repo:contoso/rotations:ref:refs/heads/feature", 300).await;
    let ran = run_rotate_step(&env, Platform::GitHub, &mapping(&env), &token).await;
    assert_eq!(ran.code, Some(1), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("::error::Some targets failed"),
        "{}",
        ran.stdout
    );
    let report = ran.report.as_ref().unwrap();
    let (code, _, wording) = fixture_wording("subject");
    let errors = report["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    let azure_targets: Vec<&Value> = errors
        .iter()
        .filter(|e| e["code"] == "Unauthenticated")
        .collect();
    assert!(!azure_targets.is_empty(), "{report}");
    for e in &azure_targets {
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("AADSTS{code}")) && message.contains(&wording),
            "{message}"
        );
        assert!(message.contains("refs/heads/feature"), "{message}");
    }
    // Only what needs no Entra token was written: the renewal in Apigee, the store reached
    // with its connection string.
    for w in env.writes().await {
        assert!(
            w["service"] == "apigee" || w["service"] == "appConfiguration",
            "{w}"
        );
    }
    let statuses = token_requests(&env).await;
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == 401),
        "{statuses:?}"
    );
    assert_no_key(&env, &ran).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_pipelines_rotate_step_signs_in_with_the_service_connections_token_and_rotates() {
    let env = Env::start().await;
    let token = oidc_token(&env, AZURE_DEVOPS_SUBJECT, 600).await;
    let ran = run_rotate_step(&env, Platform::AzureDevOps, &mapping(&env), &token).await;
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    let report = ran.report.as_ref().unwrap();
    assert_eq!(report["summary"]["failed"], 0, "{report}");
    assert!(report["summary"]["updated"].as_u64() > Some(0), "{report}");
    assert_no_key(&env, &ran).await;

    // The next scheduled run, with an expired token: Entra's AADSTS700024, exit 1.
    let expired = oidc_token(&env, AZURE_DEVOPS_SUBJECT, -60).await;
    let ran = run_rotate_step(&env, Platform::AzureDevOps, &mapping(&env), &expired).await;
    assert_eq!(ran.code, Some(1), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("##vso[task.logissue type=error]Some targets failed"),
        "{}",
        ran.stdout
    );
    let (code, _, wording) = fixture_wording("expired");
    let text = ran.report.as_ref().unwrap()["errors"].to_string();
    assert!(
        text.contains(&format!("AADSTS{code}")) && text.contains(&wording),
        "{text}"
    );
}

/// A target that refuses the write (Key Vault answers 403): the others are still written, exit
/// 1, and the step fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_pipelines_a_failed_target_fails_the_step_with_exit_1() {
    let env = Env::start().await;
    env.add_fault(&serde_json::json!({"service": "keyVault", "match": "/secrets/partner-apikey", "method": "PUT", "status": 403}))
        .await;
    let token = oidc_token(&env, AZURE_DEVOPS_SUBJECT, 600).await;
    let ran = run_rotate_step(&env, Platform::AzureDevOps, &mapping(&env), &token).await;
    assert_eq!(ran.code, Some(1), "{}\n{}", ran.stdout, ran.stderr);
    let report = ran.report.as_ref().unwrap();
    assert_eq!(report["summary"]["failed"], 1, "{report}");
    assert!(report["summary"]["updated"].as_u64() > Some(0), "{report}");
    assert!(ran
        .stdout
        .contains("##vso[task.logissue type=error]Some targets failed"));
    assert_no_key(&env, &ran).await;
}

/// A mapping file with a mistake: exit 2, the problem with its JSON path, nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_mapping_file_exits_2_and_changes_nothing() {
    let env = Env::start().await;
    let token = oidc_token(&env, GITHUB_SUBJECT, 300).await;
    let bad = r#"{"keyVault":[{"vaultUrl":"https://kv.vault.azure.net/","secrets":[{"secretName":"a b","apimAppName":"x"}]}]}"#;
    let ran = run_rotate_step(&env, Platform::GitHub, bad, &token).await;
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("::error::The run could not start"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("keyVault[0].secrets[0].secretName"),
        "{}",
        ran.stderr
    );
    assert!(env.writes().await.is_empty());
    assert_no_key(&env, &ran).await;
}

/// While another run holds the run lock (the function app's, in the storage account they
/// share), `rotate` exits 3 and changes nothing, and the step passes with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_a_run_in_progress_passes_the_step_with_a_warning() {
    use apikey_rotator::azure::retry::{Call, RetryPolicy};
    use apikey_rotator::azure::storage::{BlobClient, StorageAccount};
    use apikey_rotator::rotation::lock::{RunLock, LOCK_CONTAINER};
    let azurite = common::azurite::Azurite::start();
    let env = Env::start().await;
    let storage = azurite.connection_string();
    let call = Call::new(std::sync::Arc::new(RetryPolicy::default()), None);
    let other = RunLock::blob(
        BlobClient::new(
            reqwest::Client::new(),
            StorageAccount::from_connection_string(&storage).unwrap(),
        ),
        LOCK_CONTAINER,
        &format!("{}/rotation-run.lock", env.info.env["WEBSITE_SITE_NAME"]),
        std::time::Duration::from_secs(60),
    );
    let held = other.acquire(&call).await.unwrap();
    let token = oidc_token(&env, GITHUB_SUBJECT, 300).await;
    let extra = [("AzureWebJobsStorage", storage.as_str())];
    let ran = run_rotate_step_with(&env, Platform::GitHub, &mapping(&env), &token, &extra).await;
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("::warning::Another rotation run holds the lock"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("a run is in progress"),
        "{}",
        ran.stderr
    );
    assert!(env.writes().await.is_empty());
    held.release(&call).await;
}

/// No token file (the step that fetches it failed, or the path is wrong): the run cannot start,
/// exit 2, the setting and the file named, nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_without_the_token_file_exits_2_and_changes_nothing() {
    let env = Env::start().await;
    let ran = run_rotate_step(&env, Platform::GitHub, &mapping(&env), "").await;
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("::error::The run could not start"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("AZURE_FEDERATED_TOKEN_FILE")
            && ran.stderr.contains("azure-federated-token"),
        "{}",
        ran.stderr
    );
    assert!(env.writes().await.is_empty());
    assert!(token_requests(&env).await.is_empty());
}

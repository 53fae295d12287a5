//! The conformance suite every target kind passes against the sandbox (STYLE.md): read
//! missing, write then read back, an unchanged value causes no write, concurrent writers lose
//! nothing, errors carry the right kind, and no key reaches a log or an error.
//!
//! Each contract is a function taking a [`Fixture`]; [`conformance!`] stamps one `#[test]` per
//! kind per contract (`key_vault::write_then_read_back`), so every case passes or fails on its
//! own. A new target kind is done when it has a [`Fixture`], a line in the `conformance!` list,
//! and every test here passes for it.

use crate::common;

use apikey_rotator::azure::retry::{Call, RetryPolicy};
use apikey_rotator::azure::{credential, http};
use apikey_rotator::error::ErrorKind;
use apikey_rotator::mapping::AppsMapping;
use apikey_rotator::rotation::{run, RunOptions};
use apikey_rotator::secret::ApiKey;
use apikey_rotator::settings::Settings;
use apikey_rotator::targets::app_configuration::{AppConfigurationStore, KeyValueMapping};
use apikey_rotator::targets::app_settings::{SettingMapping, SiteGroup, SiteSection};
use apikey_rotator::targets::application_api::{ApiAuth, ApplicationApiMapping};
use apikey_rotator::targets::files::{FileGroup, FileKeyMapping, Format};
use apikey_rotator::targets::key_vault::{KeyVaultGroup, SecretMapping};
use apikey_rotator::targets::{plan, Container, Stored, TargetContext, Write};
use apikey_rotator::toolkit::{key_source, KeyRequest};
use common::Env;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One target kind under test: the sandbox service it talks to, and a mapping that names
/// entries of one container of that kind.
struct Fixture {
    /// Its type, as the report names it.
    report_type: &'static str,
    /// The sandbox's service name (request log, faults).
    service: &'static str,
    /// A mapping naming `entries` in one container of this kind, all for `app`.
    mapping: fn(&Env, &[&str], &str) -> AppsMapping,
}

const KEY_VAULT: Fixture = Fixture {
    report_type: "KEY_VAULT",
    service: "keyVault",
    mapping: key_vault_mapping,
};

const APPLICATION_API: Fixture = Fixture {
    report_type: "APPLICATION_API",
    service: "applicationApi",
    mapping: application_api_mapping,
};

const FUNCTION_APP_SLOT: Fixture = Fixture {
    report_type: "FUNCTION_APP",
    service: "resourceManager",
    mapping: function_app_slot_mapping,
};

const STATIC_WEB_APP: Fixture = Fixture {
    report_type: "STATIC_WEB_APP",
    service: "resourceManager",
    mapping: static_web_app_mapping,
};

const APP_CONFIGURATION_ENTRA: Fixture = Fixture {
    report_type: "APP_CONFIG",
    service: "appConfiguration",
    mapping: app_configuration_entra_mapping,
};

const APP_CONFIGURATION_HMAC: Fixture = Fixture {
    report_type: "APP_CONFIG",
    service: "appConfiguration",
    mapping: app_configuration_hmac_mapping,
};

// Files need no double: the fixture's file is in the test's own folder, faults are made on
// the file itself (see `file_fault`).
const FILES: Fixture = Fixture {
    report_type: "FILE",
    service: "files",
    mapping: files_mapping,
};

/// Stamps, for each `module: FIXTURE`, a module with one test per contract.
macro_rules! conformance {
    ($($module:ident: $fixture:expr;)*) => {$(
        mod $module {
            use super::*;
            conformance!(@contracts $fixture;
                read_missing_is_missing,
                write_then_read_back,
                unchanged_value_causes_no_write,
                interleaved_read_modify_writes_lose_nothing,
                concurrent_writers_lose_nothing,
                errors_carry_the_right_kind,
                no_key_in_logs_or_errors,
            );
        }
    )*};
    (@contracts $fixture:expr; $($contract:ident,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $contract() {
            super::$contract(&$fixture).await;
        }
    )*};
}

// Every target kind (App Configuration twice: Entra ID and HMAC). Add a kind here to put it
// through the suite.
conformance! {
    key_vault: KEY_VAULT;
    application_api: APPLICATION_API;
    function_app_slot: FUNCTION_APP_SLOT;
    static_web_app: STATIC_WEB_APP;
    app_configuration_entra: APP_CONFIGURATION_ENTRA;
    app_configuration_hmac: APP_CONFIGURATION_HMAC;
    files: FILES;
}

/// The sandbox's subscription (see `sandbox/demo.rs`).
const SANDBOX_SUBSCRIPTION: &str = "5a4db0c5-0000-4000-8000-00000000a5b1";

fn site_mapping(
    section: SiteSection,
    rg: &str,
    name: &str,
    slot: Option<&str>,
    entries: &[&str],
    app: &str,
) -> AppsMapping {
    let settings = entries
        .iter()
        .map(|e| SettingMapping {
            setting_name: e.to_string(),
            apim_app_name: app.into(),
        })
        .collect();
    AppsMapping::default().with([SiteGroup {
        section,
        subscription_id: SANDBOX_SUBSCRIPTION.into(),
        resource_group: rg.into(),
        name: name.into(),
        slot: slot.map(String::from),
        settings,
    }])
}

/// Key-values with the null label in one store; Entra ID, or HMAC with `setting`.
fn app_configuration_mapping(
    env: &Env,
    store: &str,
    setting: Option<&str>,
    entries: &[&str],
    app: &str,
) -> AppsMapping {
    let endpoint = env.info.endpoints.app_configurations[store]["endpoint"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let keys = entries
        .iter()
        .map(|e| KeyValueMapping {
            key: e.to_string(),
            label: None,
            apim_app_name: app.into(),
        })
        .collect();
    AppsMapping::default().with([AppConfigurationStore {
        endpoint,
        connection_string_setting: setting.map(str::to_string),
        keys,
    }])
}

fn function_app_slot_mapping(_: &Env, entries: &[&str], app: &str) -> AppsMapping {
    site_mapping(
        SiteSection::FunctionApp,
        "rg-orders",
        "func-orders",
        Some("staging"),
        entries,
        app,
    )
}

fn static_web_app_mapping(_: &Env, entries: &[&str], app: &str) -> AppsMapping {
    site_mapping(
        SiteSection::StaticWebApp,
        "rg-web",
        "swa-portal",
        None,
        entries,
        app,
    )
}

fn app_configuration_entra_mapping(env: &Env, entries: &[&str], app: &str) -> AppsMapping {
    app_configuration_mapping(env, "appcs-consumers", None, entries, app)
}

fn app_configuration_hmac_mapping(env: &Env, entries: &[&str], app: &str) -> AppsMapping {
    let setting = Some("APPCS_PARTNERS_CONNECTION_STRING");
    app_configuration_mapping(env, "appcs-partners", setting, entries, app)
}

fn key_vault_mapping(env: &Env, entries: &[&str], app: &str) -> AppsMapping {
    let vault_url = env.info.endpoints.key_vaults["kv-partners-prd"]
        .parse()
        .unwrap();
    let secrets = entries
        .iter()
        .map(|e| SecretMapping {
            secret_name: e.to_string(),
            apim_app_name: app.into(),
        })
        .collect();
    AppsMapping::default().with([KeyVaultGroup {
        vault_url,
        vault_label: "kv-partners-prd".into(),
        secrets,
    }])
}

fn application_api_mapping(env: &Env, entries: &[&str], app: &str) -> AppsMapping {
    let http_url: url::Url = env.info.endpoints.application_apis["referenceapi-prd"]
        .parse()
        .unwrap();
    let auth = ApiAuth::ManagedIdentity {
        scope: "api://apikey-consumer-sandbox/.default".into(),
    };
    let apis: Vec<_> = entries
        .iter()
        .map(|e| ApplicationApiMapping {
            http_url: http_url.clone(),
            app_name: e.to_string(),
            apim_app_name: app.into(),
            auth: auth.clone(),
        })
        .collect();
    AppsMapping::default().with(apis)
}

/// The folder of the files fixture, inside the test's own folder (`FILES_ALLOWED_ROOTS`).
fn files_root(env: &Env) -> std::path::PathBuf {
    env.dir.path().join("files")
}

/// An `.env` file in the test's folder (created empty the first time), holding `entries`.
fn files_mapping(env: &Env, entries: &[&str], app: &str) -> AppsMapping {
    let path = files_root(env).join("keys.env");
    std::fs::create_dir_all(files_root(env)).unwrap();
    if !path.exists() {
        std::fs::write(&path, "# conformance\n").unwrap();
    }
    let keys = entries
        .iter()
        .map(|e| FileKeyMapping {
            key: e.to_string(),
            apim_app_name: app.into(),
        })
        .collect();
    AppsMapping::default().with([FileGroup {
        path,
        format: Format::Env,
        backup: false,
        keys,
    }])
}

/// Makes the files fixture's file fail as a service answering `status` would, where a file
/// can: refused (403, 400) is the file replaced by a symlink to a file outside
/// `FILES_ALLOWED_ROOTS` (refused whoever runs the test, root included). `None` where no file
/// fault matches (throttled, unavailable: a file has neither).
fn file_fault(env: &Env, status: u16) -> Option<()> {
    if !matches!(status, 400 | 403) {
        return None;
    }
    let path = files_root(env).join("keys.env");
    let outside = env.dir.path().join("outside.env");
    std::fs::write(&outside, "").unwrap();
    std::fs::rename(&path, files_root(env).join("keys.env.saved")).unwrap();
    std::os::unix::fs::symlink(&outside, &path).unwrap();
    Some(())
}

fn clear_file_fault(env: &Env) {
    let path = files_root(env).join("keys.env");
    std::fs::remove_file(&path).unwrap();
    std::fs::rename(files_root(env).join("keys.env.saved"), &path).unwrap();
}

const APP3: &str = "ApiKeyRotator_TestApp3_Sandbox";

/// Settings that reach the sandbox with its service principal (no process environment needed).
fn settings(env: &Env) -> Arc<Settings> {
    let client_id = env.info.env["SANDBOX_CLIENT_ID"].clone();
    let secret = env.info.env["SANDBOX_CLIENT_SECRET"].clone();
    Arc::new(Settings::from_map(env.settings(&[
        ("IDENTITY_ENDPOINT", ""),
        ("IDENTITY_HEADER", ""),
        ("AZURE_CLIENT_ID", &client_id),
        ("AZURE_CLIENT_SECRET", &secret),
        (
            "FILES_ALLOWED_ROOTS",
            &files_root(env).display().to_string(),
        ),
    ])))
}

fn deps(env: &Env) -> TargetContext {
    let settings = settings(env);
    let ca = std::fs::read(&env.info.ca_cert_file).unwrap();
    let http = http::build_client(Some(&ca), Duration::from_secs(10)).unwrap();
    TargetContext {
        credential: credential::build(&settings, &http).unwrap(),
        http,
        cloud: settings.cloud.clone(),
        settings,
        vaults: Default::default(),
        call: Call::new(Arc::new(RetryPolicy::default()), None),
    }
}

/// The one container of `mapping`.
fn container(
    env: &Env,
    deps: &TargetContext,
    fixture: &Fixture,
    entries: &[&str],
) -> Arc<dyn Container> {
    let mapping = (fixture.mapping)(env, entries, APP3);
    let mut planned = plan(&mapping, deps).unwrap();
    assert_eq!(
        planned.len(),
        1,
        "{}: one container expected",
        fixture.report_type
    );
    planned.remove(0).container
}

fn write(name: &str, key: &ApiKey) -> Write {
    Write {
        name: name.into(),
        apim_app_name: APP3.into(),
        key: key.clone(),
        expires_at: None,
    }
}

fn fresh_key(tag: &str) -> ApiKey {
    ApiKey::new(format!("conformance{tag}{}", uuid::Uuid::new_v4().simple()))
}

/// Reading an entry that was never written is `Stored::Missing`, not an error.
async fn read_missing_is_missing(f: &Fixture) {
    let env = Env::start().await;
    let deps = deps(&env);
    let c = container(&env, &deps, f, &["never-written-1"]);
    let got = c.read(&["never-written-1".into()]).await;
    assert!(
        matches!(got.as_slice(), [Ok(Stored::Missing)]),
        "{}: {got:?}",
        f.report_type
    );
    assert_eq!(c.target_type().report_type(), f.report_type);
}

/// What is written reads back as the same key, and only the named entries change.
async fn write_then_read_back(f: &Fixture) {
    let env = Env::start().await;
    let deps = deps(&env);
    let names = ["conf-a", "conf-b"];
    let c = container(&env, &deps, f, &names);
    let (a, b) = (fresh_key("a"), fresh_key("b"));
    let results = c.write(&[write("conf-a", &a)]).await;
    assert!(
        results.iter().all(Result::is_ok),
        "{}: {results:?}",
        f.report_type
    );
    let got = c.read(&names.map(String::from)).await;
    assert!(
        got[0].as_ref().unwrap().holds(&a),
        "{}: {got:?}",
        f.report_type
    );
    assert_eq!(
        got[1].as_ref().unwrap(),
        &Stored::Missing,
        "{}: an unnamed entry changed",
        f.report_type
    );
    assert!(c.write(&[write("conf-a", &b)]).await[0].is_ok());
    assert!(
        c.read(&["conf-a".into()]).await[0]
            .as_ref()
            .unwrap()
            .holds(&b),
        "{}: overwrite",
        f.report_type
    );
}

/// A run over a target that already holds the current key writes nothing.
async fn unchanged_value_causes_no_write(f: &Fixture) {
    let env = Env::start().await;
    let deps = deps(&env);
    let keys = key_source(&deps.settings, deps.http.clone()).unwrap();
    let current = keys
        .current_key(&deps.call, APP3, KeyRequest::default())
        .await
        .unwrap()
        .api_key;
    let mapping = (f.mapping)(&env, &["conf-unchanged"], APP3);
    let planned = plan(&mapping, &deps).unwrap();
    assert!(planned[0]
        .container
        .write(&[write("conf-unchanged", &current)])
        .await[0]
        .is_ok());
    env.clear_requests().await;
    let report = run(
        &deps.call,
        keys.as_ref(),
        &planned,
        &[APP3.to_string()],
        &RunOptions::default(),
        &deps,
    )
    .await;
    assert_eq!(
        (report.summary.unchanged, report.summary.updated),
        (1, 0),
        "{}: {report:?}",
        f.report_type
    );
    let writes: Vec<_> = env
        .writes()
        .await
        .into_iter()
        .filter(|r| r["service"] == f.service)
        .collect();
    assert!(
        writes.is_empty(),
        "{}: an unchanged value was written: {writes:?}",
        f.report_type
    );
}

/// Two read-compare-write cycles that interleave on the same container (both read, then both
/// write different entries, as two runs or two apps' targets could) lose neither update.
async fn interleaved_read_modify_writes_lose_nothing(f: &Fixture) {
    let env = Env::start().await;
    let deps = deps(&env);
    let names = ["conf-interleaved-a", "conf-interleaved-b"];
    let (first, second) = (
        container(&env, &deps, f, &names),
        container(&env, &deps, f, &names),
    );
    let (a, b) = (fresh_key("ia"), fresh_key("ib"));
    assert!(first.read(&[names[0].into()]).await[0].is_ok());
    assert!(second.read(&[names[1].into()]).await[0].is_ok());
    assert!(
        first.write(&[write(names[0], &a)]).await[0].is_ok(),
        "{}",
        f.report_type
    );
    assert!(
        second.write(&[write(names[1], &b)]).await[0].is_ok(),
        "{}",
        f.report_type
    );
    let got = container(&env, &deps, f, &names)
        .read(&names.map(String::from))
        .await;
    assert!(
        got[0].as_ref().unwrap().holds(&a),
        "{}: the first writer's update was lost",
        f.report_type
    );
    assert!(
        got[1].as_ref().unwrap().holds(&b),
        "{}: the second writer's update was lost",
        f.report_type
    );
}

/// Writers working on different entries of the same container at once lose nothing.
async fn concurrent_writers_lose_nothing(f: &Fixture) {
    let env = Env::start().await;
    let deps = deps(&env);
    let names: Vec<String> = (0..6).map(|i| format!("conf-concurrent-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let keys: Vec<ApiKey> = names.iter().map(|n| fresh_key(n)).collect();
    // Separate containers (as two runs would have), each writing its own entries at once.
    let writers = names.iter().zip(&keys).map(|(name, key)| {
        let c = container(&env, &deps, f, &refs);
        let w = write(name, key);
        async move { c.write(&[w]).await }
    });
    for result in futures::future::join_all(writers).await {
        assert!(
            result.iter().all(Result::is_ok),
            "{}: {result:?}",
            f.report_type
        );
    }
    let got = container(&env, &deps, f, &refs).read(&names).await;
    for ((name, key), stored) in names.iter().zip(&keys).zip(got) {
        assert!(
            stored.unwrap().holds(key),
            "{}: the write to {name} was lost",
            f.report_type
        );
    }
}

/// Service errors become the right kind: refused is PermissionDenied (permanent), throttled
/// is RateLimited and unavailable is Unavailable (both temporary).
async fn errors_carry_the_right_kind(f: &Fixture) {
    let env = Env::start().await;
    let deps = deps(&env);
    for (status, kind, temporary) in [
        (403, ErrorKind::PermissionDenied, false),
        (429, ErrorKind::RateLimited, true),
        (503, ErrorKind::Unavailable, true),
    ] {
        let c = container(&env, &deps, f, &["conf-faulty"]);
        if f.report_type == FILES.report_type {
            if file_fault(&env, status).is_none() {
                continue;
            }
            let got = c.read(&["conf-faulty".into()]).await;
            clear_file_fault(&env);
            let err = got[0].as_ref().expect_err("a fault must be an error");
            assert_eq!(
                (err.kind(), err.is_temporary()),
                (kind, temporary),
                "{status}: {err}"
            );
            continue;
        }
        let fault =
            serde_json::json!({"service": f.service, "match": "", "status": status, "times": 50});
        let url = format!("{}/faults", env.info.endpoints.admin);
        assert!(env
            .admin
            .post(&url)
            .json(&fault)
            .send()
            .await
            .unwrap()
            .status()
            .is_success());
        let got = c.read(&["conf-faulty".into()]).await;
        env.admin.delete(&url).send().await.unwrap();
        let err = got[0].as_ref().expect_err("a fault must be an error");
        assert_eq!(
            (err.kind(), err.is_temporary()),
            (kind, temporary),
            "{} {status}: {err}",
            f.report_type
        );
        assert_eq!(err.status(), Some(status), "{} {status}", f.report_type);
    }
}

/// No full key appears in what the targets log or in their errors.
async fn no_key_in_logs_or_errors(f: &Fixture) {
    let logs = captured_logs();
    let before = logs.lock().unwrap().len();

    let env = Env::start().await;
    let deps = deps(&env);
    let key = fresh_key("leak");
    let c = container(&env, &deps, f, &["conf-leak"]);
    assert!(c.write(&[write("conf-leak", &key)]).await[0].is_ok());
    let fault = serde_json::json!({"service": f.service, "match": "", "status": 400, "times": 1});
    let file_faulted = f.report_type == FILES.report_type && file_fault(&env, 400).is_some();
    if !file_faulted {
        env.admin
            .post(format!("{}/faults", env.info.endpoints.admin))
            .json(&fault)
            .send()
            .await
            .unwrap();
    }
    let failed = c.write(&[write("conf-leak", &key)]).await;
    if file_faulted {
        clear_file_fault(&env);
    }
    let err = failed[0]
        .as_ref()
        .expect_err("the fault must fail the write");
    assert!(
        !err.to_string().contains(key.expose()) && !format!("{err:?}").contains(key.expose()),
        "{}",
        f.report_type
    );
    assert!(c.read(&["conf-leak".into()]).await[0]
        .as_ref()
        .unwrap()
        .holds(&key));
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        text.len() > before,
        "the capture must see the targets' logs"
    );
    assert!(
        !text.contains(key.expose()),
        "{}: a key reached the log",
        f.report_type
    );
}

/// Everything the test process logs, from the first call on. One subscriber for the whole
/// process rather than one per test (`set_default`): the tests of this binary run side by side,
/// and a callsite first reached on a thread without a subscriber could otherwise stay silent
/// for a test's own. Any test's full key in it is a leak, whoever logged it.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = logs.clone();
        // TRACE for everything but the HTTP stack's own internals (frames, TLS records), which
        // would only grow the buffer: the rotator's, the SDK's and reqwest's events all stay.
        let filter = tracing_subscriber::EnvFilter::new(
            "trace,hyper=debug,hyper_util=debug,h2=debug,rustls=debug,tokio_util=debug",
        );
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || Capture(sink.clone()))
            .try_init()
            .expect("no other global subscriber in the test binary");
        logs
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

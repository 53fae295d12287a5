//! The fault matrix (issue 5, README "Failure handling"): every place a rotation run talks to
//! meets every kind of fault the sandbox injects, and the run must retry where the policy
//! retries, give up where it must, write nothing twice, lose no update and leave the other
//! targets alone.
//!
//! - **Rows** ([`TARGET_SPOTS`], [`ISSUER_SPOTS`], [`TOKEN_SPOTS`]) are the spots a fault is put
//!   on: the read and the write of each target kind (a Key Vault secret, an App Configuration
//!   key-value in the Entra ID store and in the HMAC store, the app settings of a Function App
//!   slot, a Web App and a Static Web App, an application API), the issuer (Apigee: the app
//!   read, and the key creation of the app the demo data renews), and the token endpoints (the
//!   managed-identity endpoint in the default setup, Entra ID in a service-principal setup).
//! - **Columns** ([`Fault`]) are what the fault does: a 503 twice with `Retry-After`, a 429 once
//!   and until cleared with `Retry-After`, a 503 until cleared, a final 403 with the service's
//!   error body, a reset connection, no answer once and until cleared (with a 1 s request
//!   timeout), a malformed 200, a delay below the timeout, and for writes an answer lost after
//!   the service applied the request.
//! - **Cells** ([`Spot::code`]) say whether the run rides through the fault or which error code
//!   the spot's targets get.
//!
//! Each case gets a fresh sandbox with the demo data (a fault-free run has 17 targets: 13
//! updated, 4 unchanged, 1 key renewed) and the real binary, and asserts:
//! - every target is reported once; the spot's targets as in a fault-free run when the fault is
//!   retried away, else as errors with the cell's code (for the issuer: a `TOOLKIT` error and
//!   `KeyUnavailable` for the app's targets); every other target exactly as in a fault-free run;
//! - how many requests the spot saw: the policy's retries where it retries, one where it must
//!   not (a final status, a malformed answer); for a request that may not be repeated blindly
//!   (the key creation, a settings PUT that restarts the site), one read of what the service
//!   holds after each outcome that is unknown, and no repeat when that read finds it applied;
//! - that the run waited at least what `Retry-After`, the delays and the timeouts impose;
//! - that a failed target was not written (its stored value is unchanged);
//! - that no write succeeded twice in one run, no site restarted twice in one run, and the API
//!   manager holds exactly one new key;
//! - that with the fault cleared the next run updates exactly what the faulted run could not,
//!   the one after writes nothing, and every store holds its app's current key;
//! - that no full key appears in the handler's logs or in the reports.
//!
//! The cases of a table run side by side, a few at a time, since most of their time is spent
//! waiting for backoff and timeouts (about 40 s for the three tables on two cores). A failing
//! case does not stop the others: the test fails at the end, listing every failing case.

use crate::common;

use common::{Env, Handler};
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

const APP1: &str = "APIKeyRotator_TestApp1_Sandbox";
const APP2: &str = "APIKeyRotator_TestApp2_Sandbox";
const APP3: &str = "ApiKeyRotator_TestApp3_Sandbox";

/// Cases of one table in flight at once.
const PARALLEL_CASES: usize = 8;

/// The demo mapping's targets, as [`target_id`] names them, with their app and where the
/// sandbox's state holds the value they stand for (a JSON pointer; for a Key Vault reference,
/// the referenced secret).
#[rustfmt::skip]
const TARGETS: [(&str, &str, &str); 17] = [
    (KV_HEALTHCHECK, APP1, "/keyVaults/kv-consumers-prd/healthcheck-prd-apikey"),
    (KV_ORDERS, APP2, "/keyVaults/kv-consumers-prd/orders-prd-apikey"),
    ("KEY_VAULT kv-consumers-prd/reference-prd-apikey", APP3, "/keyVaults/kv-consumers-prd/reference-prd-apikey"),
    ("KEY_VAULT kv-partners-prd/partner-apikey", APP2, "/keyVaults/kv-partners-prd/partner-apikey"),
    (API_HEALTHCHECK, APP1, "/applicationApis/healthcheck-api/apiKey"),
    ("APPLICATION_API api/referenceapi-prd", APP3, "/applicationApis/referenceapi-prd/apiKey"),
    (FUNC_ORDERS, APP2, "/resourceManager/sites/func-orders~1slots~1staging/appSettings/ORDERS_API_KEY"),
    (FUNC_HEALTHCHECK, APP1, "/resourceManager/sites/func-orders~1slots~1staging/appSettings/HEALTHCHECK_API_KEY"),
    (WEB_CATALOG, APP2, "/resourceManager/sites/app-storefront/appSettings/CATALOG_API_KEY"),
    (WEB_HEALTHCHECK_REF, APP1, "/keyVaults/kv-consumers-prd/webapp-ref-apikey"),
    ("WEB_APP app-storefront/staging/CATALOG_API_KEY", APP2, "/resourceManager/sites/app-storefront~1slots~1staging/appSettings/CATALOG_API_KEY"),
    (SWA_PORTAL, APP3, "/resourceManager/sites/swa-portal/appSettings/PORTAL_API_KEY"),
    (APPCS_HEALTHCHECK, APP1, "/appConfigurations/appcs-consumers/keyValues/healthcheck-sbx-apikey?label=sandbox/value"),
    ("APP_CONFIG appcs-consumers/Orders:ApiKey", APP2, "/appConfigurations/appcs-consumers/keyValues/Orders:ApiKey/value"),
    ("APP_CONFIG appcs-consumers/Reference:ApiKey?label=prd", APP3, "/appConfigurations/appcs-consumers/keyValues/Reference:ApiKey?label=prd/value"),
    (APPCS_ORDERS_REF, APP2, "/keyVaults/kv-consumers-prd/appcs-ref-apikey"),
    (APPCS_PARTNER, APP3, "/appConfigurations/appcs-partners/keyValues/Partner:ApiKey?label=partners/value"),
];

const KV_HEALTHCHECK: &str = "KEY_VAULT kv-consumers-prd/healthcheck-prd-apikey";
const KV_ORDERS: &str = "KEY_VAULT kv-consumers-prd/orders-prd-apikey";
const API_HEALTHCHECK: &str = "APPLICATION_API api/healthcheck-api";
const FUNC_ORDERS: &str = "FUNCTION_APP func-orders/staging/ORDERS_API_KEY";
const FUNC_HEALTHCHECK: &str = "FUNCTION_APP func-orders/staging/HEALTHCHECK_API_KEY";
const WEB_CATALOG: &str = "WEB_APP app-storefront/CATALOG_API_KEY";
const WEB_HEALTHCHECK_REF: &str = "WEB_APP app-storefront/HEALTHCHECK_API_KEY";
const SWA_PORTAL: &str = "STATIC_WEB_APP swa-portal/PORTAL_API_KEY";
const APPCS_HEALTHCHECK: &str = "APP_CONFIG appcs-consumers/healthcheck-sbx-apikey?label=sandbox";
const APPCS_ORDERS_REF: &str = "APP_CONFIG appcs-consumers/Orders:ApiKeyRef?label=prd";
const APPCS_PARTNER: &str = "APP_CONFIG appcs-partners/Partner:ApiKey?label=partners";

/// What a fault does (the columns of the matrix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// 503 with `Retry-After: 1`, twice, then the service answers.
    Transient,
    /// 429 with `Retry-After: 1`, once.
    Throttled,
    /// 429 with `Retry-After: 1` until cleared.
    Throttling,
    /// 503 until cleared.
    Down,
    /// 403 with the service's error body: final.
    Refused,
    /// The connection is reset once.
    Reset,
    /// No answer once (the request timeout is 1 s).
    HangsOnce,
    /// No answer until cleared (the request timeout is 1 s).
    Hangs,
    /// A 200 with a truncated JSON body, until cleared.
    Malformed,
    /// Every answer 500 ms late (below the timeout).
    Slow,
    /// The service applies the request, then the connection is reset before the answer.
    Lost,
}

use Fault::*;

/// The faults every read is put through.
const READ_FAULTS: [Fault; 10] = [
    Transient, Throttled, Throttling, Down, Refused, Reset, HangsOnce, Hangs, Malformed, Slow,
];
/// The faults every write is put through.
const WRITE_FAULTS: [Fault; 5] = [Transient, Down, Refused, Reset, Lost];

impl Fault {
    /// The sandbox's fault spec, but for the service, path match and method.
    fn spec(self) -> Value {
        match self {
            Transient => {
                json!({"kind": "status", "status": 503, "retryAfterSeconds": 1, "times": 2})
            }
            Throttled => {
                json!({"kind": "status", "status": 429, "retryAfterSeconds": 1, "times": 1})
            }
            Throttling => json!({"kind": "status", "status": 429, "retryAfterSeconds": 1}),
            Down => json!({"kind": "status", "status": 503}),
            Refused => json!({"kind": "status", "status": 403}),
            Reset => json!({"kind": "reset", "times": 1}),
            HangsOnce => json!({"kind": "timeout", "times": 1}),
            Hangs => json!({"kind": "timeout"}),
            Malformed => json!({"kind": "malformed"}),
            Slow => json!({"delayMs": 500}),
            Lost => json!({"kind": "lost", "times": 1}),
        }
    }

    /// Settings the fault needs (a short request timeout for the faults that never answer).
    fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            HangsOnce | Hangs => &[("ROTATION_REQUEST_TIMEOUT_SECONDS", "1")],
            _ => &[],
        }
    }

    /// Whether the run rides through the fault (the policy retries it away, or it only slows).
    fn passes(self) -> bool {
        matches!(
            self,
            Transient | Throttled | Reset | HangsOnce | Slow | Lost
        )
    }

    /// Requests of one call that meets the fault: the retries it takes to pass, or the
    /// policy's 4 attempts, or 1 for what is never retried.
    fn requests(self) -> usize {
        match self {
            Transient => 3,
            Throttled | Reset | HangsOnce | Lost => 2,
            Throttling | Down | Hangs => 4,
            Refused | Malformed | Slow => 1,
        }
    }

    /// The least a run that meets the fault once must have waited.
    fn waits(self) -> Duration {
        match self {
            Transient => Duration::from_secs(2),
            Throttled | HangsOnce => Duration::from_secs(1),
            Throttling => Duration::from_secs(3),
            Hangs => Duration::from_secs(4),
            Slow => Duration::from_millis(500),
            _ => Duration::ZERO,
        }
    }
}

/// The targets a spot's failure fails.
#[derive(Clone, Copy, Debug)]
enum Hits {
    /// These targets, with the cell's code.
    Targets(&'static [&'static str]),
    /// The toolkit cannot give this app's key: a `TOOLKIT` error with the cell's code, and the
    /// app's targets `KeyUnavailable`.
    App(&'static str),
    /// Every target but these, with the cell's code.
    AllBut(&'static [&'static str]),
}

/// How the handler authenticates to Azure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    ManagedIdentity,
    ServicePrincipal,
}

/// The codes a spot's targets get when a fault is not ridden through.
#[derive(Clone, Copy, Debug)]
struct Codes {
    throttling: &'static str,
    down: &'static str,
    refused: &'static str,
    hangs: &'static str,
    malformed: &'static str,
}

/// Where a fault is put (a row of the matrix).
#[derive(Clone, Copy, Debug)]
struct Spot {
    name: &'static str,
    service: &'static str,
    method: &'static str,
    /// Substring of the faulted requests' path (and query).
    path: &'static str,
    /// Requests that match `path` but whose path contains this are not the spot's (a key's
    /// sub-resources, `.../keys/{key}`).
    except: Option<&'static str>,
    hits: Hits,
    codes: Codes,
    faults: &'static [Fault],
    setup: Setup,
    /// Calls that reach the spot in a fault-free run (a token endpoint: one per audience, as a
    /// failed fetch is the answer for the rest of the run).
    calls: usize,
    /// A request that may not be repeated blindly (a key creation, a settings PUT that
    /// restarts the site): after an outcome that is unknown, what the service holds is read
    /// again (the requests of the service whose path ends with this) before it is repeated.
    checked_by: Option<&'static str>,
}

impl Spot {
    /// The cell: `None` when the run rides through `fault`, else the code of the spot's
    /// targets.
    fn code(&self, fault: Fault) -> Option<&'static str> {
        match fault {
            f if f.passes() => None,
            Throttling => Some(self.codes.throttling),
            Down => Some(self.codes.down),
            Refused => Some(self.codes.refused),
            Hangs => Some(self.codes.hangs),
            _ => Some(self.codes.malformed),
        }
    }

    /// Whether a logged request is one of this spot's.
    fn sees(&self, r: &Value) -> bool {
        let path = r["path"].as_str().unwrap_or_default();
        let target = match r["query"].as_str() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        r["service"] == self.service
            && r["method"] == self.method
            && target.contains(self.path)
            && self.except.is_none_or(|sub| !path.contains(sub))
            // Key Vault's authentication challenge is a handshake, not a retry.
            && r["status"] != 401
    }
}

/// The default spot: managed identity, one call, idempotent; `faults` and `codes` to fill in.
const SPOT: Spot = Spot {
    name: "",
    service: "",
    method: "GET",
    path: "",
    except: None,
    hits: Hits::Targets(&[]),
    codes: Codes {
        throttling: "TooManyRequests",
        down: "ServiceUnavailable",
        refused: "Forbidden",
        hangs: "ServiceUnavailable",
        malformed: "Unexpected",
    },
    faults: &READ_FAULTS,
    setup: Setup::ManagedIdentity,
    calls: 1,
    checked_by: None,
};

/// A spot on `service`'s `method` requests whose path (with its query) contains `path`,
/// failing `targets`; the rest as [`SPOT`].
const fn spot(
    name: &'static str,
    service: &'static str,
    method: &'static str,
    path: &'static str,
    targets: &'static [&'static str],
) -> Spot {
    Spot {
        name,
        service,
        method,
        path,
        hits: Hits::Targets(targets),
        ..SPOT
    }
}

/// A Resource Manager spot: a refusal is ARM's `AuthorizationFailed`.
const fn arm(spot: Spot) -> Spot {
    Spot {
        codes: Codes {
            refused: "AuthorizationFailed",
            ..SPOT.codes
        },
        ..spot
    }
}

/// The write of `read`'s targets, put through the write faults.
const fn write(read: Spot, name: &'static str, method: &'static str, path: &'static str) -> Spot {
    Spot {
        name,
        method,
        path,
        faults: &WRITE_FAULTS,
        ..read
    }
}

/// The settings PUT of `list`'s site, which is checked by listing again before it is repeated.
const fn settings_put(list: Spot, name: &'static str, path: &'static str) -> Spot {
    Spot {
        checked_by: Some(list.path),
        ..write(list, name, "PUT", path)
    }
}

#[rustfmt::skip]
const KEY_VAULT: Spot = spot("Key Vault secret: read", "keyVault", "GET", "/secrets/orders-prd-apikey", &[KV_ORDERS]);
#[rustfmt::skip]
const APP_CONFIGURATION: Spot = spot("App Configuration key-value (Entra ID): read", "appConfiguration", "GET", "/kv/healthcheck-sbx-apikey", &[APPCS_HEALTHCHECK]);
#[rustfmt::skip]
const APP_CONFIGURATION_HMAC: Spot = spot("App Configuration key-value (HMAC): read", "appConfiguration", "GET", "/kv/Partner:ApiKey", &[APPCS_PARTNER]);
#[rustfmt::skip]
const FUNCTION_APP_SLOT: Spot = arm(spot("Function App slot settings: list", "resourceManager", "POST", "/sites/func-orders/slots/staging/config/appsettings/list", &[FUNC_ORDERS, FUNC_HEALTHCHECK]));
#[rustfmt::skip]
const WEB_APP: Spot = arm(spot("Web App settings: list", "resourceManager", "POST", "/sites/app-storefront/config/appsettings/list", &[WEB_CATALOG, WEB_HEALTHCHECK_REF]));
#[rustfmt::skip]
const STATIC_WEB_APP: Spot = arm(spot("Static Web App settings: list", "resourceManager", "POST", "/staticSites/swa-portal/listAppSettings", &[SWA_PORTAL]));
#[rustfmt::skip]
const APPLICATION_API: Spot = spot("application API: read", "applicationApi", "GET", "appName=healthcheck-api", &[API_HEALTHCHECK]);

/// The target kinds: each one's read, then each one's write.
#[rustfmt::skip]
const TARGET_SPOTS: [Spot; 13] = [
    KEY_VAULT,
    APP_CONFIGURATION,
    APP_CONFIGURATION_HMAC,
    FUNCTION_APP_SLOT,
    WEB_APP,
    STATIC_WEB_APP,
    APPLICATION_API,
    write(KEY_VAULT, "Key Vault secret: write", "PUT", KEY_VAULT.path),
    write(APP_CONFIGURATION, "App Configuration key-value (Entra ID): write", "PUT", APP_CONFIGURATION.path),
    write(APP_CONFIGURATION_HMAC, "App Configuration key-value (HMAC): write", "PUT", APP_CONFIGURATION_HMAC.path),
    settings_put(FUNCTION_APP_SLOT, "Function App slot settings: write", "/sites/func-orders/slots/staging/config/appsettings"),
    settings_put(STATIC_WEB_APP, "Static Web App settings: write", "/staticSites/swa-portal/config/appsettings"),
    write(APPLICATION_API, "application API: write", "POST", "/internal/api-keys"),
];

/// The issuer: the renewed app's read, and its key creation.
const ISSUER_SPOTS: [Spot; 2] = [
    Spot {
        name: "Apigee: app read",
        service: "apigee",
        path: "/apps/APIKeyRotator_TestApp1_Sandbox",
        hits: Hits::App(APP1),
        codes: APIGEE_CODES,
        ..SPOT
    },
    Spot {
        name: "Apigee: key creation",
        service: "apigee",
        method: "POST",
        path: "/apps/APIKeyRotator_TestApp1_Sandbox/keys",
        except: Some("/keys/"),
        hits: Hits::App(APP1),
        codes: APIGEE_CODES,
        faults: &[
            Transient, Throttled, Throttling, Down, Refused, Reset, HangsOnce, Hangs, Malformed,
            Slow, Lost,
        ],
        checked_by: Some("/apps/APIKeyRotator_TestApp1_Sandbox"),
        ..SPOT
    },
];

/// Apigee's own status names a refusal (Google's canonical codes).
const APIGEE_CODES: Codes = Codes {
    refused: "PERMISSION_DENIED",
    ..SPOT.codes
};

/// The token endpoints: the managed-identity endpoint of the default setup, for one audience
/// and for every audience, and Entra ID in a service-principal setup (every audience).
const TOKEN_SPOTS: [Spot; 3] = [
    Spot {
        name: "managed identity: Key Vault token",
        service: "identity",
        path: "resource=https%3A%2F%2Fvault.azure.net",
        hits: Hits::Targets(&[
            KV_HEALTHCHECK,
            KV_ORDERS,
            "KEY_VAULT kv-consumers-prd/reference-prd-apikey",
            "KEY_VAULT kv-partners-prd/partner-apikey",
            WEB_HEALTHCHECK_REF,
            APPCS_ORDERS_REF,
        ]),
        codes: TOKEN_CODES,
        ..SPOT
    },
    Spot {
        name: "managed identity: every token",
        service: "identity",
        path: "/msi/token",
        // The HMAC store needs no token.
        hits: Hits::AllBut(&[APPCS_PARTNER]),
        codes: TOKEN_CODES,
        calls: 4,
        ..SPOT
    },
    Spot {
        name: "Entra ID (service principal): token",
        service: "authority",
        method: "POST",
        path: "/oauth2/v2.0/token",
        hits: Hits::AllBut(&[APPCS_PARTNER]),
        codes: TOKEN_CODES,
        setup: Setup::ServicePrincipal,
        calls: 4,
        ..SPOT
    },
];

/// A token endpoint that is down or throttling is an outage to wait out; a refusal or an
/// unreadable answer is a credential to fix.
const TOKEN_CODES: Codes = Codes {
    refused: "Unauthenticated",
    malformed: "Unauthenticated",
    ..SPOT.codes
};

/// What a report says of one target: its list and its message (host:port replaced by names).
type Entry = (String, String);

/// The names the sandbox's `host:port` prefixes stand for in report targets and messages.
fn names(env: &Env) -> Vec<(String, String)> {
    let bare = |url: &str| {
        url.trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string()
    };
    let mut names: Vec<(String, String)> = env
        .info
        .endpoints
        .application_apis
        .values()
        .map(|u| (bare(u), "api".to_string()))
        .collect();
    names.extend(
        env.info
            .endpoints
            .key_vaults
            .iter()
            .map(|(name, u)| (bare(u), name.clone())),
    );
    names.extend(
        env.info
            .endpoints
            .app_configurations
            .iter()
            .map(|(name, s)| (bare(s["endpoint"].as_str().unwrap()), name.clone())),
    );
    names
}

fn renamed(names: &[(String, String)], text: &str) -> String {
    names.iter().fold(text.to_string(), |t, (from, to)| {
        t.replace(from.as_str(), to)
    })
}

/// "TYPE target" of a report entry.
fn target_id(names: &[(String, String)], e: &Value) -> String {
    renamed(
        names,
        &format!(
            "{} {}",
            e["type"].as_str().unwrap(),
            e["target"].as_str().unwrap()
        ),
    )
}

/// Every target entry of a report by [`target_id`]; asserts each target appears once.
fn entries(names: &[(String, String)], report: &Value) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for list in ["successes", "unchanged", "errors"] {
        for e in report[list].as_array().unwrap() {
            if !common::is_target(e) {
                continue;
            }
            let id = target_id(names, e);
            let text = format!(
                "{}{}",
                e["code"]
                    .as_str()
                    .map(|c| format!("{c}: "))
                    .unwrap_or_default(),
                renamed(names, e["message"].as_str().unwrap())
            );
            assert!(
                out.insert(id.clone(), (list.to_string(), text)).is_none(),
                "{id} is reported twice"
            );
        }
    }
    let ids: BTreeSet<&str> = out.keys().map(String::as_str).collect();
    let mapped: BTreeSet<&str> = TARGETS.iter().map(|t| t.0).collect();
    assert_eq!(ids, mapped, "every mapped target exactly once: {report:#}");
    out
}

/// The current key of each app: the approved key that expires last (`-1`: never).
fn current_keys(state: &Value) -> BTreeMap<String, String> {
    let apps = state["apigee"]["apps"].as_object().unwrap();
    apps.iter()
        .map(|(app, a)| {
            let expiry = |c: &Value| match c["expiresAt"].as_str().unwrap() {
                "-1" => i64::MAX,
                ms => ms.parse().unwrap(),
            };
            let key = a["credentials"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["status"] == "approved")
                .max_by_key(|c| expiry(c))
                .unwrap()["consumerKey"]
                .as_str()
                .unwrap()
                .to_string();
            (app.clone(), key)
        })
        .collect()
}

/// The value a target stands for in the sandbox's state.
fn stored<'a>(state: &'a Value, id: &str) -> &'a Value {
    let pointer = TARGETS.iter().find(|t| t.0 == id).unwrap().2;
    state.pointer(pointer).unwrap_or(&Value::Null)
}

/// A fault-free run's entries, checked against the demo story.
async fn baseline() -> BTreeMap<String, Entry> {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    let summary = &report["summary"];
    assert_eq!(
        (
            &summary["targets"],
            &summary["updated"],
            &summary["unchanged"],
            &summary["renewed"]
        ),
        (&json!(17), &json!(13), &json!(4), &json!(1)),
        "the demo's first run: {report:#}"
    );
    entries(&names(&env), &report)
}

/// The targets `hits` fails, with the code each gets, and the `TOOLKIT` error expected.
fn failing(hits: Hits, code: &str) -> (BTreeMap<&'static str, String>, Option<(&str, String)>) {
    match hits {
        Hits::Targets(ids) => (ids.iter().map(|id| (*id, code.to_string())).collect(), None),
        Hits::AllBut(ids) => (
            TARGETS
                .iter()
                .filter(|t| !ids.contains(&t.0))
                .map(|t| (t.0, code.to_string()))
                .collect(),
            None,
        ),
        Hits::App(app) => (
            TARGETS
                .iter()
                .filter(|t| t.1 == app)
                .map(|t| (t.0, "KeyUnavailable".to_string()))
                .collect(),
            Some((app, code.to_string())),
        ),
    }
}

/// One cell: the spot meets the fault in a fresh sandbox. Returns a line for the summary.
async fn case(spot: Spot, fault: Fault, baseline: &BTreeMap<String, Entry>) -> String {
    let name = format!("{} × {fault:?}", spot.name);
    let env = Env::start().await;
    let names = names(&env);
    let settings = match spot.setup {
        Setup::ManagedIdentity => env.settings(fault.settings()),
        Setup::ServicePrincipal => env.service_principal_settings(fault.settings()),
    };
    let handler = Handler::start(&settings).await;
    let mut spec = fault.spec();
    spec["service"] = json!(spot.service);
    spec["match"] = json!(spot.path);
    spec["method"] = json!(spot.method);
    env.add_fault(&spec).await;
    let before = env.state().await;

    let started = Instant::now();
    let (faulted_status, report) = handler.rotate("").await;
    let took = started.elapsed();
    let got = entries(&names, &report);
    let requests = env.requests().await;
    let after = env.state().await;
    writes_once(&name, &requests, &before, &after);
    env.clear_requests().await;

    // The report: the spot's targets as the cell says, every other target as without faults.
    let (failed, toolkit) = match spot.code(fault) {
        Some(code) => failing(spot.hits, code),
        None => Default::default(),
    };
    for (id, entry) in &got {
        match failed.get(id.as_str()) {
            Some(code) => {
                assert_eq!(entry.0, "errors", "{name}: {id} fails: {report:#}");
                assert!(
                    entry.1.starts_with(&format!("{code}: ")),
                    "{name}: {id} fails with {code}: {entry:?}"
                );
                assert_eq!(
                    stored(&before, id),
                    stored(&after, id),
                    "{name}: {id} failed, so it was not written"
                );
            }
            None => assert_eq!(
                Some(entry),
                baseline.get(id),
                "{name}: {id} is as in a fault-free run"
            ),
        }
    }
    let toolkit_errors: Vec<(String, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "TOOLKIT")
        .map(|e| {
            (
                e["appName"].as_str().unwrap().to_string(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = toolkit
        .iter()
        .map(|(app, code)| (app.to_string(), code.clone()))
        .collect();
    assert_eq!(
        toolkit_errors, expected,
        "{name}: the toolkit's errors: {report:#}"
    );
    let renewed = if toolkit.is_some() { 0 } else { 1 };
    assert_eq!(report["summary"]["renewed"], renewed, "{name}: {report:#}");
    assert_eq!(
        faulted_status,
        if failed.is_empty() { 200 } else { 207 },
        "{name}: {report:#}"
    );

    // The spot's requests: retried where the policy retries, once where it must not.
    let seen = requests.iter().filter(|r| spot.sees(r)).count();
    let per_call = match fault {
        Lost if spot.checked_by.is_some() => 1,
        f => f.requests(),
    };
    let expected = if fault.passes() {
        // Each fault consumed is one extra request of some call.
        spot.calls + per_call - 1
    } else {
        spot.calls * per_call
    };
    assert_eq!(seen, expected, "{name}: requests on the spot");
    if let Some(check) = spot.checked_by {
        // Every attempt whose outcome is unknown (a 5xx, a reset, no answer) is followed by a
        // read, to find out whether it was applied; a refusal (429, 403) or an answer (even a
        // malformed one) is not.
        let unknown = match fault {
            Transient => 2,
            Reset | HangsOnce | Lost => 1,
            Down | Hangs => 4,
            Throttled | Throttling | Refused | Malformed | Slow => 0,
        };
        let reads = requests
            .iter()
            .filter(|r| r["service"] == spot.service)
            .filter(|r| r["path"].as_str().unwrap().ends_with(check))
            .count();
        assert_eq!(reads, 1 + unknown, "{name}: reads of {check}");
    }
    assert!(
        took >= fault.waits(),
        "{name}: the run took {took:?}, less than the fault imposes"
    );

    // With the fault cleared, the next run updates exactly what could not be updated, and
    // the one after finds nothing to do.
    env.clear_faults().await;
    let (status, recovered) = handler.rotate("").await;
    assert_eq!(
        status, 200,
        "{name}: the run after the fault: {recovered:#}"
    );
    let again = entries(&names, &recovered);
    for (id, entry) in &again {
        let was_updated = baseline[id].0 == "successes";
        let expected = if failed.contains_key(id.as_str()) && was_updated {
            "successes"
        } else {
            "unchanged"
        };
        assert_eq!(entry.0, expected, "{name}: {id} after the fault: {entry:?}");
    }
    assert_eq!(recovered["summary"]["renewed"], 1 - renewed, "{name}");
    let state = env.state().await;
    writes_once(&name, &env.requests().await, &after, &state);
    env.clear_requests().await;
    let (status, last) = handler.rotate("").await;
    assert_eq!(status, 200, "{name}: {last:#}");
    assert_eq!(last["summary"]["unchanged"], 17, "{name}: {last:#}");
    assert_eq!(
        env.writes().await,
        Vec::<Value>::new(),
        "{name}: nothing left to write"
    );

    // No update lost, no key made twice.
    let keys = current_keys(&state);
    for (id, app, _) in TARGETS {
        assert_eq!(
            stored(&state, id).as_str(),
            Some(keys[app].as_str()),
            "{name}: {id} holds {app}'s current key"
        );
    }
    let credentials = |app: &str| {
        state["apigee"]["apps"][app]["credentials"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(
        (credentials(APP1), credentials(APP2), credentials(APP3)),
        (3, 2, 2),
        "{name}: exactly one key was created, for {APP1}"
    );

    let all_keys = env.all_keys().await;
    handler.assert_no_key_leaked(
        &all_keys,
        &[
            &report.to_string(),
            &recovered.to_string(),
            &last.to_string(),
        ],
    );
    format!("{name}: {faulted_status} in {took:.1?}, {seen} requests on the spot")
}

/// One run wrote nothing twice: no write request (by method, path and query) succeeded twice,
/// and no site restarted twice between `before` and `after`.
fn writes_once(name: &str, requests: &[Value], before: &Value, after: &Value) {
    let mut applied: BTreeMap<String, usize> = BTreeMap::new();
    for r in requests {
        let write = r["method"] != "GET"
            && !["identity", "authority"].contains(&r["service"].as_str().unwrap())
            && !common::is_arm_list(r)
            && !r["path"].as_str().unwrap().ends_with("/token");
        if write
            && r["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s))
        {
            let request = format!(
                "{} {} {}?{}",
                r["service"], r["method"], r["path"], r["query"]
            );
            *applied.entry(request).or_default() += 1;
        }
    }
    for (request, n) in applied {
        assert_eq!(n, 1, "{name}: {request} succeeded {n} times in one run");
    }
    let restarts = |state: &Value, site: &str| {
        state["resourceManager"]["sites"][site]["restarts"]
            .as_u64()
            .unwrap()
    };
    for site in after["resourceManager"]["sites"]
        .as_object()
        .unwrap()
        .keys()
    {
        let n = restarts(after, site) - restarts(before, site);
        assert!(n <= 1, "{name}: {site} restarted {n} times in one run");
    }
}

/// Runs every cell of `spots`, a few at a time, and fails with every failing cell listed.
async fn matrix(spots: &[Spot]) {
    let started = Instant::now();
    let baseline = baseline().await;
    let cells: Vec<(Spot, Fault)> = spots
        .iter()
        .flat_map(|s| s.faults.iter().map(move |f| (*s, *f)))
        .collect();
    let total = cells.len();
    let outcomes: Vec<Result<String, String>> = futures::stream::iter(cells)
        .map(|(spot, fault)| {
            let baseline = &baseline;
            async move {
                AssertUnwindSafe(case(spot, fault, baseline))
                    .catch_unwind()
                    .await
                    .map_err(|panic| {
                        let why = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        format!("{} × {fault:?}: {why}", spot.name)
                    })
            }
        })
        .buffer_unordered(PARALLEL_CASES)
        .collect()
        .await;
    for line in outcomes.iter().flatten() {
        eprintln!("{line}");
    }
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    eprintln!("{total} cases in {:.1?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

/// Every target kind's read and write, times every fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_kind_meets_every_fault() {
    matrix(&TARGET_SPOTS).await;
}

/// The issuer's app read and key creation, times every fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_meets_every_fault() {
    matrix(&ISSUER_SPOTS).await;
}

/// The managed-identity endpoint (default setup) and Entra ID (service principal), times every
/// fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoints_meet_every_fault() {
    matrix(&TOKEN_SPOTS).await;
}

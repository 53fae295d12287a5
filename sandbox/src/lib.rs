//! The local sandbox (PRODUCT.md §9): wire-faithful doubles of every outside service, on
//! loopback, with a CA of their own, seeded with demo data. It depends on nothing of the
//! product: a double must not share the client's code.
//!
//! Every double implements one contract, [`double::Double`] (its service name, front end,
//! routes, fault answers and state), in one file per service: [`identity`] (App Service
//! managed identity), [`authority`] (Entra ID), [`key_vault`] (one listener per vault),
//! [`app_configuration`] (one listener per store), [`apigee`] (Apigee X and its OAuth token
//! endpoint), [`api_gateway`] (Apigee's runtime, which reads the Apigee double's keys),
//! [`application_api`] (a consumer app) and [`resource_manager`] (ARM). The
//! machinery knows no service by name: [`log`] is the middleware every double's router is
//! wrapped in (request log, faults), [`front_end`] the framing rules it applies before any
//! double sees a request, [`admin`] the endpoint that reads the log, adds faults and shows
//! every double's state; [`tokens`] holds the bearer tokens the sandbox issued. [`demo`]
//! deploys the doubles and seeds the demo data and the mapping; [`workload`] seeds a bulk
//! workload instead, for the benchmark.

// Handlers return early with the exact response a check produced; boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod admin;
mod api_gateway;
mod apigee;
mod app_configuration;
mod app_insights;
mod application_api;
mod authority;
mod demo;
mod double;
mod error;
mod front_end;
mod identity;
mod key_vault;
mod limits;
mod log;
mod resource_manager;
mod secret;
mod tls;
mod tokens;
mod webhook;
pub mod workload;

pub use error::{Error, Result};
pub use limits::Throttling;
pub use secret::Secret;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use double::{Double, Platform, Tenant};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

/// How to start a [`Sandbox`].
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Directory that receives `ca.pem` (created if missing).
    pub dir: PathBuf,
    /// Seed a [`workload`] of this many apps instead of the demo data.
    pub workload: Option<usize>,
    /// Added to every answer of every double (not the admin endpoint), before any fault.
    pub latency: std::time::Duration,
    /// Whether the doubles enforce their services' published limits; `None`: on (at the
    /// published numbers) with a workload, off otherwise.
    pub throttling: Option<Throttling>,
}

impl SandboxOptions {
    /// The demo data in `dir`, no added latency.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }
}

/// A running sandbox: every double listening on 127.0.0.1 until [`Sandbox::shutdown`].
pub struct Sandbox {
    info: SandboxInfo,
    handles: Vec<axum_server::Handle>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    #[cfg_attr(not(test), allow(dead_code))]
    cast: demo::Cast,
}

/// Where the CA and every endpoint are, and what the handler needs to run against them.
#[derive(Clone, Debug)]
pub struct SandboxInfo {
    /// PEM file of the sandbox CA (`DIR/ca.pem`); every HTTPS double's certificate chains to it.
    pub ca_cert_file: PathBuf,
    /// Base URLs of the doubles.
    pub endpoints: Endpoints,
    /// The handler's credentials and data, for the handler's side to turn into its settings.
    pub handover: Handover,
    /// The seeded workload, when the sandbox was started with one.
    pub workload: Option<workload::Workload>,
}

/// What the handler needs to know to run against the sandbox, in the services' terms (the
/// product, not the sandbox, knows its setting names and how its details are sealed).
#[derive(Clone, Debug)]
pub struct Handover {
    /// The apps mapping over the sandbox's URLs (the `APIKEYROTATIONAPPS` document).
    pub mapping: serde_json::Value,
    /// The company details, in plaintext JSON: Apigee X in the sandbox with the service
    /// account's key, the renewal policy, and the site name they are bound to.
    pub company_details: Secret,
    /// The function app's site name the details are bound to (`WEBSITE_SITE_NAME`).
    pub site_name: String,
    /// The secret App Service hands the process for its identity endpoint (`IDENTITY_HEADER`).
    pub identity_header: Secret,
    /// The sandbox's Entra tenant.
    pub tenant_id: String,
    /// The sandbox service principal's application ID.
    pub client_id: String,
    /// The sandbox service principal's client secret.
    pub client_secret: Secret,
    /// The app settings the mapping names in `connectionStringSetting`, with their connection
    /// strings.
    pub connection_strings: BTreeMap<String, Secret>,
}

/// The URLs of every double.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// The managed-identity endpoint (`IDENTITY_ENDPOINT`, plain http on loopback).
    pub identity: String,
    /// The Entra ID authority host (`AZURE_AUTHORITY_HOST`).
    pub authority: String,
    /// The Azure Resource Manager endpoint (`AZURE_RESOURCE_MANAGER_ENDPOINT`).
    pub resource_manager: String,
    /// The Apigee X management API base URL (stands for `https://apigee.googleapis.com`).
    pub apigee: String,
    /// The Apigee X runtime (the API gateway) base URL; its API proxies are under
    /// `/healthcheck/v1` (key in header `x-apikey`), `/orders/v1` (query parameter `apikey`)
    /// and `/reference/v1` (header `x-apikey`).
    #[serde(default)]
    pub api_gateway: String,
    /// Vault name to vault base URL (`https://127.0.0.1:<port>/`).
    pub key_vaults: BTreeMap<String, String>,
    /// Store name to `{"endpoint", "connectionString"}`.
    pub app_configurations: BTreeMap<String, serde_json::Value>,
    /// Application API name to its URL.
    pub application_apis: BTreeMap<String, String>,
    /// The admin endpoint (plain http): request log, faults, state.
    pub admin: String,
    /// The webhook receiver's URL prefix: `POST <webhook>/<name>` (a stand-in for Slack,
    /// Teams and generic webhooks; what it received is in `admin/state` under `webhooks`).
    #[serde(default)]
    pub webhook: String,
    /// The Application Insights double's connection string (`IngestionEndpoint` is the
    /// double; what it accepted is in `admin/state` under `appInsights`). Not among the
    /// handler's settings by default: a test sets `APPLICATIONINSIGHTS_CONNECTION_STRING` to it.
    #[serde(default)]
    pub app_insights: String,
}

/// A bound listener and the URL it is reached at.
struct Bound {
    listener: TcpListener,
    url: String,
}

fn bind(scheme: &str) -> Result<Bound> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|e| Error::new(format!("cannot bind a loopback port: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::new(e.to_string()))?
        .port();
    Ok(Bound {
        listener,
        url: format!("{scheme}://127.0.0.1:{port}"),
    })
}

/// The doubles being deployed, each with the listener it will answer on.
#[derive(Default)]
pub(crate) struct Deployment {
    listeners: Vec<(Bound, bool, Arc<dyn Double>)>,
}

impl Deployment {
    /// Binds a loopback port (HTTPS when `tls`), builds a double from its URL and records it.
    pub fn deploy<D: Double>(
        &mut self,
        tls: bool,
        build: impl FnOnce(&str) -> D,
    ) -> Result<Arc<D>> {
        self.try_deploy(tls, |url| Ok(build(url)))
    }

    /// [`Deployment::deploy`] for doubles whose construction can fail.
    pub fn try_deploy<D: Double>(
        &mut self,
        tls: bool,
        build: impl FnOnce(&str) -> Result<D>,
    ) -> Result<Arc<D>> {
        let bound = bind(if tls { "https" } else { "http" })?;
        let double = Arc::new(build(&bound.url)?);
        self.listeners.push((bound, tls, double.clone()));
        Ok(double)
    }
}

impl Sandbox {
    /// Starts every double on 127.0.0.1 (random free ports), seeds the demo data (or the
    /// workload) and writes `DIR/ca.pem`.
    pub async fn start(options: SandboxOptions) -> Result<Sandbox> {
        let io = |what: &str, e: std::io::Error| Error::new(format!("{what}: {e}"));
        std::fs::create_dir_all(&options.dir).map_err(|e| io("cannot create the directory", e))?;
        let tls = tls::generate()?;
        let ca_cert_file = options.dir.join("ca.pem");
        std::fs::write(&ca_cert_file, &tls.ca_pem).map_err(|e| io("cannot write ca.pem", e))?;

        let mut deployment = Deployment::default();
        let cast = demo::Cast::deploy(&mut deployment)?;
        let admin_l = bind("http")?;
        let platform = Arc::new(Platform {
            tokens: tokens::TokenStore::default(),
            log: log::RequestLog::new(options.latency),
            tenant: Tenant {
                id: uuid::Uuid::new_v4().to_string(),
                authority: cast.authority.base_url.clone(),
            },
            limits: limits::Limiter::new(options.throttling.unwrap_or(match options.workload {
                Some(_) => workload::THROTTLING,
                None => Throttling::Off,
            })),
        });
        let seeded = match options.workload {
            Some(apps) => Some(workload::seed(&cast, apps)),
            None => {
                demo::seed(&cast);
                None
            }
        };
        let endpoints = cast.endpoints(&admin_l.url);
        let mapping = match options.workload {
            Some(apps) => workload::mapping(&endpoints, apps),
            None => demo::mapping(&endpoints),
        };
        let handover = cast.handover(&platform.tenant, mapping);
        let mut sandbox = Sandbox {
            info: SandboxInfo {
                ca_cert_file,
                endpoints,
                handover,
                workload: seeded,
            },
            handles: Vec::new(),
            tasks: Vec::new(),
            cast,
        };

        let mut doubles: Vec<Arc<dyn Double>> = Vec::new();
        for (bound, https, double) in deployment.listeners {
            let service = double.service();
            let router = log::observe(
                double.clone().router(platform.clone()),
                double.clone(),
                &platform,
            );
            let acceptor = CountingAcceptor {
                platform: platform.clone(),
                service: Some(service),
            };
            sandbox.serve(bound, https.then_some(&tls.config), router, acceptor);
            doubles.push(double);
        }
        let acceptor = CountingAcceptor {
            platform: platform.clone(),
            service: None,
        };
        sandbox.serve(admin_l, None, admin::router(platform, doubles), acceptor);
        tracing::info!(dir = %options.dir.display(), "sandbox started");
        Ok(sandbox)
    }

    fn serve(
        &mut self,
        bound: Bound,
        tls: Option<&axum_server::tls_rustls::RustlsConfig>,
        router: Router,
        acceptor: CountingAcceptor,
    ) {
        let handle = axum_server::Handle::new();
        let service = router.into_make_service();
        let server = axum_server::from_tcp(bound.listener).handle(handle.clone());
        let task = match tls {
            Some(config) => {
                let acceptor =
                    axum_server::tls_rustls::RustlsAcceptor::new(config.clone()).acceptor(acceptor);
                let server = server.acceptor(acceptor);
                tokio::spawn(async move {
                    if let Err(e) = server.serve(service).await {
                        tracing::error!(error = %e, "sandbox listener stopped");
                    }
                })
            }
            None => {
                let server = server.acceptor(acceptor);
                tokio::spawn(async move {
                    if let Err(e) = server.serve(service).await {
                        tracing::error!(error = %e, "sandbox listener stopped");
                    }
                })
            }
        };
        self.handles.push(handle);
        self.tasks.push(task);
    }

    /// Where everything is, and what the handler needs.
    pub fn info(&self) -> &SandboxInfo {
        &self.info
    }

    /// Stops all servers.
    pub async fn shutdown(mut self) {
        for handle in &self.handles {
            handle.shutdown();
        }
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    /// A sandbox dropped without [`Sandbox::shutdown`] still stops listening.
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.shutdown();
        }
    }
}

/// Accepts a double's connections: counts them under `service` (`GET admin/connections`) and
/// sends small answers at once (`TCP_NODELAY`, as Azure's front ends do).
#[derive(Clone)]
struct CountingAcceptor {
    platform: Arc<Platform>,
    service: Option<&'static str>,
}

impl<S> axum_server::accept::Accept<tokio::net::TcpStream, S> for CountingAcceptor {
    type Stream = tokio::net::TcpStream;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        if let Some(name) = self.service {
            self.platform.log.connection_accepted(name);
        }
        std::future::ready(stream.set_nodelay(true).map(|()| (stream, service)))
    }
}

/// A JSON response with the exact body a service answers with (every double's errors use it).
pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// The query string of a request as a map (later duplicates win).
pub(crate) fn query_map(uri: &axum::http::Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A random string of `len` ASCII letters and digits (keys, secrets, tokens).
pub(crate) fn random_alphanumeric(len: usize) -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Starting a sandbox and calling it over real TLS.
    use super::*;

    /// A started sandbox, its directory, and a client trusting its CA.
    pub struct Harness {
        pub sandbox: Sandbox,
        pub dir: tempfile::TempDir,
        pub client: reqwest::Client,
    }

    impl Harness {
        pub async fn start() -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let sandbox = Sandbox::start(SandboxOptions::new(dir.path()))
                .await
                .unwrap();
            let ca_pem = std::fs::read(&sandbox.info().ca_cert_file).unwrap();
            let client = reqwest::Client::builder()
                .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&ca_pem).unwrap())
                .build()
                .unwrap();
            Harness {
                sandbox,
                dir,
                client,
            }
        }

        /// What the handler's setting `key` would hold (the Azure SDKs' and App Service's
        /// names, so the tests read as a client configured from the environment would).
        pub fn env(&self, key: &str) -> String {
            let info = self.sandbox.info();
            let h = &info.handover;
            match key {
                "IDENTITY_ENDPOINT" => info.endpoints.identity.clone(),
                "IDENTITY_HEADER" => h.identity_header.expose().to_string(),
                "AZURE_AUTHORITY_HOST" => info.endpoints.authority.clone(),
                "AZURE_RESOURCE_MANAGER_ENDPOINT" => info.endpoints.resource_manager.clone(),
                "AZURE_TENANT_ID" => h.tenant_id.clone(),
                "SANDBOX_CLIENT_ID" => h.client_id.clone(),
                "SANDBOX_CLIENT_SECRET" => h.client_secret.expose().to_string(),
                "WEBSITE_SITE_NAME" => h.site_name.clone(),
                other => panic!("no test setting {other}"),
            }
        }

        /// A token for `resource` from the managed-identity endpoint.
        pub async fn token(&self, resource: &str) -> String {
            let body: serde_json::Value = self
                .client
                .get(&self.sandbox.info().endpoints.identity)
                .query(&[("resource", resource), ("api-version", "2019-08-01")])
                .header("X-IDENTITY-HEADER", self.env("IDENTITY_HEADER"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["access_token"].as_str().unwrap().to_string()
        }

        /// `GET admin/requests`: the logged requests, in order.
        pub async fn requests(&self) -> Vec<serde_json::Value> {
            let url = format!("{}/requests", self.sandbox.info().endpoints.admin);
            self.client
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::Harness;
    use super::*;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Each double answers an injected 429 in its own service's shape, with `Retry-After`
    /// and the service's own throttling headers.
    #[tokio::test]
    async fn each_double_answers_a_fault_in_its_own_shape() {
        let url = "https://127.0.0.1:1";
        let doubles: Vec<Arc<dyn Double>> = vec![
            Arc::new(identity::ManagedIdentity::generate(url)),
            Arc::new(authority::Authority::generate(url)),
            Arc::new(key_vault::Vault::new("kv", url)),
            Arc::new(app_configuration::Store::new("appcs", url)),
            Arc::new(apigee::Apigee::new(url, "org", "dev@example.com").unwrap()),
            Arc::new(application_api::Store::new(url)),
            Arc::new(resource_manager::ResourceManager::new(url)),
        ];
        let throttled = StatusCode::TOO_MANY_REQUESTS;
        for double in doubles {
            let service = double.service();
            let response = double.fault(throttled, Some(2));
            assert_eq!(response.status(), throttled, "{service}");
            let headers = response.headers().clone();
            assert_eq!(headers["retry-after"], "2", "{service}");
            let b = body(response).await;
            match service {
                "identity" => assert_eq!(b["statusCode"], 429),
                "authority" => assert_eq!(b["error"], "temporarily_unavailable"),
                "appConfiguration" => {
                    assert_eq!(b["type"], "https://azconfig.io/errors/too-many-requests");
                    assert_eq!(headers["retry-after-ms"], "2000");
                    assert!(headers["content-type"]
                        .to_str()
                        .unwrap()
                        .starts_with("application/problem+json"));
                }
                "apigee" => assert_eq!(b["error"]["status"], "RESOURCE_EXHAUSTED"),
                "resourceManager" => {
                    assert_eq!(b["Code"], "429");
                    assert_eq!(headers["x-ms-ratelimit-remaining-subscription-writes"], "0");
                }
                "keyVault" | "applicationApi" => assert_eq!(b["error"]["code"], "Throttled"),
                other => panic!("a double this test does not know: {other}"),
            }
        }
        let arm = resource_manager::ResourceManager::new(url);
        let forbidden = body(arm.fault(StatusCode::FORBIDDEN, None)).await;
        assert_eq!(forbidden["error"]["code"], "AuthorizationFailed");
        let vault = key_vault::Vault::new("kv", url);
        let unavailable = vault.fault(StatusCode::SERVICE_UNAVAILABLE, None);
        assert!(!unavailable.headers().contains_key("retry-after"));
        assert_eq!(
            body(unavailable).await["error"]["code"],
            "ServiceUnavailable"
        );
    }

    /// Every endpoint is a loopback URL of the right scheme, and the handover's mapping and
    /// connection strings point at them.
    #[tokio::test]
    async fn reports_every_endpoint_and_what_the_handler_needs() {
        let h = Harness::start().await;
        let info = h.sandbox.info();
        assert_eq!(info.ca_cert_file, h.dir.path().join("ca.pem"));
        assert!(info.ca_cert_file.exists());
        let e = &info.endpoints;
        assert!(e.identity.starts_with("http://127.0.0.1:"));
        assert!(e.admin.starts_with("http://127.0.0.1:"));
        for url in [&e.authority, &e.resource_manager, &e.apigee] {
            assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        }
        for vault in ["kv-consumers-prd", "kv-partners-prd"] {
            assert!(e.key_vaults[vault].ends_with('/'));
        }
        for api in ["referenceapi-prd", "healthcheck-api"] {
            assert!(e.application_apis[api].ends_with("/internal/api-keys"));
        }
        for store in ["appcs-consumers", "appcs-partners"] {
            let endpoint = e.app_configurations[store]["endpoint"].as_str().unwrap();
            assert!(endpoint.starts_with("https://127.0.0.1:"), "{store}");
            let cs = e.app_configurations[store]["connectionString"]
                .as_str()
                .unwrap();
            assert!(
                cs.starts_with(&format!("Endpoint={endpoint};Id=")),
                "{store}"
            );
        }
        let h_ = &info.handover;
        let setting = h_.mapping["appConfiguration"][1]["connectionStringSetting"]
            .as_str()
            .unwrap();
        assert_eq!(
            h_.connection_strings[setting].expose(),
            e.app_configurations["appcs-partners"]["connectionString"]
        );
        assert_eq!(
            h_.mapping["keyVault"][0]["vaultUrl"],
            e.key_vaults["kv-consumers-prd"].as_str()
        );
        assert_eq!(h_.mapping["applicationApis"].as_array().unwrap().len(), 2);
        let details: serde_json::Value = serde_json::from_str(h_.company_details.expose()).unwrap();
        assert_eq!(details["issuer"]["endpoint"], e.apigee.as_str());
        assert_eq!(details["boundTo"]["siteName"], h_.site_name.as_str());
        h.sandbox.shutdown().await;
    }
}

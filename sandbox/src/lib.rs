//! The local sandbox (PRODUCT.md §9): wire-faithful doubles of every outside service, on
//! loopback, with a CA of their own, seeded with demo data.
//!
//! One file per service: [`identity`] (App Service managed identity), [`authority`] (Entra ID),
//! [`key_vault`], [`app_configuration`] (one listener per store), [`apigee`] (Apigee X and its OAuth token endpoint), [`application_api`] (a
//! consumer app), [`resource_manager`] (ARM), and [`admin`] (request log, fault injection,
//! state). [`log`] is the middleware every service router is wrapped in, and [`front_end`] the
//! framing rules it applies before any double sees a request; [`tokens`] holds the
//! bearer tokens the sandbox issued; [`demo`] seeds the data and the handler's settings;
//! [`workload`] seeds a bulk workload instead, for the benchmark.

// Handlers return early with the exact response a check produced; boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod admin;
mod apigee;
mod app_configuration;
mod application_api;
mod authority;
mod demo;
mod front_end;
mod identity;
mod key_vault;
mod log;
mod resource_manager;
mod tls;
mod tokens;
pub mod workload;

use crate::error::{Error, Result};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

/// How to start a [`Sandbox`].
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Directory that receives `ca.pem` and `sandbox.json` (created if missing).
    pub dir: PathBuf,
    /// Seed a [`workload`] of this many apps instead of the demo data.
    pub workload: Option<usize>,
    /// Added to every answer of every double (not the admin endpoint), before any fault.
    pub latency: std::time::Duration,
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
    shared: Arc<Shared>,
}

/// What `sandbox.json` holds: where the CA and every endpoint are, and the handler's settings.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    /// PEM file of the sandbox CA (`DIR/ca.pem`); every HTTPS double's certificate chains to it.
    pub ca_cert_file: PathBuf,
    /// Base URLs of the doubles.
    pub endpoints: Endpoints,
    /// Every app setting the handler needs to run against this sandbox.
    pub env: BTreeMap<String, String>,
    /// The seeded workload, when the sandbox was started with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<workload::Workload>,
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
    /// Vault name to vault base URL (`https://127.0.0.1:<port>/`).
    pub key_vaults: BTreeMap<String, String>,
    /// Store name to `{"endpoint", "connectionString"}`.
    pub app_configurations: BTreeMap<String, serde_json::Value>,
    /// Application API name to its URL.
    pub application_apis: BTreeMap<String, String>,
    /// The admin endpoint (plain http): request log, faults, state.
    pub admin: String,
}

/// State shared by every double.
pub(crate) struct Shared {
    pub tokens: tokens::TokenStore,
    pub log: log::RequestLog,
    /// The sandbox's Entra tenant.
    pub tenant_id: String,
    /// `https://127.0.0.1:<port>` of the authority double.
    pub authority: String,
    pub identity: identity::ManagedIdentity,
    pub principal: authority::ServicePrincipal,
    /// Vaults by lower-case name.
    pub vaults: BTreeMap<String, Arc<key_vault::Vault>>,
    /// App Configuration stores by name.
    pub app_configs: BTreeMap<String, Arc<app_configuration::Store>>,
    pub apigee: apigee::Apigee,
    pub application_api: application_api::Store,
    /// Microsoft.Web sites, slots and static sites with their app settings.
    pub resource_manager: resource_manager::ResourceManager,
}

/// A bound listener and the URL it is reached at.
struct Bound {
    listener: TcpListener,
    url: String,
}

fn bind(scheme: &str) -> Result<Bound> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|e| Error::unexpected(format!("sandbox: cannot bind a loopback port: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::unexpected(format!("sandbox: {e}")))?
        .port();
    Ok(Bound {
        listener,
        url: format!("{scheme}://127.0.0.1:{port}"),
    })
}

impl Sandbox {
    /// Starts every double on 127.0.0.1 (random free ports), seeds the demo data, writes
    /// `DIR/ca.pem` and `DIR/sandbox.json`.
    pub async fn start(options: SandboxOptions) -> Result<Sandbox> {
        let io = |what: &str, e: std::io::Error| Error::unexpected(format!("sandbox: {what}: {e}"));
        std::fs::create_dir_all(&options.dir).map_err(|e| io("cannot create the directory", e))?;
        let tls = tls::generate()?;
        let ca_cert_file = options.dir.join("ca.pem");
        std::fs::write(&ca_cert_file, &tls.ca_pem).map_err(|e| io("cannot write ca.pem", e))?;

        let (identity_l, authority_l, arm_l, apigee_l, app_api_l, admin_l) = (
            bind("http")?,
            bind("https")?,
            bind("https")?,
            bind("https")?,
            bind("https")?,
            bind("http")?,
        );
        let mut vault_ls = Vec::new();
        for name in demo::VAULTS {
            vault_ls.push((name, bind("https")?));
        }

        let mut store_ls = Vec::new();
        for name in demo::APP_CONFIG_STORES {
            store_ls.push((name, bind("https")?));
        }

        let tenant_id = uuid::Uuid::new_v4().to_string();
        let vaults = vault_ls
            .iter()
            .map(|(name, b)| {
                let vault = key_vault::Vault::new(name, &b.url);
                (name.to_ascii_lowercase(), Arc::new(vault))
            })
            .collect();
        let shared = Arc::new(Shared {
            tokens: tokens::TokenStore::default(),
            log: log::RequestLog::new(options.latency),
            authority: authority_l.url.clone(),
            identity: identity::ManagedIdentity::generate(),
            principal: authority::ServicePrincipal::generate(),
            vaults,
            app_configs: store_ls
                .iter()
                .map(|(name, b)| {
                    let store = app_configuration::Store::new(name, &b.url);
                    (name.to_string(), Arc::new(store))
                })
                .collect(),
            apigee: apigee::Apigee::new(&apigee_l.url, demo::ORGANIZATION, demo::DEVELOPER)?,
            application_api: application_api::Store::default(),
            resource_manager: Default::default(),
            tenant_id,
        });
        let seeded = match options.workload {
            Some(apps) => Some(workload::seed(&shared, apps)),
            None => {
                demo::seed(&shared);
                None
            }
        };

        let app_api_url = format!("{}{}", app_api_l.url, application_api::PATH);
        let endpoints = Endpoints {
            identity: format!("{}{}", identity_l.url, identity::PATH),
            authority: authority_l.url.clone(),
            resource_manager: arm_l.url.clone(),
            apigee: apigee_l.url.clone(),
            key_vaults: vault_ls
                .iter()
                .map(|(name, b)| (name.to_string(), format!("{}/", b.url)))
                .collect(),
            app_configurations: shared
                .app_configs
                .values()
                .map(|s| {
                    let info = serde_json::json!({"endpoint": s.base_url, "connectionString": s.connection_string()});
                    (s.name.clone(), info)
                })
                .collect(),
            application_apis: demo::APPLICATION_APIS
                .iter()
                .map(|name| (name.to_string(), app_api_url.clone()))
                .collect(),
            admin: admin_l.url.clone(),
        };
        let mapping = match options.workload {
            Some(apps) => workload::mapping(&endpoints, apps),
            None => demo::mapping(&endpoints),
        };
        let env = demo::env(&shared, &endpoints, &ca_cert_file, &mapping)?;
        let info = SandboxInfo {
            ca_cert_file,
            endpoints,
            env,
            workload: seeded,
        };
        let json = serde_json::to_string_pretty(&info)
            .map_err(|e| Error::unexpected(format!("sandbox: {e}")))?;
        std::fs::write(options.dir.join("sandbox.json"), json)
            .map_err(|e| io("cannot write sandbox.json", e))?;

        let mut sandbox = Sandbox {
            info,
            handles: Vec::new(),
            tasks: Vec::new(),
            shared: shared.clone(),
        };
        let s = &shared;
        let tls_cfg = Some(&tls.config);
        let mut services = vec![
            (identity_l, None, "identity", identity::router(s.clone())),
            (
                authority_l,
                tls_cfg,
                "authority",
                authority::router(s.clone()),
            ),
            (
                arm_l,
                tls_cfg,
                "resourceManager",
                resource_manager::router(s.clone()),
            ),
            (apigee_l, tls_cfg, "apigee", apigee::router(s.clone())),
            (
                app_api_l,
                tls_cfg,
                "applicationApi",
                application_api::router(s.clone()),
            ),
        ];
        for (name, bound) in vault_ls {
            let vault = s.vaults[&name.to_ascii_lowercase()].clone();
            services.push((
                bound,
                tls_cfg,
                "keyVault",
                key_vault::router(s.clone(), vault),
            ));
        }
        for (name, bound) in store_ls {
            let store = s.app_configs[name].clone();
            services.push((
                bound,
                tls_cfg,
                "appConfiguration",
                app_configuration::router(s.clone(), store),
            ));
        }
        for (bound, tls, service, router) in services {
            let counted = Counted {
                shared: s.clone(),
                service: Some(service),
            };
            sandbox.serve(bound, tls, log::observe(router, service, s), counted);
        }
        let admin = Counted {
            shared: s.clone(),
            service: None,
        };
        sandbox.serve(admin_l, None, admin::router(s.clone()), admin);
        tracing::info!(dir = %options.dir.display(), "sandbox started");
        Ok(sandbox)
    }

    fn serve(
        &mut self,
        bound: Bound,
        tls: Option<&axum_server::tls_rustls::RustlsConfig>,
        router: Router,
        counted: Counted,
    ) {
        let handle = axum_server::Handle::new();
        let service = router.into_make_service();
        let server = axum_server::from_tcp(bound.listener).handle(handle.clone());
        let task = match tls {
            Some(config) => {
                let acceptor =
                    axum_server::tls_rustls::RustlsAcceptor::new(config.clone()).acceptor(counted);
                let server = server.acceptor(acceptor);
                tokio::spawn(async move {
                    if let Err(e) = server.serve(service).await {
                        tracing::error!(error = %e, "sandbox listener stopped");
                    }
                })
            }
            None => {
                let server = server.acceptor(counted);
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

    /// Where everything is, as written to `sandbox.json`.
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
struct Counted {
    shared: Arc<Shared>,
    service: Option<&'static str>,
}

impl<S> axum_server::accept::Accept<tokio::net::TcpStream, S> for Counted {
    type Stream = tokio::net::TcpStream;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        if let Some(name) = self.service {
            self.shared.log.connection_accepted(name);
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

        pub fn env(&self, key: &str) -> String {
            self.sandbox.info().env[key].clone()
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

    /// sandbox.json is written with every endpoint and every env key the handler needs.
    #[tokio::test]
    async fn writes_sandbox_json_with_every_endpoint_and_setting() {
        let h = Harness::start().await;
        let text = std::fs::read_to_string(h.dir.path().join("sandbox.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["caCertFile"].as_str().unwrap(),
            h.dir.path().join("ca.pem").to_str().unwrap()
        );
        let endpoints = &json["endpoints"];
        for key in [
            "identity",
            "authority",
            "resourceManager",
            "apigee",
            "admin",
        ] {
            assert!(
                endpoints[key].as_str().unwrap().starts_with("http"),
                "{key}"
            );
        }
        assert!(endpoints["identity"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:"));
        assert!(endpoints["authority"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"));
        for vault in ["kv-consumers-prd", "kv-partners-prd"] {
            assert!(endpoints["keyVaults"][vault]
                .as_str()
                .unwrap()
                .ends_with('/'));
        }
        for api in ["referenceapi-prd", "healthcheck-api"] {
            assert!(endpoints["applicationApis"][api]
                .as_str()
                .unwrap()
                .ends_with("/internal/api-keys"));
        }
        for store in ["appcs-consumers", "appcs-partners"] {
            let info = &endpoints["appConfigurations"][store];
            let endpoint = info["endpoint"].as_str().unwrap();
            assert!(endpoint.starts_with("https://127.0.0.1:"), "{store}");
            let key = crate::targets::app_configuration::AccessKey::parse(
                info["connectionString"].as_str().unwrap(),
            )
            .unwrap();
            assert_eq!(key.endpoint.as_str().trim_end_matches('/'), endpoint);
        }
        assert_eq!(
            json["env"]["APPCS_PARTNERS_CONNECTION_STRING"],
            endpoints["appConfigurations"]["appcs-partners"]["connectionString"]
        );
        let env = json["env"].as_object().unwrap();
        for key in [
            "APIKEYROTATIONAPPS",
            "COMPANYDETAILS",
            "TOOLKITUUID",
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
            "AZURE_CLOUD",
            "AZURE_AUTHORITY_HOST",
            "AZURE_RESOURCE_MANAGER_ENDPOINT",
            "TRUSTED_CA_FILE",
            "API_KEY_ROTATION_SCHEDULE",
            "WEBSITE_SITE_NAME",
            "AZURE_TENANT_ID",
            "SANDBOX_CLIENT_ID",
            "SANDBOX_CLIENT_SECRET",
        ] {
            assert!(env.contains_key(key), "env lacks {key}");
        }
        assert!(!env.contains_key("AZURE_CLIENT_SECRET"));
        assert_eq!(env["AZURE_CLOUD"], "custom");
        // The settings the handler reads must validate as a custom cloud.
        let settings: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let cloud = crate::azure::cloud::Cloud::from_settings(&settings).unwrap();
        assert_eq!(cloud.authority_host, h.sandbox.info().endpoints.authority);
        let mapping: serde_json::Value =
            serde_json::from_str(env["APIKEYROTATIONAPPS"].as_str().unwrap()).unwrap();
        assert_eq!(
            mapping["keyVault"][0]["vaultUrl"],
            endpoints["keyVaults"]["kv-consumers-prd"]
        );
        assert_eq!(mapping["applicationApis"].as_array().unwrap().len(), 2);
        h.sandbox.shutdown().await;
    }

    use std::collections::BTreeMap;
}

//! The sandbox as the handler sees it (feature `sandbox`): the doubles of
//! [`apikey_rotator_sandbox`], plus the handler's settings for running against them (`env`),
//! which only the product knows: its setting names, its custom cloud, and how its company
//! details are sealed. [`Sandbox::start`] writes `DIR/sandbox.json` (PRODUCT.md §9).

pub use apikey_rotator_sandbox::{workload, Endpoints, Handover, SandboxOptions, Throttling};

use crate::error::{Error, Result};
use crate::settings::{
    COMPANY_DETAILS, DEFAULT_SCHEDULE, MAPPING_SETTINGS, SCHEDULE, TOOLKIT_UUID,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A running sandbox: every double listening on 127.0.0.1 until [`Sandbox::shutdown`].
pub struct Sandbox {
    doubles: apikey_rotator_sandbox::Sandbox,
    info: SandboxInfo,
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

impl Sandbox {
    /// Starts every double on 127.0.0.1 (random free ports), seeds the demo data (or the
    /// workload), writes `DIR/ca.pem` and `DIR/sandbox.json`.
    pub async fn start(options: SandboxOptions) -> Result<Sandbox> {
        let dir = options.dir.clone();
        let doubles = apikey_rotator_sandbox::Sandbox::start(options)
            .await
            .map_err(|e| Error::unexpected(e.to_string()))?;
        let started = doubles.info();
        let info = SandboxInfo {
            ca_cert_file: started.ca_cert_file.clone(),
            endpoints: started.endpoints.clone(),
            env: env(&started.endpoints, &started.handover, &started.ca_cert_file)?,
            workload: started.workload.clone(),
        };
        let json = serde_json::to_string_pretty(&info)
            .map_err(|e| Error::unexpected(format!("sandbox: {e}")))?;
        std::fs::write(dir.join("sandbox.json"), json)
            .map_err(|e| Error::unexpected(format!("sandbox: cannot write sandbox.json: {e}")))?;
        Ok(Sandbox { doubles, info })
    }

    /// Where everything is, as written to `sandbox.json`.
    pub fn info(&self) -> &SandboxInfo {
        &self.info
    }

    /// Stops all servers.
    pub async fn shutdown(self) {
        self.doubles.shutdown().await;
    }
}

/// Every app setting the handler needs to run against the sandbox: the mapping, the company
/// details sealed with a fresh Toolkit UUID, the managed-identity endpoint, the custom cloud
/// over the doubles, the CA to trust, the service principal and the connection strings.
pub fn env(
    endpoints: &Endpoints,
    handover: &Handover,
    ca_file: &Path,
) -> Result<BTreeMap<String, String>> {
    let uuid = uuid::Uuid::new_v4().to_string();
    let sealed = crate::toolkit::sealed::seal(&uuid, handover.company_details.expose().as_bytes())?;
    let pairs = [
        (MAPPING_SETTINGS[0], handover.mapping.to_string()),
        (COMPANY_DETAILS, sealed),
        (TOOLKIT_UUID, uuid),
        ("IDENTITY_ENDPOINT", endpoints.identity.clone()),
        (
            "IDENTITY_HEADER",
            handover.identity_header.expose().to_string(),
        ),
        (crate::azure::cloud::CLOUD_SETTING, "custom".into()),
        // The sandbox's vaults and stores listen on loopback: its custom cloud declares that
        // as their domain, so the rotator sends its vault and store tokens there and nowhere else.
        ("AZURE_KEYVAULT_DNS_SUFFIX", "127.0.0.1".into()),
        (
            crate::azure::cloud::APP_CONFIGURATION_SUFFIX_SETTING,
            "127.0.0.1".into(),
        ),
        ("AZURE_AUTHORITY_HOST", endpoints.authority.clone()),
        (
            "AZURE_RESOURCE_MANAGER_ENDPOINT",
            endpoints.resource_manager.clone(),
        ),
        (
            crate::azure::http::TRUSTED_CA_SETTING,
            ca_file.display().to_string(),
        ),
        (SCHEDULE, DEFAULT_SCHEDULE.into()),
        ("WEBSITE_SITE_NAME", handover.site_name.clone()),
        ("AZURE_TENANT_ID", handover.tenant_id.clone()),
        ("SANDBOX_CLIENT_ID", handover.client_id.clone()),
        (
            "SANDBOX_CLIENT_SECRET",
            handover.client_secret.expose().to_string(),
        ),
    ];
    let mut env: BTreeMap<String, String> =
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (setting, connection_string) in &handover.connection_strings {
        env.insert(setting.clone(), connection_string.expose().to_string());
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sandbox.json is written with every endpoint and every setting the handler needs, and
    /// the settings validate as the custom cloud over the doubles.
    #[tokio::test]
    async fn writes_sandbox_json_with_every_endpoint_and_setting() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(SandboxOptions::new(dir.path()))
            .await
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("sandbox.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["caCertFile"].as_str().unwrap(),
            dir.path().join("ca.pem").to_str().unwrap()
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
        for store in ["appcs-consumers", "appcs-partners"] {
            let info = &endpoints["appConfigurations"][store];
            let key = crate::targets::app_configuration::AccessKey::parse(
                info["connectionString"].as_str().unwrap(),
            )
            .unwrap();
            assert_eq!(
                key.endpoint.as_str().trim_end_matches('/'),
                info["endpoint"].as_str().unwrap()
            );
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
        let settings: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let cloud = crate::azure::cloud::Cloud::from_settings(&settings).unwrap();
        assert_eq!(cloud.authority_host, sandbox.info().endpoints.authority);
        // The sealed details open with the Toolkit UUID and name the Apigee double.
        let opened =
            crate::toolkit::sealed::open(&settings["TOOLKITUUID"], &settings["COMPANYDETAILS"]);
        assert!(opened.is_ok(), "the sealed details open");
        let mapping: serde_json::Value =
            serde_json::from_str(env["APIKEYROTATIONAPPS"].as_str().unwrap()).unwrap();
        assert_eq!(
            mapping["keyVault"][0]["vaultUrl"],
            endpoints["keyVaults"]["kv-consumers-prd"]
        );
        sandbox.shutdown().await;
    }
}

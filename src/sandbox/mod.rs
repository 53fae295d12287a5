//! Interim sandbox types (replaced by the sandbox work).
use std::collections::BTreeMap;
use std::path::PathBuf;
/// Options.
pub struct SandboxOptions {
    /// Dir.
    pub dir: PathBuf,
}
/// Sandbox.
pub struct Sandbox {
    info: SandboxInfo,
}
impl Sandbox {
    /// Start.
    pub async fn start(options: SandboxOptions) -> crate::error::Result<Sandbox> {
        let _ = options;
        Err(crate::error::Error::unexpected("interim"))
    }
    /// Info.
    pub fn info(&self) -> &SandboxInfo {
        &self.info
    }
    /// Stop.
    pub async fn shutdown(self) {}
}
/// Info.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    /// CA.
    pub ca_cert_file: PathBuf,
    /// Endpoints.
    pub endpoints: Endpoints,
    /// Env.
    pub env: BTreeMap<String, String>,
}
/// Endpoints.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// Identity.
    pub identity: String,
    /// Authority.
    pub authority: String,
    /// ARM.
    pub resource_manager: String,
    /// Apigee.
    pub apigee: String,
    /// Vaults.
    pub key_vaults: BTreeMap<String, String>,
    /// App config.
    pub app_configurations: BTreeMap<String, serde_json::Value>,
    /// Apps.
    pub application_apis: BTreeMap<String, String>,
    /// Admin.
    pub admin: String,
}

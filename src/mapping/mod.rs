//! The apps mapping (interim types; replaced by the mapping work).

/// The parsed, validated mapping.
#[derive(Debug, Clone, Default)]
pub struct AppsMapping {
    /// Key Vault groups.
    pub key_vault: Vec<KeyVaultGroup>,
    /// Application APIs.
    pub application_apis: Vec<ApplicationApi>,
}
/// One vault.
#[derive(Debug, Clone)]
pub struct KeyVaultGroup {
    /// Resolved vault URL.
    pub vault_url: url::Url,
    /// Name shown in reports.
    pub vault_label: String,
    /// Its secrets.
    pub secrets: Vec<SecretMapping>,
}
/// One secret.
#[derive(Debug, Clone)]
pub struct SecretMapping {
    /// Secret name.
    pub secret_name: String,
    /// API-manager app.
    pub apim_app_name: String,
}
/// One application API.
#[derive(Debug, Clone)]
pub struct ApplicationApi {
    /// URL.
    pub http_url: url::Url,
    /// App name.
    pub app_name: String,
    /// API-manager app.
    pub apim_app_name: String,
    /// Auth.
    pub auth: ApiAuth,
}
/// Auth of an application API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ApiAuth {
    /// None.
    None,
    /// Bearer token.
    ManagedIdentity {
        /// Scope.
        scope: String,
    },
    /// Header from a setting.
    Header {
        /// Header name.
        name: String,
        /// Setting name.
        value_setting: String,
    },
}
impl AppsMapping {
    /// Distinct app names.
    pub fn apim_app_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let all = self
            .key_vault
            .iter()
            .flat_map(|g| g.secrets.iter().map(|s| &s.apim_app_name));
        for n in all.chain(self.application_apis.iter().map(|a| &a.apim_app_name)) {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }
    /// Count.
    pub fn target_count(&self) -> usize {
        self.key_vault
            .iter()
            .map(|g| g.secrets.len())
            .sum::<usize>()
            + self.application_apis.len()
    }
    /// Filter.
    pub fn only_app(&self, apim_app_name: &str) -> AppsMapping {
        let _ = apim_app_name;
        self.clone()
    }
}
/// Error.
#[derive(Debug, Clone)]
pub struct MappingError {
    /// Setting.
    pub setting: String,
    /// Path.
    pub path: String,
    /// Message.
    pub message: String,
}
/// Errors.
#[derive(Debug, Clone)]
pub struct MappingErrors(pub Vec<MappingError>);
impl std::fmt::Display for MappingErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.0 {
            writeln!(f, "{}: {}: {}", e.setting, e.path, e.message)?;
        }
        Ok(())
    }
}
impl std::error::Error for MappingErrors {}
/// Parse.
pub fn parse(
    parts: &[(String, String)],
    cloud: &crate::azure::cloud::Cloud,
    setting_exists: &dyn Fn(&str) -> bool,
) -> Result<AppsMapping, MappingErrors> {
    let _ = (parts, cloud, setting_exists);
    Err(MappingErrors(vec![]))
}

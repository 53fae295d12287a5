//! The toolkit (interim types; replaced by the toolkit work).

pub mod request;
pub mod sealed;

use crate::error::Result;
use crate::secret::ApiKey;
use std::sync::Arc;
use time::OffsetDateTime;

/// A key.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    /// App.
    pub app_name: String,
    /// Key.
    pub api_key: ApiKey,
    /// Issued.
    pub issued_at: Option<OffsetDateTime>,
    /// Expires.
    pub expires_at: Option<OffsetDateTime>,
    /// Renewed.
    pub renewed: bool,
    /// Message.
    pub message: String,
}
/// Request.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyRequest {
    /// Force.
    pub force: bool,
    /// Dry run.
    pub dry_run: bool,
}
/// Source.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync {
    /// Current key.
    async fn current_key(&self, app_name: &str, request: KeyRequest) -> Result<KeyGrant>;
}
/// Choose.
pub fn key_source(
    settings: &crate::settings::Settings,
    http: reqwest::Client,
) -> Result<Arc<dyn KeySource>> {
    let _ = (settings, http);
    Err(crate::error::Error::unexpected("interim"))
}

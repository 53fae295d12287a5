//! The toolkit: sealed company details, the renewal policy, and the API-manager issuers.
//!
//! [`KeySource`] is what the rotation engine asks for an app's current key: either the
//! in-process [`Toolkit`] (which talks to the API manager through an [`Issuer`]) or a
//! [`remote::RemoteToolkit`] that calls a ToolkitApp in another function app.

pub mod apigee;
pub mod policy;
pub mod remote;
pub mod request;
pub mod sealed;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::ApiKey;
use crate::settings::{Settings, COMPANY_DETAILS, TOOLKIT_APP_URL, TOOLKIT_UUID};
use async_trait::async_trait;
use policy::{Decision, RenewReason};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

pub use policy::RenewalPolicy;

/// One key of an app, as the API manager holds it.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The key (consumer key).
    pub key: ApiKey,
    /// When it was issued, if known.
    pub issued_at: Option<OffsetDateTime>,
    /// When it expires; `None` means never.
    pub expires_at: Option<OffsetDateTime>,
    /// Whether the key is approved (usable).
    pub approved: bool,
    /// API products associated with the key, except revoked associations.
    pub api_products: Vec<String>,
}

/// An API manager that issues keys for apps.
#[async_trait]
pub trait Issuer: Send + Sync {
    /// All credentials of the app, approved or not; a [`ErrorKind::NotFound`] error when the
    /// API manager does not know the app. Never creates or changes anything.
    async fn list_credentials(&self, app_name: &str) -> Result<Vec<Credential>>;

    /// Creates `key` for the app with the given lifetime (`None`: it never expires), associates
    /// `api_products` with it and approves it; returns it as stored. Other keys of the app are left alone. On failure no
    /// half-made key is left behind when the issuer can avoid it.
    async fn create_key(
        &self,
        app_name: &str,
        key: &ApiKey,
        lifetime: Option<time::Duration>,
        api_products: &[String],
    ) -> Result<Credential>;
}

/// The answer to "which key should consumers of this app use now".
#[derive(Debug, Clone)]
pub struct KeyGrant {
    /// The API-manager app.
    pub app_name: String,
    /// The key to use.
    pub api_key: ApiKey,
    /// When the key was issued, if known.
    pub issued_at: Option<OffsetDateTime>,
    /// When it expires; `None` means never.
    pub expires_at: Option<OffsetDateTime>,
    /// Whether this call created the key; in a dry run (`KeyRequest::dry_run`), whether it
    /// would have (`api_key` is then the current key, which the renewal would replace).
    pub renewed: bool,
    /// What happened, for humans; shows at most the last four characters of a key.
    pub message: String,
}

/// Options of one key request.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyRequest {
    /// Renew now regardless of the renewal window.
    pub force: bool,
    /// Decide but change nothing in the API manager.
    pub dry_run: bool,
}

/// Where the rotation engine gets keys from: the in-process toolkit or a remote ToolkitApp.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The key consumers of `app_name` should use now, renewing it first when the policy (or
    /// `request.force`) says so and `request.dry_run` is not set. Repeated calls return the
    /// same key until it is next due for renewal. Errors: [`ErrorKind::NotFound`] for an unknown
    /// app, [`ErrorKind::ConfigInvalid`] for configuration problems, other kinds when the API
    /// manager fails.
    async fn current_key(&self, app_name: &str, request: KeyRequest) -> Result<KeyGrant>;
}

/// The in-process toolkit: the renewal policy applied through an [`Issuer`].
pub struct Toolkit {
    issuer: Arc<dyn Issuer>,
    policy: RenewalPolicy,
    // Serialises renewals of the same app inside this process, so two concurrent requests
    // cannot both create a key.
    app_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Toolkit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolkit")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Toolkit {
    /// A toolkit over `issuer` with `policy`.
    pub fn new(issuer: Arc<dyn Issuer>, policy: RenewalPolicy) -> Self {
        Self {
            issuer,
            policy,
            app_locks: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Unseals `COMPANYDETAILS` with `TOOLKITUUID` from settings, checks the location binding
    /// against `settings.site_name`, and builds the issuer on the shared client.
    pub fn from_settings(settings: &Settings, http: reqwest::Client) -> Result<Self> {
        let missing = |name: &str, what: &str| Error::config(format!("{name}: missing; {what}"));
        let sealed = settings.company_details.as_ref().ok_or_else(|| {
            missing(
                COMPANY_DETAILS,
                "expected the sealed company details printed by `apikey-rotator seal`",
            )
        })?;
        let uuid = settings.toolkit_uuid.as_ref().ok_or_else(|| {
            missing(
                TOOLKIT_UUID,
                "expected the toolkit UUID that sealed COMPANYDETAILS",
            )
        })?;
        let details = sealed::open(uuid.expose(), sealed.expose())?;
        sealed::check_location(&details, settings.site_name.as_deref())?;
        let issuer: Arc<dyn Issuer> = match &details.issuer {
            sealed::IssuerConfig::ApigeeX(cfg) => Arc::new(apigee::ApigeeX::new(cfg, http)?),
        };
        Ok(Self::new(issuer, details.policy))
    }

    /// The policy in force.
    pub fn policy(&self) -> RenewalPolicy {
        self.policy
    }

    fn lock_for(&self, app_name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.app_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(app_name.to_string()).or_default().clone()
    }
}

/// A new key: 32 alphanumeric characters from the OS random generator (about 190 bits).
pub fn generate_key() -> ApiKey {
    ApiKey::new(random_alphanumeric(32))
}

pub(crate) fn random_alphanumeric(len: usize) -> String {
    use rand::Rng;
    rand::rngs::OsRng
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn describe_expiry(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    match expires_at {
        None => "never expires".to_string(),
        Some(t) => format!(
            "expires on {} ({} days from now)",
            t.date(),
            (t - now).whole_days()
        ),
    }
}

fn describe_reason(
    reason: &RenewReason,
    policy: &RenewalPolicy,
    current: Option<&Credential>,
) -> String {
    match (reason, current) {
        (RenewReason::ExpiresSoon { expires_at }, Some(c)) => format!(
            "key {} expires on {}, inside the {}-day renewal window",
            c.key,
            expires_at.date(),
            policy.renew_before_expiry_days
        ),
        (RenewReason::Forced, Some(c)) => format!("renewal of key {} was forced", c.key),
        (RenewReason::Forced, None) => {
            "renewal was forced and the app has no approved, unexpired key".into()
        }
        _ => "the app has no approved, unexpired key".into(),
    }
}

fn grant(app_name: &str, c: Credential, renewed: bool, message: String) -> KeyGrant {
    KeyGrant {
        app_name: app_name.to_string(),
        api_key: c.key,
        issued_at: c.issued_at,
        expires_at: c.expires_at,
        renewed,
        message,
    }
}

#[async_trait]
impl KeySource for Toolkit {
    async fn current_key(&self, app_name: &str, request: KeyRequest) -> Result<KeyGrant> {
        let lock = self.lock_for(app_name);
        let _guard = lock.lock().await;
        let credentials = self.issuer.list_credentials(app_name).await?;
        let now = OffsetDateTime::now_utc();
        let decision = self
            .policy
            .decide(&credentials, now, request.force)
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("App '{app_name}' has no key in the API manager to renew: create one there first, with the API products it needs"),
                    )
                    .with_code(e.code().to_string())
                } else {
                    e
                }
            })?;
        match decision {
            Decision::Keep(c) => {
                let message = format!(
                    "Key {} of app '{app_name}' {}; no renewal needed (renewal window {} days).",
                    c.key,
                    describe_expiry(c.expires_at, now),
                    self.policy.renew_before_expiry_days
                );
                Ok(grant(app_name, c, false, message))
            }
            Decision::Renew {
                products,
                reason,
                current,
            } => {
                let why = describe_reason(&reason, &self.policy, current.as_ref());
                if request.dry_run {
                    // Without a usable key there is nothing current to show; the latest
                    // credential at least tells the caller which key consumers hold now.
                    let shown = current.or_else(|| {
                        credentials
                            .iter()
                            .max_by_key(|c| (c.issued_at, c.expires_at.is_none(), c.expires_at))
                            .cloned()
                    });
                    let shown = shown.ok_or_else(|| Error::unexpected("no credential to show"))?;
                    let message = format!(
                        "Dry run: would create a new key for app '{app_name}' valid for {} days because {why}; nothing was changed.",
                        self.policy.new_key_lifetime_days
                    );
                    return Ok(grant(app_name, shown, true, message));
                }
                let key = generate_key();
                let lifetime = new_key_lifetime(&self.policy, &reason, current.as_ref(), now);
                let created = self
                    .issuer
                    .create_key(app_name, &key, lifetime, &products)
                    .await?;
                tracing::info!(app = app_name, key = %created.key, "created a new API key");
                let message = format!(
                    "Created key {} for app '{app_name}' ({}) because {why}; the previous key stays valid until its own expiry.",
                    created.key,
                    describe_expiry(created.expires_at, now),
                );
                Ok(grant(app_name, created, true, message))
            }
        }
    }
}

/// The lifetime of a new key: the policy's, except that a forced (emergency) renewal must
/// outlive the key it replaces, or that key, having the later expiry, would stay the current
/// one and the rotation would push the compromised key again. Replacing a never-expiring key
/// therefore gives a never-expiring key.
fn new_key_lifetime(
    policy: &RenewalPolicy,
    reason: &RenewReason,
    current: Option<&Credential>,
    now: OffsetDateTime,
) -> Option<time::Duration> {
    let lifetime = policy.new_key_lifetime();
    match (reason, current) {
        (RenewReason::Forced, Some(c)) => c
            .expires_at
            .map(|exp| lifetime.max(exp - now + time::Duration::minutes(1))),
        _ => Some(lifetime),
    }
}

/// The key source the settings select: a [`remote::RemoteToolkit`] when `TOOLKIT_APP_URL` is
/// set, otherwise the in-process [`Toolkit`].
pub fn key_source(settings: &Settings, http: reqwest::Client) -> Result<Arc<dyn KeySource>> {
    if let Some(remote) = remote::RemoteToolkit::from_settings(settings, http.clone()) {
        return Ok(Arc::new(remote));
    }
    if settings.get(TOOLKIT_APP_URL).is_some() {
        // Set but rejected by settings validation: falling back to in-process would silently
        // use other credentials than the operator intended.
        let problem = settings
            .problems()
            .iter()
            .find(|p| p.setting == TOOLKIT_APP_URL)
            .map(|p| p.to_string())
            .unwrap_or_else(|| format!("{TOOLKIT_APP_URL}: invalid"));
        return Err(Error::config(problem));
    }
    Ok(Arc::new(Toolkit::from_settings(settings, http)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use time::Duration;

    /// An in-memory issuer that records what it was asked to create.
    /// (key, lifetime, products) of each key the fake issuer created.
    type Created = (String, Option<time::Duration>, Vec<String>);

    #[derive(Default)]
    struct FakeIssuer {
        creds: Mutex<Vec<Credential>>,
        created: Mutex<Vec<Created>>,
    }

    #[async_trait]
    impl Issuer for FakeIssuer {
        async fn list_credentials(&self, app_name: &str) -> Result<Vec<Credential>> {
            if app_name != "app1" {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "API manager does not know app",
                ));
            }
            Ok(self.creds.lock().unwrap().clone())
        }
        async fn create_key(
            &self,
            _app: &str,
            key: &ApiKey,
            lifetime: Option<time::Duration>,
            products: &[String],
        ) -> Result<Credential> {
            let now = OffsetDateTime::now_utc();
            let c = Credential {
                key: key.clone(),
                issued_at: Some(now),
                expires_at: lifetime.map(|l| now + l),
                approved: true,
                api_products: products.to_vec(),
            };
            self.creds.lock().unwrap().push(c.clone());
            self.created.lock().unwrap().push((
                key.expose().to_string(),
                lifetime,
                products.to_vec(),
            ));
            Ok(c)
        }
    }

    fn toolkit_with(expires_in_days: Option<i64>) -> (Arc<FakeIssuer>, Toolkit) {
        let now = OffsetDateTime::now_utc();
        let issuer = Arc::new(FakeIssuer::default());
        issuer.creds.lock().unwrap().push(Credential {
            key: ApiKey::new("OLDKEYOLDKEYOLDKEYOLDKEY0001"),
            issued_at: Some(now - Duration::days(60)),
            expires_at: expires_in_days.map(|d| now + Duration::days(d)),
            approved: true,
            api_products: vec!["p1".into(), "p2".into()],
        });
        let tk = Toolkit::new(issuer.clone(), RenewalPolicy::default());
        (issuer, tk)
    }

    #[tokio::test]
    async fn keeps_a_key_outside_the_window() {
        let (issuer, tk) = toolkit_with(Some(80));
        let g = tk.current_key("app1", KeyRequest::default()).await.unwrap();
        assert!(!g.renewed);
        assert_eq!(g.api_key.expose(), "OLDKEYOLDKEYOLDKEYOLDKEY0001");
        assert!(g.message.contains("no renewal needed"), "{}", g.message);
        assert!(!g.message.contains("OLDKEYOLDKEY"), "{}", g.message);
        assert!(issuer.created.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn renews_once_then_returns_the_same_key() {
        let (issuer, tk) = toolkit_with(Some(10));
        let first = tk.current_key("app1", KeyRequest::default()).await.unwrap();
        assert!(first.renewed);
        assert_eq!(first.api_key.expose().len(), 32);
        assert!(first
            .api_key
            .expose()
            .chars()
            .all(|c| c.is_ascii_alphanumeric()));
        assert!(
            !first.message.contains(first.api_key.expose()),
            "{}",
            first.message
        );
        let created = issuer.created.lock().unwrap().clone();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].1, Some(Duration::days(90)));
        assert_eq!(created[0].2, ["p1", "p2"]);

        let second = tk.current_key("app1", KeyRequest::default()).await.unwrap();
        assert!(!second.renewed);
        assert_eq!(second.api_key, first.api_key);
        assert_eq!(issuer.created.lock().unwrap().len(), 1);
        // The old key is left alone.
        assert_eq!(issuer.creds.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn dry_run_changes_nothing_and_says_it_would_renew() {
        let (issuer, tk) = toolkit_with(Some(10));
        let req = KeyRequest {
            force: false,
            dry_run: true,
        };
        let g = tk.current_key("app1", req).await.unwrap();
        assert!(g.renewed, "a dry run says it would renew");
        assert_eq!(g.api_key.expose(), "OLDKEYOLDKEYOLDKEYOLDKEY0001");
        assert!(
            g.message.contains("would create a new key"),
            "{}",
            g.message
        );
        assert!(issuer.created.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn force_renews_a_never_expiring_key() {
        let (issuer, tk) = toolkit_with(None);
        let req = KeyRequest {
            force: true,
            dry_run: false,
        };
        let g = tk.current_key("app1", req).await.unwrap();
        assert!(g.renewed);
        assert!(g.message.contains("forced"), "{}", g.message);
        assert_eq!(issuer.created.lock().unwrap().len(), 1);
        // The replacement must become the current key, so it cannot expire before the old one.
        assert_eq!(issuer.created.lock().unwrap()[0].1, None);
        let again = tk.current_key("app1", KeyRequest::default()).await.unwrap();
        assert_eq!(
            again.api_key, g.api_key,
            "the forced key is the current key afterwards"
        );
    }

    #[tokio::test]
    async fn force_outlives_a_long_lived_current_key() {
        let (issuer, tk) = toolkit_with(Some(200));
        let forced = KeyRequest {
            force: true,
            dry_run: false,
        };
        let g = tk.current_key("app1", forced).await.unwrap();
        let lifetime = issuer.created.lock().unwrap()[0].1.unwrap();
        assert!(lifetime > Duration::days(200), "{lifetime}");
        let again = tk.current_key("app1", KeyRequest::default()).await.unwrap();
        assert_eq!(again.api_key, g.api_key);
    }

    #[tokio::test]
    async fn unknown_app_and_app_without_keys_are_not_found() {
        let (issuer, tk) = toolkit_with(Some(80));
        let e = tk
            .current_key("nope", KeyRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        issuer.creds.lock().unwrap().clear();
        let e = tk
            .current_key("app1", KeyRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("'app1' has no key"), "{e}");
    }

    #[test]
    fn key_source_selection() {
        let http = reqwest::Client::new();
        let s = |pairs: &[(&str, &str)]| {
            Settings::from_map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert!(key_source(
            &s(&[("TOOLKIT_APP_URL", "https://tk.example/api/ToolkitApp")]),
            http.clone()
        )
        .is_ok());
        let e = key_source(
            &s(&[("TOOLKIT_APP_URL", "http://tk.example/api")]),
            http.clone(),
        )
        .err()
        .unwrap();
        assert!(
            e.to_string()
                .starts_with("TOOLKIT_APP_URL: expected an https URL"),
            "{e}"
        );
        let e = key_source(&s(&[]), http.clone()).err().unwrap();
        assert!(e.to_string().starts_with("COMPANYDETAILS: missing"), "{e}");

        let sealed = sealed::seal(
            sealed::tests::UUID,
            sealed::tests::details_json(serde_json::json!({"boundTo": {"siteName": "func-prd"}}))
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let e = key_source(
            &s(&[
                ("COMPANYDETAILS", &sealed),
                ("TOOLKITUUID", sealed::tests::UUID),
                ("WEBSITE_SITE_NAME", "func-dev"),
            ]),
            http.clone(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("location-bound"), "{e}");
        assert!(key_source(
            &s(&[
                ("COMPANYDETAILS", &sealed),
                ("TOOLKITUUID", sealed::tests::UUID),
                ("WEBSITE_SITE_NAME", "func-prd")
            ]),
            http,
        )
        .is_ok());
    }
}

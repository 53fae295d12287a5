//! Azure credentials from the official `azure_identity` crate, chosen from the settings, with one
//! token per audience cached for the life of the process.

use crate::azure::call::Call;
use crate::azure::cloud::Cloud;
use crate::azure::http::{describe, kind_for_status};
use crate::azure::retry::{HostLimit, RetryPolicy, SdkCall, SdkPolicy};
use crate::error::{Error, ErrorKind, Result};
use crate::settings::Settings;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientMethodOptions, ClientOptions, RetryOptions, Transport};
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// The file holding the pipeline's OIDC token (GitHub Actions, Azure Pipelines), for
/// workload identity federation: the name `azure_identity` and the Azure CLI use.
pub const FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";

/// Which `azure_identity` credential the settings select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// App Service / Functions managed identity (`IDENTITY_ENDPOINT` is set).
    ManagedIdentity,
    /// Workload identity federation (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`,
    /// `AZURE_TENANT_ID`): a pipeline's OIDC token, exchanged for Entra tokens as a client
    /// assertion. No secret is stored anywhere.
    WorkloadIdentity,
    /// Service principal (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`).
    ServicePrincipal,
    /// The Azure CLI login (`az login`), for running outside Azure.
    AzureCli,
}

impl CredentialKind {
    /// Managed identity in Azure, then workload identity federation (a pipeline's OIDC token
    /// in a file), then a service principal with a secret, then the Azure CLI. Each needs all
    /// of its settings: a partial set falls through to the next.
    pub fn select(settings: &Settings) -> Self {
        if settings.get("IDENTITY_ENDPOINT").is_some() || settings.get("MSI_ENDPOINT").is_some() {
            CredentialKind::ManagedIdentity
        } else if [FEDERATED_TOKEN_FILE, "AZURE_CLIENT_ID", "AZURE_TENANT_ID"]
            .iter()
            .all(|k| settings.get(k).is_some())
        {
            CredentialKind::WorkloadIdentity
        } else if ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"]
            .iter()
            .all(|k| settings.get(k).is_some())
        {
            CredentialKind::ServicePrincipal
        } else {
            CredentialKind::AzureCli
        }
    }
}

/// `azure_core` client options that send through the shared client, know the cloud, and
/// follow the [`Call`] each request carries (the same retries, hints, deadline and per-host cap
/// as the REST calls); `policy` says what a request without one follows.
pub fn client_options(http: &reqwest::Client, cloud: &Cloud, policy: SdkPolicy) -> ClientOptions {
    let cloud_config = match cloud.name.as_str() {
        "china" => CloudConfiguration::AzureChina,
        "usgovernment" => CloudConfiguration::AzureGovernment,
        "custom" => {
            let mut custom = CustomConfiguration::default();
            custom.authority_host = cloud.authority_host.clone();
            custom.into()
        }
        _ => CloudConfiguration::AzurePublic,
    };
    // The SDK's default (8 retries within 60 s per call) would let one throttled vault eat
    // most of an HTTP-triggered run's 230 s: the project's policy and deadline apply instead,
    // as a per-call policy reading each request's call (the client's own retry is off).
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
        retry: RetryOptions::none(),
        per_call_policies: vec![Arc::new(SdkCall::new(policy.clone()))],
        per_try_policies: vec![Arc::new(HostLimit::new(policy))],
        cloud: Some(Arc::new(cloud_config)),
        ..Default::default()
    }
}

/// Builds the credential the settings select, wrapped in a per-audience token cache.
/// Its requests follow the retry policy the settings give.
pub fn build(settings: &Settings, http: &reqwest::Client) -> Result<Arc<dyn TokenCredential>> {
    let kind = CredentialKind::select(settings);
    let inner: Arc<dyn TokenCredential> = match kind {
        CredentialKind::ManagedIdentity => managed_identity(
            settings,
            http,
            settings
                .azure_client_id
                .clone()
                .map(UserAssignedId::ClientId),
        )?,
        CredentialKind::WorkloadIdentity => workload_identity(settings, http)?,
        CredentialKind::ServicePrincipal => client_secret(
            settings,
            http,
            settings.get("AZURE_TENANT_ID").unwrap_or_default(),
            settings.get("AZURE_CLIENT_ID").unwrap_or_default(),
            settings.get("AZURE_CLIENT_SECRET").unwrap_or_default(),
        )?,
        CredentialKind::AzureCli => {
            AzureCliCredential::new(None).map_err(|e| credential_error("Azure CLI", &e))?
        }
    };
    tracing::info!(credential = ?kind, cloud = %settings.cloud.name, "credential selected");
    Ok(Arc::new(CachedCredential::new(inner)))
}

/// The managed identity of the app (`user_assigned` absent: the system-assigned one), as a
/// cached credential of its own. For a second identity beside the one [`build`] selects (the
/// host storage's `AzureWebJobsStorage__clientId`).
pub fn build_managed_identity(
    settings: &Settings,
    http: &reqwest::Client,
    user_assigned: Option<UserAssignedId>,
) -> Result<Arc<dyn TokenCredential>> {
    let inner = managed_identity(settings, http, user_assigned)?;
    Ok(Arc::new(CachedCredential::new(inner)))
}

/// A service principal with a client secret, as a cached credential of its own.
pub fn build_client_secret(
    settings: &Settings,
    http: &reqwest::Client,
    tenant_id: &str,
    client_id: &str,
    secret: &str,
) -> Result<Arc<dyn TokenCredential>> {
    let inner = client_secret(settings, http, tenant_id, client_id, secret)?;
    Ok(Arc::new(CachedCredential::new(inner)))
}

fn managed_identity(
    settings: &Settings,
    http: &reqwest::Client,
    user_assigned: Option<UserAssignedId>,
) -> Result<Arc<dyn TokenCredential>> {
    let policy = Arc::new(RetryPolicy::from_limits(&settings.outbound));
    ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
        user_assigned_id: user_assigned,
        client_options: client_options(http, &settings.cloud, SdkPolicy::Process(policy)),
    }))
    .map(|c| c as Arc<dyn TokenCredential>)
    .map_err(|e| credential_error("managed identity", &e))
}

fn client_secret(
    settings: &Settings,
    http: &reqwest::Client,
    tenant_id: &str,
    client_id: &str,
    secret: &str,
) -> Result<Arc<dyn TokenCredential>> {
    let policy = Arc::new(RetryPolicy::from_limits(&settings.outbound));
    ClientSecretCredential::new(
        tenant_id,
        client_id.to_string(),
        secret.to_string().into(),
        Some(ClientSecretCredentialOptions {
            client_options: client_options(http, &settings.cloud, SdkPolicy::Process(policy)),
        }),
    )
    .map(|c| c as Arc<dyn TokenCredential>)
    .map_err(|e| credential_error("service principal", &e))
}

/// The official client-assertion credential over the token file: it sends the file's token as
/// `client_assertion` to the same authority host (and cloud) the other credentials use, and
/// reads the file again when its copy is older than ten minutes (a pipeline may refresh it).
fn workload_identity(
    settings: &Settings,
    http: &reqwest::Client,
) -> Result<Arc<dyn TokenCredential>> {
    let policy = Arc::new(RetryPolicy::from_limits(&settings.outbound));
    WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
        credential_options: ClientAssertionCredentialOptions {
            client_options: client_options(http, &settings.cloud, SdkPolicy::Process(policy)),
        },
        client_id: settings.get("AZURE_CLIENT_ID").map(str::to_string),
        tenant_id: settings.get("AZURE_TENANT_ID").map(str::to_string),
        token_file_path: settings.get(FEDERATED_TOKEN_FILE).map(Into::into),
    }))
    .map(|c| c as Arc<dyn TokenCredential>)
    .map_err(|e| credential_error(&format!("workload identity ({FEDERATED_TOKEN_FILE})"), &e))
}

fn credential_error(which: &str, e: &azure_core::Error) -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        format!("cannot set up the {which} credential: {e}"),
    )
}

/// Keeps one token per scope until five minutes before it expires, and lets only one caller
/// fetch a missing token while the others wait for it (one token per audience per run).
///
/// While the identity endpoint is down, a failed fetch (which went through the whole retry
/// policy) is the answer for that scope to the callers that were waiting behind it and to
/// every later caller of the same run (the same deadline), instead of each going through the
/// retry sequence again (the SDK credential fetches one scope at a time, so those sequences
/// would add up); a caller of another run, or outside a run, asks again, so the next run
/// recovers as soon as the endpoint does. Under a run's deadline, a fetch (or the wait for
/// another caller's) ends at the deadline.
pub struct CachedCredential {
    inner: Arc<dyn TokenCredential>,
    tokens: Mutex<HashMap<String, Arc<ScopeTokens>>>,
}

/// One scope: how many fetches have ended, and what the last one gave.
#[derive(Default)]
struct ScopeTokens {
    fetches: std::sync::atomic::AtomicU64,
    state: Mutex<TokenState>,
}

/// What is known of one scope's token.
#[derive(Default)]
enum TokenState {
    #[default]
    Empty,
    Token(AccessToken),
    /// Fetch number `fetch` failed with `error`, in the run with deadline `run`.
    Failed {
        fetch: u64,
        run: Option<Instant>,
        error: Arc<azure_core::Error>,
    },
}

/// A failed fetch's error as each of the callers that share it gets it: the same text, and the
/// original error as its source (so [`token_error`] can tell an outage from a refusal).
#[derive(Debug)]
struct SharedFailure(Arc<azure_core::Error>);

impl std::fmt::Display for SharedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

fn shared(error: &Arc<azure_core::Error>) -> azure_core::Error {
    azure_core::Error::new(
        azure_core::error::ErrorKind::Credential,
        SharedFailure(error.clone()),
    )
}

/// The run's deadline passed while a token was fetched or waited for.
#[derive(Debug)]
struct DeadlinePassed;

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the run's deadline passed before a token was had")
    }
}

impl std::error::Error for DeadlinePassed {}

impl std::fmt::Debug for CachedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedCredential").finish_non_exhaustive()
    }
}

impl CachedCredential {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn TokenCredential>) -> Self {
        Self {
            inner,
            tokens: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for CachedCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        // The deadline of the run that asks, carried in the request's context.
        let run = options
            .as_ref()
            .and_then(|o| Call::of_sdk(&o.method_options.context))
            .and_then(Call::deadline);
        let fetch = self.get_token_now(scopes, options, run);
        match run {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), fetch)
                .await
                .unwrap_or_else(|_| {
                    Err(azure_core::Error::new(
                        azure_core::error::ErrorKind::Credential,
                        DeadlinePassed,
                    ))
                }),
            None => fetch.await,
        }
    }
}

impl CachedCredential {
    async fn get_token_now(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
        run: Option<Instant>,
    ) -> azure_core::Result<AccessToken> {
        let cell = {
            let mut map = self.tokens.lock().await;
            map.entry(scopes.join(" ")).or_default().clone()
        };
        let seen = cell.fetches.load(std::sync::atomic::Ordering::Acquire);
        let mut state = cell.state.lock().await;
        match &*state {
            TokenState::Token(token)
                if token.expires_on > OffsetDateTime::now_utc() + time::Duration::minutes(5) =>
            {
                return Ok(token.clone());
            }
            TokenState::Failed {
                fetch,
                run: failed_in,
                error,
            } if *fetch > seen || (run.is_some() && *failed_in == run) => {
                return Err(shared(error));
            }
            _ => {}
        }
        let result = self.inner.get_token(scopes, options).await;
        let fetch = cell
            .fetches
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        match result {
            Ok(token) => {
                *state = TokenState::Token(token.clone());
                Ok(token)
            }
            Err(e) => {
                let error = Arc::new(e);
                *state = TokenState::Failed {
                    fetch,
                    run,
                    error: error.clone(),
                };
                Err(shared(&error))
            }
        }
    }
}

/// Gets a bearer token for `scope` under `call` (its deadline bounds the fetch, and the
/// credential's own requests follow its policy); failures as [`token_error`] maps them.
pub async fn bearer(call: &Call, credential: &dyn TokenCredential, scope: &str) -> Result<String> {
    let options = TokenRequestOptions {
        method_options: ClientMethodOptions {
            context: call.sdk_context(),
        },
    };
    credential
        .get_token(&[scope], Some(options))
        .await
        .map(|t| t.token.secret().to_string())
        .map_err(|e| token_error(&format!("cannot get a token for {scope}"), &e))
}

/// Maps a failed token request (as `what` failed) to an [`Error`] that says what to do: a
/// token endpoint that throttled, failed or could not be reached after the retries is
/// `TooManyRequests` / `ServiceUnavailable` (run again); the run's deadline is
/// `DeadlineExceeded`; anything else (a refused credential, an unreadable answer) is
/// `Unauthenticated` (fix the credential). The message follows the whole chain of causes.
pub fn token_error(what: &str, e: &azure_core::Error) -> Error {
    use azure_core::error::ErrorKind as Sdk;
    let mut kind = ErrorKind::Unauthenticated;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<DeadlinePassed>() {
            return Error::deadline_exceeded(what);
        }
        match c.downcast_ref::<azure_core::Error>().map(|e| e.kind()) {
            Some(Sdk::HttpResponse { status, .. }) => {
                let k = kind_for_status(u16::from(*status));
                if matches!(k, ErrorKind::RateLimited | ErrorKind::Unavailable) {
                    kind = k;
                }
            }
            Some(Sdk::Io | Sdk::Connection) => kind = ErrorKind::Unavailable,
            _ => {}
        }
        cause = c.source();
    }
    Error::new(kind, format!("{what}: {}", describe(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_deadline() -> Call {
        Call::new(Arc::new(RetryPolicy::default()), None)
    }

    fn run_until(deadline: Instant) -> Call {
        Call::new(Arc::new(RetryPolicy::default()), Some(deadline))
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    #[async_trait::async_trait]
    impl TokenCredential for Counting {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(AccessToken::new(
                format!("{}-{n}", scopes[0]),
                OffsetDateTime::now_utc() + time::Duration::hours(1),
            ))
        }
    }

    #[tokio::test]
    async fn one_token_per_scope_even_when_asked_concurrently() {
        let counting = Arc::new(Counting::default());
        let cached = Arc::new(CachedCredential::new(counting.clone()));
        let calls = (0..8).map(|i| {
            let c = cached.clone();
            async move {
                bearer(
                    &no_deadline(),
                    c.as_ref(),
                    if i % 2 == 0 {
                        "a/.default"
                    } else {
                        "b/.default"
                    },
                )
                .await
                .unwrap()
            }
        });
        let tokens = futures::future::join_all(calls).await;
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
        assert!(tokens.iter().all(|t| t == "a/.default-0"
            || t == "b/.default-1"
            || t == "a/.default-1"
            || t == "b/.default-0"));
    }

    /// Fails every request after `.1`, counting them.
    #[derive(Debug)]
    struct Failing(AtomicUsize, std::time::Duration);

    impl Default for Failing {
        fn default() -> Self {
            // A fetch takes a while, so the other callers queue behind it.
            Self(AtomicUsize::new(0), std::time::Duration::from_millis(20))
        }
    }

    #[async_trait::async_trait]
    impl TokenCredential for Failing {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.1).await;
            Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "identity endpoint down",
            ))
        }
    }

    #[tokio::test]
    async fn callers_waiting_behind_a_failed_fetch_fail_at_once_later_ones_ask_again() {
        let failing = Arc::new(Failing::default());
        let cached = Arc::new(CachedCredential::new(failing.clone()));
        let calls = (0..6).map(|_| {
            let c = cached.clone();
            async move {
                bearer(&no_deadline(), c.as_ref(), "a/.default")
                    .await
                    .unwrap_err()
                    .to_string()
            }
        });
        let errors = futures::future::join_all(calls).await;
        assert!(
            errors.iter().all(|e| e.contains("identity endpoint down")),
            "{errors:?}"
        );
        assert_eq!(
            failing.0.load(Ordering::SeqCst),
            1,
            "the queued callers share the one failure"
        );
        bearer(&no_deadline(), cached.as_ref(), "a/.default")
            .await
            .unwrap_err();
        assert_eq!(
            failing.0.load(Ordering::SeqCst),
            2,
            "a later caller asks again"
        );
    }

    /// Within one run (one deadline) a failed fetch is the scope's answer for every later
    /// caller too; the next run asks again.
    #[tokio::test]
    async fn a_failed_fetch_is_the_answer_for_the_rest_of_its_run() {
        let failing = Arc::new(Failing::default());
        let cached = Arc::new(CachedCredential::new(failing.clone()));
        let first_run = Instant::now() + std::time::Duration::from_secs(60);
        let first = run_until(first_run);
        for _ in 0..3 {
            bearer(&first, cached.as_ref(), "a/.default")
                .await
                .unwrap_err();
        }
        assert_eq!(failing.0.load(Ordering::SeqCst), 1, "one fetch per run");
        let next_run = first_run + std::time::Duration::from_secs(1);
        bearer(&run_until(next_run), cached.as_ref(), "a/.default")
            .await
            .unwrap_err();
        assert_eq!(
            failing.0.load(Ordering::SeqCst),
            2,
            "the next run asks again"
        );
    }

    /// A token fetch, and the callers queued behind it, end at the run's deadline with
    /// `DeadlineExceeded`.
    #[tokio::test]
    async fn token_fetches_end_at_the_runs_deadline() {
        let hanging = Failing(AtomicUsize::new(0), std::time::Duration::from_secs(30));
        let cached = Arc::new(CachedCredential::new(Arc::new(hanging)));
        let started = Instant::now();
        let deadline = started + std::time::Duration::from_millis(300);
        let calls = (0..3).map(|_| {
            let c = cached.clone();
            async move {
                bearer(&run_until(deadline), c.as_ref(), "a/.default")
                    .await
                    .unwrap_err()
            }
        });
        for e in futures::future::join_all(calls).await {
            assert_eq!(e.code(), "DeadlineExceeded", "{e}");
            assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
        }
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    }

    fn http_error(status: u16) -> azure_core::Error {
        azure_core::Error::with_message(
            azure_core::error::ErrorKind::HttpResponse {
                status: status.into(),
                error_code: None,
                raw_response: None,
            },
            format!("the token endpoint answered {status}"),
        )
    }

    /// A token endpoint that is down or throttling (after the retries) is an outage to wait
    /// out, a refusal is a credential to fix; shared failures keep the difference.
    #[tokio::test]
    async fn token_failures_say_outage_or_refusal() {
        use azure_core::error::ErrorKind as Sdk;
        let wrapped = |e: azure_core::Error| {
            azure_core::Error::with_error(
                Sdk::Credential,
                e,
                "ManagedIdentityCredential authentication failed.",
            )
        };
        let cases = [
            (wrapped(http_error(503)), "ServiceUnavailable"),
            (wrapped(http_error(429)), "TooManyRequests"),
            (
                wrapped(azure_core::Error::with_message(Sdk::Io, "connection reset")),
                "ServiceUnavailable",
            ),
            (wrapped(http_error(400)), "Unauthenticated"),
            (
                wrapped(azure_core::Error::with_message(Sdk::DataConversion, "EOF")),
                "Unauthenticated",
            ),
        ];
        for (e, code) in cases {
            let shared = shared(&Arc::new(e));
            let mapped = token_error("cannot get a token for a/.default", &shared);
            assert_eq!(mapped.code(), code, "{mapped}");
            assert!(mapped.to_string().starts_with("cannot get a token for a/.default: ManagedIdentityCredential authentication failed."), "{mapped}");
        }
        let e = token_error("x", &wrapped(http_error(503)));
        assert!(
            e.to_string().contains("the token endpoint answered 503"),
            "{e}"
        );
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn selection_order() {
        assert_eq!(
            CredentialKind::select(&settings(&[("IDENTITY_ENDPOINT", "http://x")])),
            CredentialKind::ManagedIdentity
        );
        assert_eq!(
            CredentialKind::select(&settings(&[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_CLIENT_SECRET", "s")
            ])),
            CredentialKind::ServicePrincipal
        );
        assert_eq!(
            CredentialKind::select(&settings(&[("AZURE_CLIENT_ID", "c")])),
            CredentialKind::AzureCli
        );
    }

    /// A pipeline's token file with the app's client and tenant IDs selects workload identity,
    /// ahead of a client secret (no stored secret is needed); the managed identity of a
    /// function app still comes first, and a partial set falls through.
    #[test]
    fn workload_identity_selection() {
        let federated = [
            (FEDERATED_TOKEN_FILE, "/tmp/oidc-token"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
        ];
        assert_eq!(
            CredentialKind::select(&settings(&federated)),
            CredentialKind::WorkloadIdentity
        );
        let mut with_secret = federated.to_vec();
        with_secret.push(("AZURE_CLIENT_SECRET", "s"));
        assert_eq!(
            CredentialKind::select(&settings(&with_secret)),
            CredentialKind::WorkloadIdentity
        );
        let mut in_azure = federated.to_vec();
        in_azure.push(("IDENTITY_ENDPOINT", "http://x"));
        assert_eq!(
            CredentialKind::select(&settings(&in_azure)),
            CredentialKind::ManagedIdentity
        );
        for missing in 0..federated.len() {
            let mut partial = federated.to_vec();
            partial.remove(missing);
            assert_eq!(
                CredentialKind::select(&settings(&partial)),
                CredentialKind::AzureCli,
                "without {}",
                federated[missing].0
            );
        }
    }

    /// A token file that cannot be read is a credential error naming the setting, not a panic
    /// and not a fall-through to another credential.
    #[test]
    fn an_unreadable_token_file_is_a_credential_error() {
        let s = settings(&[
            (FEDERATED_TOKEN_FILE, "/nonexistent/oidc-token"),
            ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
            ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000002"),
        ]);
        let e = build(&s, &reqwest::Client::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        let text = e.to_string();
        assert!(text.contains(FEDERATED_TOKEN_FILE), "{text}");
        assert!(text.contains("/nonexistent/oidc-token"), "{text}");
    }
}

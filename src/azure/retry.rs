//! The one retry policy for every outbound call (PRODUCT.md §10): which failures are retried,
//! exponential backoff with full jitter, `Retry-After` / `retry-after-ms` hints, a maximum
//! attempt count, a per-request timeout, the run's deadline and a cap of requests in flight
//! per service host.
//!
//! Hand-written REST calls go through [`send`], which takes the [`Call`] (policy and deadline)
//! of the run they belong to; the Azure SDK clients get the same numbers through [`SdkCall`]
//! and [`HostLimit`] (see [`crate::azure::credential::client_options`]), which read the `Call`
//! each request carries in its SDK context.

pub use crate::azure::call::Call;
use crate::azure::http::transport_error;
use crate::azure::pace::{Pacer, Scope};
use crate::error::{Error, Result};
use azure_core::http::policies::{Policy, PolicyResult, RetryHeaders};
use azure_core::http::{Context, Request, StatusCode};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

/// Statuses that mean "not done, try again": 408, 429, 500, 502, 503, 504.
pub const RETRY_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// Whether a request may be repeated blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Repeating it has the effect of sending it once (GET, HEAD, DELETE, PUT of a whole
    /// value, POSTs that only read or set a state).
    Idempotent,
    /// Repeating it could apply it twice (creating a key). Retried only when the service
    /// certainly did not process it: a 429, or no connection at all.
    NotIdempotent,
}

/// Retry numbers, the per-request timeout and the per-host cap, shared by every call of a
/// process.
#[derive(Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff base: attempt `n` (0-based retry) waits up to `base · 2^n`.
    pub base_delay: Duration,
    /// Backoff cap before jitter.
    pub max_delay: Duration,
    /// Timeout of one attempt (connect to end of body).
    pub request_timeout: Duration,
    /// Requests in flight to one `host:port` at most.
    pub per_host: usize,
    /// Requests in flight in all at most (the run's concurrency).
    pub total: usize,
    /// Waiting between the attempts of one call adds up to this at most: a longer
    /// `Retry-After` is not waited for, the throttled answer is returned.
    pub max_wait: Duration,
    /// The client-side buckets under the services' published limits ([`crate::azure::pace`]).
    pacer: Pacer,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    all: Arc<Semaphore>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(
            4,
            Duration::from_millis(500),
            Duration::from_secs(8),
            Duration::from_secs(20),
            4,
        )
    }
}

impl RetryPolicy {
    /// A policy with these numbers (`max_attempts` and `per_host` at least 1).
    pub fn new(
        max_attempts: u32,
        base_delay: Duration,
        max_delay: Duration,
        request_timeout: Duration,
        per_host: usize,
    ) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            base_delay,
            max_delay,
            request_timeout,
            per_host: per_host.max(1),
            total: Semaphore::MAX_PERMITS,
            max_wait: Duration::from_secs(30),
            pacer: Pacer::default(),
            hosts: Mutex::new(HashMap::new()),
            all: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
        }
    }

    /// This policy with at most `total` requests in flight in all (at least 1).
    pub fn with_total(mut self, total: usize) -> Self {
        self.total = total.clamp(1, Semaphore::MAX_PERMITS);
        self.all = Arc::new(Semaphore::new(self.total));
        self
    }

    /// This policy pacing itself with every published refill rate multiplied by `factor`
    /// ([`crate::azure::pace::TIME_FACTOR`]; 1 in production).
    pub fn with_pace_factor(mut self, factor: f64) -> Self {
        self.pacer = Pacer::new(factor);
        self
    }

    /// The client-side buckets under the services' published limits.
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// The policy of these limits (request timeout, concurrency, per-host cap, the pacing's
    /// time factor; the retry numbers are fixed).
    pub fn from_limits(limits: &crate::settings::OutboundLimits) -> Self {
        let d = Self::default();
        Self::new(
            d.max_attempts,
            d.base_delay,
            d.max_delay,
            limits.request_timeout,
            limits.concurrency_per_host,
        )
        .with_total(limits.concurrency)
        .with_pace_factor(limits.pace_time_factor)
    }

    /// Full jitter: a random delay in `[0, min(max_delay, base_delay · 2^retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(30)))
            .min(self.max_delay);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
    }

    /// How long to wait before retry number `retry` (1-based): the larger of the hint and the
    /// backoff; `None` when that would pass the deadline (no point in waiting).
    pub fn delay(
        &self,
        retry: u32,
        hint: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Option<Duration> {
        let delay = self
            .backoff(retry.saturating_sub(1))
            .max(hint.unwrap_or_default());
        match deadline {
            Some(d) if Instant::now() + delay >= d => None,
            _ => Some(delay),
        }
    }

    /// The semaphore capping requests to `host_port`.
    pub fn host(&self, host_port: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(host_port.to_ascii_lowercase())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }

    /// Waits for a slot of `host_port`'s cap, then for one of the total cap (in that order, so
    /// a busy host never holds a slot other hosts could use). Both are freed on drop.
    pub async fn slot(&self, host_port: &str) -> Slot {
        let host = self.host(host_port).acquire_owned().await.ok();
        let all = self.all.clone().acquire_owned().await.ok();
        Slot {
            _host: host,
            _all: all,
        }
    }
}

/// A request's place under the caps of [`RetryPolicy::slot`].
pub struct Slot {
    _host: Option<tokio::sync::OwnedSemaphorePermit>,
    _all: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Whether `status` is one the policy retries.
pub fn is_retryable_status(status: u16) -> bool {
    RETRY_STATUSES.contains(&status)
}

/// The wait a response asks for: `retry-after-ms` / `x-ms-retry-after-ms` (milliseconds),
/// else `Retry-After` in seconds or as an HTTP date (relative to `now`).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(HeaderName::from_bytes(name.as_bytes()).ok()?)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = text(name).and_then(|v| v.parse::<f64>().ok()) {
            if ms.is_finite() && ms >= 0.0 {
                return Some(Duration::from_millis(ms as u64));
            }
        }
    }
    let value = text("retry-after")?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Whether the request that failed with `e` may have been applied: a server error or a
/// transport failure (a reset, no answer). A refusal (a 4xx, throttling) was not applied; a
/// passed deadline is final. Callers that may not repeat a request blindly check what the
/// service holds before repeating it after such a failure.
pub fn outcome_unknown(e: &Error) -> bool {
    e.is_temporary() && e.kind() != crate::error::ErrorKind::RateLimited
}

/// Sends a request that may not be repeated blindly (`attempt`: a key creation, a settings
/// PUT that restarts a site). After an outcome that is unknown ([`outcome_unknown`]: it may
/// have been applied and only the answer lost), `check` reads what the service holds: `Some`
/// means it was applied, and that is the result; `None` means it was not, and the request is
/// sent again, at most the policy's attempts in all, waiting the backoff or the answer's
/// `Retry-After`, never past the deadline. A refusal (throttling already retried by [`send`],
/// a 4xx) ends it; so does a failed check, since repeating could apply the request twice.
/// `what` names the request in logs and in the check's error.
pub async fn send_checked<T, A, AF, C, CF>(
    call: &Call,
    what: &str,
    mut attempt: A,
    mut check: C,
) -> Result<T>
where
    A: FnMut() -> AF,
    AF: Future<Output = Result<T>>,
    C: FnMut() -> CF,
    CF: Future<Output = Result<Option<T>>>,
{
    let policy = call.policy();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let err = match attempt().await {
            Err(e) if outcome_unknown(&e) => e,
            done => return done,
        };
        match check().await {
            Ok(Some(applied)) => {
                tracing::warn!(
                    what,
                    code = err.code(),
                    "the answer was lost; the request was applied"
                );
                return Ok(applied);
            }
            Ok(None) => {}
            Err(check) => {
                return Err(err.with_context(
                    "check",
                    format!("whether {what} was applied could not be read: {check}"),
                ))
            }
        }
        if attempts >= policy.max_attempts {
            return Err(err);
        }
        let Some(delay) = policy.delay(attempts, err.retry_after(), call.deadline()) else {
            return Err(err);
        };
        tracing::warn!(
            what,
            code = err.code(),
            attempt = attempts,
            "failed before it was applied; sending it again"
        );
        tokio::time::sleep(delay).await;
    }
}

fn host_port(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// Sends the request `build` makes (called again for every attempt, so tokens and signatures
/// are fresh) under `call`'s policy and deadline: each attempt holds a slot of its host's cap and has
/// the request timeout (never beyond the deadline); retryable statuses and transport failures
/// are retried as [`Idempotency`] allows. Returns the last response, whatever its status, or a
/// transport error named after `service`; a passed deadline gives a `DeadlineExceeded` error.
pub async fn send<F, Fut>(
    call: &Call,
    service: &str,
    idempotency: Idempotency,
    mut build: F,
) -> Result<reqwest::Response>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<reqwest::RequestBuilder>>,
{
    let policy = call.policy();
    let deadline = call.deadline();
    let mut attempt = 0;
    let mut waited = Duration::ZERO;
    loop {
        attempt += 1;
        let timeout = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => policy.request_timeout.min(left),
                _ => return Err(Error::deadline_exceeded(service)),
            },
            None => policy.request_timeout,
        };
        let (client, request) = build().await?.timeout(timeout).build_split();
        let mut request = request.map_err(|e| transport_error(service, &e.without_url()))?;
        crate::azure::http::ensure_content_length(&mut request);
        // Under the service's published limit first, holding no slot while it waits.
        let paced = crate::azure::pace::scope_of(request.method(), request.url());
        let ticket = match &paced {
            Some(scope) => Some(paced_token(call, scope, service).await?),
            None => None,
        };
        let slot = policy.slot(&host_port(request.url())).await;
        let result = match client.execute(request).await {
            Ok(response) => read_body(response).await,
            Err(e) => Err(e),
        };
        drop(slot);
        let (retry, hint, outcome) = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                if let (Some(scope), Some(ticket)) = (&paced, ticket) {
                    policy.pacer.observe(
                        scope,
                        ticket,
                        status,
                        response.headers(),
                        Instant::now(),
                        policy.max_wait,
                    );
                }
                let retry = is_retryable_status(status)
                    && (idempotency == Idempotency::Idempotent || status == 429);
                let hint = retry_after(response.headers(), SystemTime::now());
                // A 429 waits what the service said, no more (the backoff is for failures).
                let hint = hint.map(|h| (h, status == 429));
                (retry, hint, Ok(response))
            }
            Err(e) => {
                let retry = match idempotency {
                    Idempotency::Idempotent => {
                        e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()
                    }
                    // Nothing reached the service: safe to try again.
                    Idempotency::NotIdempotent => e.is_connect(),
                };
                let e = if deadline.is_some_and(|d| Instant::now() >= d) {
                    Error::deadline_exceeded(service)
                } else {
                    transport_error(service, &e.without_url())
                };
                (retry, None, Err(e))
            }
        };
        if !retry || attempt >= policy.max_attempts {
            return outcome;
        }
        let delay = match hint {
            Some((h, true)) => deadline.is_none_or(|d| Instant::now() + h < d).then_some(h),
            other => policy.delay(attempt, other.map(|(h, _)| h), deadline),
        };
        let delay = match delay {
            Some(d) if waited + d <= policy.max_wait => d,
            _ => return outcome,
        };
        waited += delay;
        let why = match &outcome {
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) => e.code().to_string(),
        };
        tracing::warn!(service, why = %why, attempt, delay_ms = delay.as_millis() as u64, "outbound call retried");
        tokio::time::sleep(delay).await;
    }
}

/// Waits for a token of `scope` within `call`'s deadline ([`Pacer::acquire`]).
async fn paced_token(
    call: &Call,
    scope: &Scope,
    service: &str,
) -> Result<crate::azure::pace::Ticket> {
    call.policy()
        .pacer
        .acquire(scope, call.deadline())
        .await
        .map_err(|()| Error::deadline_exceeded(service))
}

/// `response` with its body read: a request holds its slot, and its connection, until its
/// answer is complete (a body cut short is then a transport failure like any other).
async fn read_body(response: reqwest::Response) -> reqwest::Result<reqwest::Response> {
    let (status, version, headers) = (
        response.status(),
        response.version(),
        response.headers().clone(),
    );
    let mut read = http::Response::new(response.bytes().await?);
    *read.status_mut() = status;
    *read.version_mut() = version;
    *read.headers_mut() = headers;
    Ok(read.into())
}

/// A call's policy in the Azure SDK's terms: the same statuses, attempts, backoff, hints and
/// deadline as [`send`]. Made for each SDK request by [`SdkCall`] from the [`Call`] it carries.
#[derive(Debug)]
pub struct SdkRetry {
    call: Call,
    headers: RetryHeaders,
    statuses: Vec<StatusCode>,
}

impl SdkRetry {
    /// The SDK form of `call`'s policy and deadline.
    pub fn new(call: Call) -> Self {
        Self {
            call,
            headers: RetryHeaders {
                retry_headers: vec![
                    azure_core::http::headers::HeaderName::from_static("retry-after-ms"),
                    azure_core::http::headers::HeaderName::from_static("x-ms-retry-after-ms"),
                    azure_core::http::headers::RETRY_AFTER,
                ],
            },
            statuses: RETRY_STATUSES
                .iter()
                .map(|s| StatusCode::from(*s))
                .collect(),
        }
    }
}

#[async_trait::async_trait]
impl azure_core::http::policies::RetryPolicy for SdkRetry {
    fn is_expired(&self, since_start: time::Duration, retry_count: u32) -> bool {
        let policy = self.call.policy();
        retry_count + 1 >= policy.max_attempts
            || since_start >= policy.max_wait
            || self.call.deadline().is_some_and(|d| Instant::now() >= d)
    }

    fn retry_headers(&self) -> Option<&RetryHeaders> {
        Some(&self.headers)
    }

    fn retry_status_codes(&self) -> &[StatusCode] {
        &self.statuses
    }

    fn sleep_duration(&self, retry_count: u32) -> time::Duration {
        let d = self.call.policy().backoff(retry_count.saturating_sub(1));
        time::Duration::try_from(d).unwrap_or(time::Duration::ZERO)
    }

    async fn wait(&self, retry_count: u32, retry_after: Option<time::Duration>) {
        let hint = retry_after.and_then(|d| Duration::try_from(d).ok());
        let deadline = self.call.deadline();
        let delay = match self.call.policy().delay(retry_count, hint, deadline) {
            Some(d) => d,
            // Waiting longer is pointless: the engine abandons the work at the deadline.
            None => deadline
                .and_then(|d| d.checked_duration_since(Instant::now()))
                .unwrap_or_default(),
        };
        tokio::time::sleep(delay).await;
    }
}

/// Where an SDK client finds the [`Call`] of a request: in the request's context, or, for a
/// client made for the whole process (a credential, built from the settings), its own policy
/// when the request carries none. A client shared across runs has no policy of its own: its
/// requests must carry their run's `Call`.
#[derive(Debug, Clone)]
pub enum SdkPolicy {
    /// Only the `Call` each request carries (a Key Vault client kept across runs).
    PerRequest,
    /// The request's `Call`, else this policy without a deadline (the identity credentials:
    /// their token requests carry the caller's `Call` when the caller has one).
    Process(Arc<RetryPolicy>),
}

impl SdkPolicy {
    fn call(&self, ctx: &Context) -> azure_core::Result<Call> {
        match (Call::of_sdk(ctx), self) {
            (Some(call), _) => Ok(call.clone()),
            (None, SdkPolicy::Process(policy)) => Ok(Call::new(policy.clone(), None)),
            (None, SdkPolicy::PerRequest) => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Other,
                "an SDK request was sent without its run's call context",
            )),
        }
    }
}

/// The SDK per-call policy that retries (the client's own retry is off): [`SdkRetry`] of the
/// request's [`Call`].
#[derive(Debug)]
pub struct SdkCall {
    source: SdkPolicy,
}

impl SdkCall {
    /// Retries as the `Call` found through `source` says.
    pub fn new(source: SdkPolicy) -> Self {
        Self { source }
    }
}

#[async_trait::async_trait]
impl Policy for SdkCall {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let retry = SdkRetry::new(self.source.call(ctx)?);
        Policy::send(&retry, ctx, request, next).await
    }
}

/// A per-try SDK policy: holds a slot of the caps of the request's [`Call`] around each
/// attempt, its body included. (The deadline needs nothing here: the engine abandons the work
/// at the deadline, and [`SdkRetry`] never waits past it.)
#[derive(Debug)]
pub struct HostLimit {
    source: SdkPolicy,
}

impl HostLimit {
    /// The caps of the `Call` found through `source`.
    pub fn new(source: SdkPolicy) -> Self {
        Self { source }
    }
}

#[async_trait::async_trait]
impl Policy for HostLimit {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let call = self.source.call(ctx)?;
        let url: url::Url = request.url().as_str().parse().map_err(|e| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Other, format!("{e}"))
        })?;
        let paced = crate::azure::pace::vault_scope(
            request.method() == azure_core::http::Method::Put,
            &url,
        );
        let ticket = match &paced {
            Some(scope) => Some(paced_token(&call, scope, "Key Vault").await.map_err(|e| {
                azure_core::Error::with_message(azure_core::error::ErrorKind::Other, e.to_string())
            })?),
            None => None,
        };
        let _slot = call.policy().slot(&host_port(request.url())).await;
        let (status, headers, body) = next[0].send(ctx, request, &next[1..]).await?.deconstruct();
        let body = body.collect().await?;
        if let (Some(scope), Some(ticket)) = (&paced, ticket) {
            let mut seen = HeaderMap::new();
            for (name, value) in headers.iter() {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_str().as_bytes()),
                    reqwest::header::HeaderValue::from_str(value.as_str()),
                ) {
                    seen.insert(n, v);
                }
            }
            let policy = call.policy();
            policy.pacer.observe(
                scope,
                ticket,
                u16::from(status),
                &seen,
                Instant::now(),
                policy.max_wait,
            );
        }
        Ok(azure_core::http::AsyncRawResponse::from_bytes(
            status, headers, body,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus};
    use axum::response::IntoResponse;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A server that answers from a script of (status, Retry-After) then 200, after `delay`,
    /// counting requests and the most in flight at once.
    #[derive(Default)]
    struct Script {
        answers: Mutex<VecDeque<(u16, Option<&'static str>)>>,
        delay: Duration,
        requests: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    async fn serve(script: Arc<Script>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/x", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(move || {
            let s = script.clone();
            async move {
                s.requests.fetch_add(1, Ordering::SeqCst);
                let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                s.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(s.delay).await;
                s.in_flight.fetch_sub(1, Ordering::SeqCst);
                let (status, hint) = s.answers.lock().unwrap().pop_front().unwrap_or((200, None));
                let mut headers = AxumHeaders::new();
                if let Some(h) = hint {
                    headers.insert("retry-after", h.parse().unwrap());
                }
                (AxumStatus::from_u16(status).unwrap(), headers, "{}").into_response()
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn fast() -> Arc<RetryPolicy> {
        Arc::new(RetryPolicy::new(
            4,
            Duration::from_millis(10),
            Duration::from_millis(40),
            Duration::from_secs(5),
            3,
        ))
    }

    async fn get(call: &Call, url: &str, idempotency: Idempotency) -> Result<reqwest::Response> {
        let client = reqwest::Client::new();
        send(call, "test", idempotency, || async { Ok(client.post(url)) }).await
    }

    fn fast_call() -> Call {
        Call::new(fast(), None)
    }

    /// Full jitter: every delay lies in [0, min(cap, base·2^n)], and they are not all equal.
    #[test]
    fn backoff_is_full_jitter_within_the_exponential_bound() {
        let p = RetryPolicy::new(
            4,
            Duration::from_millis(100),
            Duration::from_millis(1000),
            Duration::from_secs(1),
            1,
        );
        for (retry, bound) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (40, 1000),
        ] {
            let samples: Vec<Duration> = (0..200).map(|_| p.backoff(retry)).collect();
            assert!(
                samples.iter().all(|d| *d <= Duration::from_millis(bound)),
                "retry {retry}"
            );
            assert!(
                samples.iter().any(|d| *d != samples[0]),
                "jitter at retry {retry}"
            );
            assert!(
                samples
                    .iter()
                    .any(|d| *d < Duration::from_millis(bound / 2)),
                "full, not equal jitter"
            );
        }
    }

    /// The larger of hint and backoff is waited; nothing is waited past the deadline.
    #[test]
    fn delay_takes_the_hint_and_respects_the_deadline() {
        let p = RetryPolicy::new(
            4,
            Duration::from_millis(10),
            Duration::from_millis(20),
            Duration::from_secs(1),
            1,
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(2)), None),
            Some(Duration::from_secs(2))
        );
        assert!(p.delay(1, None, None).unwrap() <= Duration::from_millis(10));
        let soon = Instant::now() + Duration::from_millis(500);
        assert_eq!(p.delay(1, Some(Duration::from_secs(2)), Some(soon)), None);
    }

    /// `retry-after-ms` wins; `Retry-After` is read as seconds or as an HTTP date.
    #[test]
    fn retry_after_headers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        assert_eq!(
            retry_after(&h(&[("retry-after-ms", "1500"), ("retry-after", "9")]), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&h(&[("x-ms-retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&h(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&h(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            retry_after(&h(&[("retry-after", &past)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&h(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&h(&[]), now), None);
    }

    /// 408, 429, 500, 502, 503 and 504 are retried; other statuses are not.
    #[test]
    fn which_statuses_retry() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 409, 412, 501] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    /// Two 503s then a success: three requests, the success is returned.
    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let script = Arc::new(Script::default());
        script
            .answers
            .lock()
            .unwrap()
            .extend([(503, None), (503, None)]);
        let url = serve(script.clone()).await;
        let r = get(&fast_call(), &url, Idempotency::Idempotent)
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(script.requests.load(Ordering::SeqCst), 3);
    }

    /// Attempts are capped: the last failing answer is returned after `max_attempts`.
    #[tokio::test]
    async fn attempts_are_capped() {
        let script = Arc::new(Script::default());
        script.answers.lock().unwrap().extend([(500, None); 10]);
        let url = serve(script.clone()).await;
        let r = get(&fast_call(), &url, Idempotency::Idempotent)
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 500);
        assert_eq!(script.requests.load(Ordering::SeqCst), 4);
    }

    /// A request that could apply twice is not repeated after a 5xx (outcome unknown), but is
    /// after a 429 (the service refused it).
    #[tokio::test]
    async fn non_idempotent_requests_are_retried_only_when_refused() {
        let script = Arc::new(Script::default());
        script.answers.lock().unwrap().extend([(503, None)]);
        let url = serve(script.clone()).await;
        let r = get(&fast_call(), &url, Idempotency::NotIdempotent)
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(script.requests.load(Ordering::SeqCst), 1);

        let script = Arc::new(Script::default());
        script.answers.lock().unwrap().extend([(429, Some("0"))]);
        let url = serve(script.clone()).await;
        let r = get(&fast_call(), &url, Idempotency::NotIdempotent)
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(script.requests.load(Ordering::SeqCst), 2);
    }

    /// A 429 with `Retry-After: 1` is waited for (at least one second).
    #[tokio::test]
    async fn retry_after_is_honoured() {
        let script = Arc::new(Script::default());
        script.answers.lock().unwrap().extend([(429, Some("1"))]);
        let url = serve(script.clone()).await;
        let started = Instant::now();
        let r = get(&fast_call(), &url, Idempotency::Idempotent)
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    /// A `Retry-After` longer than the wait budget is not waited for: the 429 is returned.
    #[tokio::test]
    async fn a_hint_beyond_the_wait_budget_is_not_waited_for() {
        let script = Arc::new(Script::default());
        script.answers.lock().unwrap().extend([(429, Some("60"))]);
        let url = serve(script.clone()).await;
        let started = Instant::now();
        let r = get(&fast_call(), &url, Idempotency::Idempotent)
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(script.requests.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// The SDK form has the same attempts, statuses and wait budget, and never waits past
    /// the deadline even when the service asks for longer.
    #[tokio::test]
    async fn the_sdk_policy_uses_the_same_numbers_and_the_deadline() {
        use azure_core::http::policies::RetryPolicy as _;
        let sdk = SdkRetry::new(fast_call());
        assert!(!sdk.is_expired(time::Duration::ZERO, 2));
        assert!(sdk.is_expired(time::Duration::ZERO, 3), "4 attempts in all");
        assert!(
            sdk.is_expired(time::Duration::seconds(31), 0),
            "30 s budget"
        );
        let statuses: Vec<u16> = sdk
            .retry_status_codes()
            .iter()
            .map(|s| u16::from(*s))
            .collect();
        assert_eq!(statuses, RETRY_STATUSES);
        let started = Instant::now();
        SdkRetry::new(Call::new(
            fast(),
            Some(started + Duration::from_millis(200)),
        ))
        .wait(1, Some(time::Duration::seconds(10)))
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let started = Instant::now();
        sdk.wait(1, Some(time::Duration::milliseconds(300))).await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "the hint is waited for"
        );
    }

    /// A request that may not be repeated blindly: after an unknown outcome the check says
    /// whether it was applied (then it is not sent again) or not (then it is, up to the
    /// policy's attempts); a refusal is neither checked nor repeated.
    #[tokio::test]
    async fn checked_requests_are_repeated_only_when_not_applied() {
        let run = |failure: Error, applied: Option<u8>| async move {
            let (attempts, checks) = (AtomicUsize::new(0), AtomicUsize::new(0));
            let call = fast_call();
            let result = send_checked(
                &call,
                "the creation",
                || async {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    Err::<u8, _>(failure.clone())
                },
                || async {
                    checks.fetch_add(1, Ordering::SeqCst);
                    Ok(applied)
                },
            );
            let result = result.await;
            (result.ok(), attempts.into_inner(), checks.into_inner())
        };
        let unknown = Error::new(crate::error::ErrorKind::Unavailable, "503");
        assert_eq!(
            run(unknown.clone(), Some(7)).await,
            (Some(7), 1, 1),
            "lost answer"
        );
        assert_eq!(run(unknown, None).await, (None, 4, 4), "not applied");
        let refused = Error::new(crate::error::ErrorKind::RateLimited, "429");
        assert_eq!(run(refused, None).await, (None, 1, 0), "refused");
    }

    /// No more requests than the per-host cap are in flight to one host at once.
    #[tokio::test]
    async fn requests_per_host_are_capped() {
        let script = Arc::new(Script {
            delay: Duration::from_millis(100),
            ..Script::default()
        });
        let url = serve(script.clone()).await;
        let call = fast_call();
        let calls = (0..12).map(|_| get(&call, &url, Idempotency::Idempotent));
        for r in futures::future::join_all(calls).await {
            assert_eq!(r.unwrap().status().as_u16(), 200);
        }
        assert_eq!(script.requests.load(Ordering::SeqCst), 12);
        assert_eq!(script.max_in_flight.load(Ordering::SeqCst), 3);
    }

    /// A call that would outlast the deadline is cut at the deadline with `DeadlineExceeded`.
    #[tokio::test]
    async fn the_deadline_cuts_a_slow_call() {
        let script = Arc::new(Script {
            delay: Duration::from_secs(5),
            ..Script::default()
        });
        let url = serve(script.clone()).await;
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let call = Call::new(fast(), Some(deadline));
        let e = get(&call, &url, Idempotency::Idempotent).await.unwrap_err();
        assert_eq!(e.code(), "DeadlineExceeded");
        assert_eq!(e.kind(), crate::error::ErrorKind::DeadlineExceeded);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

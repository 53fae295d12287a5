//! The rotator's own pacing: it keeps under each service's published limits instead of
//! learning them from 429s. Per scope the service counts in (a subscription's reads or writes,
//! a vault, a store, an organisation) a client-side token bucket of the published size and
//! rate paces the requests; the remaining-quota headers a service sends bring the bucket down
//! to what the service says is left (another client may share the quota); a 429 holds the
//! whole scope for the `Retry-After` it carries (and drains the bucket when it carries none).
//!
//! [`crate::azure::retry::send`] and the SDK policy [`crate::azure::retry::HostLimit`] call
//! [`Pacer::acquire`] before each attempt takes its slot under the caps, so a request waiting
//! for a token holds no slot other hosts could use, and [`Pacer::observe`] on its answer. A
//! request to a host that is none of these services is not paced. A full bucket lets a
//! request through at once: pacing only waits where the service would have refused.
//!
//! The numbers repeat the published ones (the sandbox's doubles enforce the same, from their
//! own files; the product shares no code with them), each with its source. The client keeps a
//! small margin under them ([`MARGIN_CAPACITY`], [`MARGIN_RATE`]) so that its own clock and
//! the service's never disagree into a 429. [`TIME_FACTOR`] multiplies every refill rate, for
//! tests and the benchmark against doubles scaled the same way; it stays 1 in production.

use reqwest::header::HeaderMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Setting multiplying every published refill rate the rotator paces itself by (a number above
/// 0, default 1): only for tests and the benchmark, against a sandbox started with the same
/// factor (`apikey-rotator sandbox --limits FACTOR`).
pub const TIME_FACTOR: &str = "ROTATION_RATE_LIMIT_TIME_FACTOR";

/// The share of a bucket's published size the client uses.
pub const MARGIN_CAPACITY: f64 = 0.95;
/// The share of a bucket's published refill rate the client uses.
pub const MARGIN_RATE: f64 = 0.98;

/// A published limit: a bucket of `capacity` requests refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// The bucket's size.
    pub capacity: f64,
    /// Tokens back per second.
    pub per_second: f64,
}

impl Rate {
    /// "`n` requests per `window_seconds`".
    pub const fn per_window(n: f64, window_seconds: f64) -> Rate {
        Rate {
            capacity: n,
            per_second: n / window_seconds,
        }
    }
}

// Resource Manager: a regional token bucket per subscription, principal and operation type
// https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/request-limits-and-throttling
/// Subscription reads: 250, refilled 25 per second.
pub const ARM_READS: Rate = Rate {
    capacity: 250.0,
    per_second: 25.0,
};
/// Subscription writes (PUT, PATCH, POST actions such as `appsettings/list`): 200, 10 per second.
pub const ARM_WRITES: Rate = Rate {
    capacity: 200.0,
    per_second: 10.0,
};
/// Subscription deletes: 200, 10 per second.
pub const ARM_DELETES: Rate = Rate {
    capacity: 200.0,
    per_second: 10.0,
};
// Key Vault, per vault per region in 10 seconds
// https://learn.microsoft.com/en-us/azure/key-vault/general/service-limits
/// Secret CREATE (a `PUT` of a secret): 300 per 10 s.
pub const VAULT_SECRET_CREATE: Rate = Rate::per_window(300.0, 10.0);
/// Every other vault transaction: 4,000 per 10 s.
pub const VAULT_TRANSACTIONS: Rate = Rate::per_window(4000.0, 10.0);
/// App Configuration, Standard tier, per store: 30,000 requests per hour (Azure/AppConfiguration#716,
/// https://learn.microsoft.com/en-us/answers/questions/1167239/do-all-requests-to-azure-app-configuration-subtrac).
pub const APP_CONFIGURATION_STANDARD: Rate = Rate::per_window(30_000.0, 3_600.0);
/// Apigee APIs, per organisation: 6,000 per minute
/// (https://cloud.google.com/apigee/docs/api-platform/reference/limits).
pub const APIGEE_MANAGEMENT: Rate = Rate::per_window(6_000.0, 60.0);

/// The bucket one request draws from.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// Service, host and scope, and the class within it: the bucket's name.
    pub key: String,
    /// The published limit.
    pub rate: Rate,
    /// The header in which the service says how many requests of this class are left.
    pub remaining_header: Option<&'static str>,
}

/// The scope of a hand-written request (Resource Manager, App Configuration, Apigee), by the
/// shape of its URL; `None` for anything else (an application's API, a token endpoint).
pub fn scope_of(method: &reqwest::Method, url: &url::Url) -> Option<Scope> {
    let host = format!(
        "{}:{}",
        url.host_str().unwrap_or_default().to_ascii_lowercase(),
        url.port_or_known_default().unwrap_or_default()
    );
    let path = url.path();
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or_default();
    if first.eq_ignore_ascii_case("subscriptions") && path.contains("/providers/") {
        let subscription = segments.next().filter(|s| !s.is_empty())?;
        let (class, rate) = match *method {
            reqwest::Method::GET | reqwest::Method::HEAD => ("reads", ARM_READS),
            reqwest::Method::DELETE => ("deletes", ARM_DELETES),
            _ => ("writes", ARM_WRITES),
        };
        let header = match class {
            "reads" => "x-ms-ratelimit-remaining-subscription-reads",
            "deletes" => "x-ms-ratelimit-remaining-subscription-deletes",
            _ => "x-ms-ratelimit-remaining-subscription-writes",
        };
        return Some(Scope {
            key: format!("arm {host} {} {class}", subscription.to_ascii_lowercase()),
            rate,
            remaining_header: Some(header),
        });
    }
    if first == "kv" {
        return Some(Scope {
            key: format!("appConfiguration {host}"),
            rate: APP_CONFIGURATION_STANDARD,
            remaining_header: None,
        });
    }
    if first == "v1" && segments.next() == Some("organizations") {
        let org = segments.next().filter(|s| !s.is_empty())?;
        return Some(Scope {
            key: format!("apigee {host} {org}"),
            rate: APIGEE_MANAGEMENT,
            remaining_header: None,
        });
    }
    None
}

/// The scope of a Key Vault secrets request (sent by the SDK): the vault, and a `PUT` of a
/// secret (a new version) apart from every other transaction.
pub fn vault_scope(is_put: bool, url: &url::Url) -> Option<Scope> {
    let rest = url.path().strip_prefix("/secrets")?;
    let host = format!(
        "{}:{}",
        url.host_str().unwrap_or_default().to_ascii_lowercase(),
        url.port_or_known_default().unwrap_or_default()
    );
    let create = is_put && rest.split('/').filter(|s| !s.is_empty()).count() == 1;
    let (class, rate) = if create {
        ("secretCreate", VAULT_SECRET_CREATE)
    } else {
        ("transactions", VAULT_TRANSACTIONS)
    };
    Some(Scope {
        key: format!("keyVault {host} {class}"),
        rate,
        remaining_header: None,
    })
}

/// A request's place in its bucket, for [`Pacer::observe`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    taken: u64,
}

/// One client-side bucket. `tokens` may go below zero: each request reserves its token when
/// it asks and waits until the refill has paid for it, so waiters are served in order.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    at: Instant,
    /// Nothing is sent before this (a 429's `Retry-After`).
    not_before: Option<Instant>,
    /// Tokens taken so far.
    taken: u64,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.at = self.at.max(now);
    }
}

/// Every client-side bucket of a process's retry policy.
#[derive(Debug)]
pub struct Pacer {
    factor: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new(1.0)
    }
}

impl Pacer {
    /// Buckets at the published numbers, refill rates multiplied by `factor`.
    pub fn new(factor: f64) -> Self {
        Self {
            factor: factor.max(1e-6),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn with_bucket<T>(&self, scope: &Scope, now: Instant, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(scope.key.clone()).or_insert_with(|| Bucket {
            capacity: (scope.rate.capacity * MARGIN_CAPACITY).max(1.0),
            per_second: scope.rate.per_second * MARGIN_RATE * self.factor,
            tokens: (scope.rate.capacity * MARGIN_CAPACITY).max(1.0),
            at: now,
            not_before: None,
            taken: 0,
        });
        bucket.refill(now);
        f(bucket)
    }

    /// Reserves a token of `scope` at `now`: how long to wait for it, or `None` (and nothing
    /// reserved) when that wait would end after `deadline`.
    pub fn reserve(
        &self,
        scope: &Scope,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Option<(Duration, Ticket)> {
        self.with_bucket(scope, now, |b| {
            let tokens = b.tokens - 1.0;
            let mut wait = if tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-tokens / b.per_second)
            };
            if let Some(at) = b.not_before {
                wait = wait.max(at.saturating_duration_since(now));
            }
            if deadline.is_some_and(|d| !wait.is_zero() && now + wait >= d) {
                return None;
            }
            b.tokens = tokens;
            b.taken += 1;
            Some((wait, Ticket { taken: b.taken }))
        })
    }

    /// Waits for a token of `scope`; `Err` when it would come after `deadline`.
    pub async fn acquire(&self, scope: &Scope, deadline: Option<Instant>) -> Result<Ticket, ()> {
        let (wait, ticket) = self.reserve(scope, Instant::now(), deadline).ok_or(())?;
        if !wait.is_zero() {
            tracing::debug!(
                scope = %scope.key,
                wait_ms = wait.as_millis() as u64,
                "paced under the service's limit"
            );
            tokio::time::sleep(wait).await;
        }
        Ok(ticket)
    }

    /// What the answer to the request of `ticket` says about `scope`: the remaining count
    /// brings the bucket down to it (less what was taken since this request), a 429 holds the
    /// scope for its `Retry-After` when that is within `max_hold` and drains the bucket.
    pub fn observe(
        &self,
        scope: &Scope,
        ticket: Ticket,
        status: u16,
        headers: &HeaderMap,
        now: Instant,
        max_hold: Duration,
    ) {
        let remaining = scope
            .remaining_header
            .and_then(|name| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let hint = (status == 429)
            .then(|| crate::azure::retry::retry_after(headers, std::time::SystemTime::now()))
            .flatten();
        self.with_bucket(scope, now, |b| {
            if let Some(left) = remaining {
                let since = b.taken.saturating_sub(ticket.taken) as f64;
                b.tokens = b.tokens.min(left - since);
            }
            if status == 429 {
                b.tokens = b.tokens.min(0.0);
                if let Some(h) = hint.filter(|h| *h <= max_hold) {
                    let until = now + h;
                    b.not_before = Some(b.not_before.map_or(until, |t| t.max(until)));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> url::Url {
        url::Url::parse(u).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// Each service's requests find their scope and class; anything else is not paced.
    #[test]
    fn scopes_by_url() {
        let get = reqwest::Method::GET;
        let post = reqwest::Method::POST;
        let arm = "https://management.azure.com/subscriptions/SUB-1/resourceGroups/rg/providers/Microsoft.Web/sites/a/config/appsettings/list?api-version=2024-04-01";
        let s = scope_of(&post, &url(arm)).unwrap();
        assert_eq!(s.key, "arm management.azure.com:443 sub-1 writes");
        assert_eq!(s.rate, ARM_WRITES);
        assert_eq!(
            s.remaining_header,
            Some("x-ms-ratelimit-remaining-subscription-writes")
        );
        let s = scope_of(&get, &url(arm)).unwrap();
        assert!(s.key.ends_with(" reads") && s.rate == ARM_READS);
        let s = scope_of(&reqwest::Method::DELETE, &url(arm)).unwrap();
        assert_eq!(s.rate, ARM_DELETES);
        let s = scope_of(&get, &url("https://appcs-x.azconfig.io/kv/k?label=l")).unwrap();
        assert_eq!(s.key, "appConfiguration appcs-x.azconfig.io:443");
        assert_eq!(s.rate.per_second, 30_000.0 / 3_600.0);
        let s = scope_of(
            &post,
            &url("https://apigee.googleapis.com/v1/organizations/acme/developers/d/apps/a/keys"),
        )
        .unwrap();
        assert_eq!(s.key, "apigee apigee.googleapis.com:443 acme");
        assert_eq!(s.rate.per_second, 100.0);
        assert_eq!(
            scope_of(&get, &url("https://api.example.com/keys?appName=a")),
            None
        );
        assert_eq!(
            scope_of(&post, &url("https://oauth2.googleapis.com/token")),
            None
        );
        let put = vault_scope(
            true,
            &url("https://kv.vault.azure.net/secrets/s?api-version=7.6"),
        );
        assert_eq!(put.unwrap().rate, VAULT_SECRET_CREATE);
        let get = vault_scope(false, &url("https://kv.vault.azure.net/secrets/s/v1")).unwrap();
        assert_eq!(get.rate, VAULT_TRANSACTIONS);
        assert_eq!(
            vault_scope(false, &url("https://kv.vault.azure.net/keys/k")),
            None
        );
    }

    /// Equal within a microsecond (the margins are not exact in binary).
    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(1)
    }

    fn scope(capacity: f64, per_second: f64) -> Scope {
        Scope {
            key: "k".into(),
            rate: Rate {
                capacity,
                per_second,
            },
            remaining_header: Some("x-ms-ratelimit-remaining-subscription-writes"),
        }
    }

    /// A full bucket lets its (margined) size through at once, then each request waits its
    /// turn at the (margined, scaled) rate; a wait past the deadline reserves nothing.
    #[test]
    fn bucket_arithmetic() {
        let pacer = Pacer::new(2.0);
        let s = scope(20.0, 5.0); // 19 at once, then 9.8 per second
        let t0 = Instant::now();
        for _ in 0..19 {
            assert_eq!(pacer.reserve(&s, t0, None).unwrap().0, Duration::ZERO);
        }
        let (wait, _) = pacer.reserve(&s, t0, None).unwrap();
        assert!(close(wait, Duration::from_secs_f64(1.0 / 9.8)), "{wait:?}");
        let (wait, _) = pacer.reserve(&s, t0, None).unwrap();
        assert!(close(wait, Duration::from_secs_f64(2.0 / 9.8)), "{wait:?}");
        assert!(pacer
            .reserve(&s, t0, Some(t0 + Duration::from_millis(100)))
            .is_none());
        let (wait, _) = pacer.reserve(&s, t0, None).unwrap();
        assert!(
            close(wait, Duration::from_secs_f64(3.0 / 9.8)),
            "nothing was reserved"
        );
        // Long after: full again, never more than its size.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..19 {
            assert_eq!(pacer.reserve(&s, later, None).unwrap().0, Duration::ZERO);
        }
        assert!(pacer.reserve(&s, later, None).unwrap().0 > Duration::ZERO);
    }

    /// A low remaining count slows the bucket down to it, less the requests taken since; a
    /// higher one changes nothing.
    #[test]
    fn remaining_header_slows_down() {
        let pacer = Pacer::new(1.0);
        let s = scope(200.0, 10.0);
        let t0 = Instant::now();
        let (_, first) = pacer.reserve(&s, t0, None).unwrap();
        pacer.reserve(&s, t0, None).unwrap();
        let high = headers(&[("x-ms-ratelimit-remaining-subscription-writes", "199")]);
        pacer.observe(&s, first, 200, &high, t0, Duration::from_secs(30));
        assert_eq!(pacer.reserve(&s, t0, None).unwrap().0, Duration::ZERO);
        // The service says 2 were left after the first; 2 were taken since: none is left.
        let low = headers(&[("x-ms-ratelimit-remaining-subscription-writes", "2")]);
        pacer.observe(&s, first, 200, &low, t0, Duration::from_secs(30));
        let (wait, _) = pacer.reserve(&s, t0, None).unwrap();
        assert!(close(wait, Duration::from_secs_f64(1.0 / 9.8)), "{wait:?}");
    }

    /// A 429 holds the scope for its `Retry-After` (a hint longer than the hold is not
    /// honoured here: the request gives up) and drains the bucket.
    #[test]
    fn a_429_holds_the_scope() {
        let pacer = Pacer::new(1.0);
        let s = scope(4000.0, 400.0);
        let t0 = Instant::now();
        let (_, t) = pacer.reserve(&s, t0, None).unwrap();
        let h = headers(&[("retry-after", "3")]);
        pacer.observe(&s, t, 429, &h, t0, Duration::from_secs(30));
        let (wait, _) = pacer.reserve(&s, t0, None).unwrap();
        assert_eq!(wait, Duration::from_secs(3));
        let other = Scope {
            key: "other".into(),
            ..s.clone()
        };
        let (_, t) = pacer.reserve(&other, t0, None).unwrap();
        let long = headers(&[("retry-after", "3600")]);
        pacer.observe(&other, t, 429, &long, t0, Duration::from_secs(30));
        let (wait, _) = pacer.reserve(&other, t0, None).unwrap();
        assert!(wait < Duration::from_millis(10), "{wait:?}");
        // No hint at all (Apigee): the bucket is drained, the next request waits a token.
        let g = Scope {
            key: "g".into(),
            ..s
        };
        let (_, t) = pacer.reserve(&g, t0, None).unwrap();
        pacer.observe(&g, t, 429, &HeaderMap::new(), t0, Duration::from_secs(30));
        let (wait, _) = pacer.reserve(&g, t0, None).unwrap();
        assert!(
            close(wait, Duration::from_secs_f64(1.0 / (400.0 * MARGIN_RATE))),
            "{wait:?}"
        );
    }
}

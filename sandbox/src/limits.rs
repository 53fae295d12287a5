//! The services' published request limits, enforced the one way every double shares: a token
//! bucket per scope (a subscription, a vault, a store, an organisation) and class of request.
//!
//! Each double says which bucket a request draws from and what its limit is
//! ([`super::double::Double::limit`]: the numbers and their sources live in the double's own
//! file), and how the service answers when the bucket is empty
//! ([`super::double::Double::throttled`]) or which remaining-quota headers it sends when it is
//! not ([`super::double::Double::admitted`]). [`super::front_end::throttle`] applies them to
//! every request, before authentication, faults and the service's handlers, as the services'
//! front doors do.
//!
//! A limit published as "N per window" is a bucket of N tokens refilled at N / window (so a
//! burst of N passes, and the long-run rate is the published one); Resource Manager publishes
//! its buckets directly. A refused request takes no token (Key Vault: "Failed requests that
//! return a 429 do not count towards the throttle limits").
//!
//! Throttling is off unless asked for ([`Throttling`]): the ordinary test sandbox answers as
//! before, and `--workload` turns it on. A time factor `f` multiplies every refill rate (and so
//! divides every window) so a run at the limits fits a CI job.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether the doubles enforce their services' limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Throttling {
    /// Never throttle (the ordinary test sandbox: request counts stay what they were).
    Off,
    /// Throttle at the published limits, every refill rate multiplied by `time_factor` (1: the
    /// published numbers; 4: buckets refill four times as fast, windows a quarter as long).
    On {
        /// Multiplies refill rates and divides windows (at least a millionth).
        time_factor: f64,
    },
}

impl Throttling {
    /// The published limits, unscaled.
    pub const PUBLISHED: Throttling = Throttling::On { time_factor: 1.0 };

    /// `off`, or a positive time factor (`1`, `2.5`), as `--limits` takes it.
    pub fn parse(text: &str) -> Result<Throttling, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(Throttling::Off);
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Throttling::On { time_factor: f }),
            _ => Err(format!(
                "expected \"off\" or a positive time factor, not \"{text}\""
            )),
        }
    }
}

/// A published limit: a bucket of `capacity` requests refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    pub capacity: f64,
    pub per_second: f64,
}

impl Rate {
    /// "`n` requests per `window`", as a bucket of `n` refilled over the window.
    pub const fn per_window(n: f64, window_seconds: f64) -> Rate {
        Rate {
            capacity: n,
            per_second: n / window_seconds,
        }
    }
}

/// The bucket one request draws from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limit {
    /// The scope the service counts in (a subscription ID, a vault's or store's name, an
    /// organisation).
    pub scope: String,
    /// The class of request within the scope (`reads`, `writes`, `secretCreate`, ...), as the
    /// service names it in its headers or docs.
    pub class: &'static str,
    /// The published limit.
    pub rate: Rate,
}

/// What the bucket says to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    /// Admitted; `remaining` whole tokens are left.
    Admitted { remaining: u64 },
    /// Refused; a token is back after `retry_after`.
    Throttled { retry_after: Duration },
}

/// One bucket's state.
#[derive(Debug, Clone)]
struct Bucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
    admitted: u64,
    throttled: u64,
}

impl Bucket {
    fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate.capacity,
            at: now,
            admitted: 0,
            throttled: 0,
        }
    }

    /// Takes one token at `now` if there is one.
    fn take(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.capacity);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.admitted += 1;
            Verdict::Admitted {
                remaining: self.tokens.floor() as u64,
            }
        } else {
            self.throttled += 1;
            let missing = 1.0 - self.tokens;
            Verdict::Throttled {
                retry_after: Duration::from_secs_f64(missing / self.rate.per_second),
            }
        }
    }
}

/// What `admin/limits` shows of one bucket.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BucketReport {
    pub service: String,
    pub scope: String,
    pub class: String,
    /// The bucket's size.
    pub capacity: f64,
    /// Its refill rate, scaled by the time factor.
    pub per_second: f64,
    pub admitted: u64,
    pub throttled: u64,
}

/// Every bucket of the sandbox, made on first use.
pub(crate) struct Limiter {
    factor: Option<f64>,
    buckets: Mutex<BTreeMap<(String, String, &'static str), Bucket>>,
}

impl Limiter {
    /// A limiter that throttles as `throttling` says.
    pub fn new(throttling: Throttling) -> Self {
        Self {
            factor: match throttling {
                Throttling::Off => None,
                Throttling::On { time_factor } => Some(time_factor.max(1e-6)),
            },
            buckets: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether any limit is enforced.
    pub fn enabled(&self) -> bool {
        self.factor.is_some()
    }

    /// Takes a token of `service`'s bucket for `limit` now; `None` when throttling is off.
    pub fn take(&self, service: &str, limit: &Limit) -> Option<Verdict> {
        self.take_at(service, limit, Instant::now())
    }

    fn take_at(&self, service: &str, limit: &Limit, now: Instant) -> Option<Verdict> {
        let factor = self.factor?;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let rate = Rate {
            capacity: limit.rate.capacity,
            per_second: limit.rate.per_second * factor,
        };
        let bucket = buckets
            .entry((service.to_string(), limit.scope.clone(), limit.class))
            .or_insert_with(|| Bucket::new(rate, now));
        Some(bucket.take(now))
    }

    /// Sets `limit`'s bucket of `service` to `tokens` (at most its size) now, making it if it
    /// is new: what another client spending the same quota would leave (`POST admin/limits`).
    pub fn set_tokens(&self, service: &str, limit: &Limit, tokens: f64) {
        let Some(factor) = self.factor else { return };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let rate = Rate {
            capacity: limit.rate.capacity,
            per_second: limit.rate.per_second * factor,
        };
        let bucket = buckets
            .entry((service.to_string(), limit.scope.clone(), limit.class))
            .or_insert_with(|| Bucket::new(rate, now));
        bucket.tokens = tokens.clamp(0.0, rate.capacity);
        bucket.at = now;
    }

    /// Every bucket used so far, with what it admitted and refused.
    pub fn report(&self) -> Vec<BucketReport> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .iter()
            .map(|((service, scope, class), b)| BucketReport {
                service: service.clone(),
                scope: scope.clone(),
                class: class.to_string(),
                capacity: b.rate.capacity,
                per_second: b.rate.per_second,
                admitted: b.admitted,
                throttled: b.throttled,
            })
            .collect()
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1 (a header of 0 would tell
/// a client to try again at once, into the same empty bucket).
pub(crate) fn whole_seconds(d: Duration) -> u64 {
    (d.as_secs_f64().ceil() as u64).max(1)
}

/// Milliseconds for `retry-after-ms`: rounded up, at least 1.
pub(crate) fn whole_millis(d: Duration) -> u64 {
    (d.as_secs_f64() * 1000.0).ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(capacity: f64, per_second: f64) -> Limit {
        Limit {
            scope: "s".into(),
            class: "reads",
            rate: Rate {
                capacity,
                per_second,
            },
        }
    }

    /// A full bucket passes a burst of its size, then refuses with the time until the next
    /// token; refills at its rate, never above its size; refusals take nothing.
    #[test]
    fn bucket_arithmetic() {
        let limiter = Limiter::new(Throttling::PUBLISHED);
        let l = limit(3.0, 2.0);
        let t0 = Instant::now();
        let take = |t: Instant| limiter.take_at("arm", &l, t).unwrap();
        assert_eq!(take(t0), Verdict::Admitted { remaining: 2 });
        assert_eq!(take(t0), Verdict::Admitted { remaining: 1 });
        assert_eq!(take(t0), Verdict::Admitted { remaining: 0 });
        assert_eq!(
            take(t0),
            Verdict::Throttled {
                retry_after: Duration::from_millis(500)
            }
        );
        // 250 ms later half a token is back: still 250 ms to go (the refusal took nothing).
        let t = t0 + Duration::from_millis(250);
        assert_eq!(
            take(t),
            Verdict::Throttled {
                retry_after: Duration::from_millis(250)
            }
        );
        assert_eq!(
            take(t0 + Duration::from_millis(500)),
            Verdict::Admitted { remaining: 0 }
        );
        // An hour later: full, not more.
        assert_eq!(
            take(t0 + Duration::from_secs(3600)),
            Verdict::Admitted { remaining: 2 }
        );
        let report = limiter.report();
        assert_eq!((report[0].admitted, report[0].throttled), (5, 2));
        // Spent by another client: empty now.
        let t = Instant::now();
        limiter.set_tokens("arm", &l, 0.0);
        assert!(matches!(
            limiter.take_at("arm", &l, t),
            Some(Verdict::Throttled { .. })
        ));
    }

    /// The time factor multiplies the refill rate, not the size; off never throttles; scopes
    /// and classes have buckets of their own.
    #[test]
    fn factor_scopes_and_off() {
        let fast = Limiter::new(Throttling::On { time_factor: 10.0 });
        let l = limit(1.0, 1.0);
        let t0 = Instant::now();
        assert!(matches!(
            fast.take_at("kv", &l, t0),
            Some(Verdict::Admitted { .. })
        ));
        assert_eq!(
            fast.take_at("kv", &l, t0),
            Some(Verdict::Throttled {
                retry_after: Duration::from_millis(100)
            })
        );
        let other = Limit {
            scope: "t".into(),
            ..l.clone()
        };
        assert!(matches!(
            fast.take_at("kv", &other, t0),
            Some(Verdict::Admitted { .. })
        ));
        assert_eq!(fast.report()[0].per_second, 10.0);
        let off = Limiter::new(Throttling::Off);
        assert!(!off.enabled());
        assert_eq!(off.take_at("kv", &l, t0), None);
    }

    #[test]
    fn parsing_and_rounding() {
        assert_eq!(Throttling::parse("off"), Ok(Throttling::Off));
        assert_eq!(
            Throttling::parse("2.5"),
            Ok(Throttling::On { time_factor: 2.5 })
        );
        assert!(Throttling::parse("0").is_err());
        assert!(Throttling::parse("fast").is_err());
        assert_eq!(Rate::per_window(300.0, 10.0).per_second, 30.0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
        assert_eq!(whole_millis(Duration::from_micros(10_100)), 11);
    }
}

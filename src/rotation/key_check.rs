//! The key check before distribution (issue 15): an app whose mapping has a `keyChecks` entry
//! gets its key tried through the API gateway once per run, lazily, before the first target
//! of the app is written. While the gateway refuses the key (the API manager propagates a new
//! key with a delay) it is tried again with a growing wait, bounded by
//! [`MAX_WAIT_SETTING`] and the run's deadline. A failed check writes nothing of the app, and
//! a key this run created is withdrawn from the API manager: it was never distributed.
//!
//! A dry run sends no check; it plans it. The key is sent only to the URL the mapping names;
//! reports and logs show the URL's host and path, never its query, and the key's last four
//! characters at most.

use super::report::{Report, ReportEntry};
use crate::azure::call::Call;
use crate::azure::retry::{self, Idempotency};
use crate::error::{Error, ErrorKind};
use crate::mapping::key_checks::{CheckMethod, KeyCheck, KeyIn};
use crate::mapping::AppsMapping;
use crate::secret::ApiKey;
use crate::settings::{SettingError, Settings};
use crate::toolkit::{KeyGrant, KeySource};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Setting: seconds a key check keeps trying a key the gateway refuses (default
/// [`DEFAULT_MAX_WAIT_SECONDS`]; `0`: one try).
pub const MAX_WAIT_SETTING: &str = "KEY_CHECK_MAX_WAIT_SECONDS";
/// Default of [`MAX_WAIT_SETTING`].
pub const DEFAULT_MAX_WAIT_SECONDS: u64 = 120;
/// The report type of the check's own entries.
pub const REPORT_TYPE: &str = "KEY_CHECK";
/// The code of a failed check, and of every target it kept from being written.
pub const FAILED_CODE: &str = "KeyCheckFailed";
/// Code of the `TOOLKIT` warning of a key this run created and its failed check withdrew.
pub const WITHDRAWN_CODE: &str = "KeyWithdrawn";
/// The longest wait between two tries.
const MAX_DELAY: Duration = Duration::from_secs(15);

/// The key checks of a run: the mapping's `keyChecks`, the client that sends them and how
/// long one may keep trying. Empty (no check at all) by default.
#[derive(Clone, Default)]
pub struct KeyChecks {
    checks: Arc<HashMap<String, KeyCheck>>,
    http: Option<reqwest::Client>,
    max_wait: Duration,
}

impl std::fmt::Debug for KeyChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyChecks")
            .field("apps", &self.checks.keys().collect::<Vec<_>>())
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl KeyChecks {
    /// The checks of `mapping`, sent on `http`, each trying for at most `max_wait`.
    pub fn new(mapping: &AppsMapping, http: reqwest::Client, max_wait: Duration) -> Self {
        Self {
            checks: Arc::new(
                mapping
                    .key_checks()
                    .iter()
                    .map(|c| (c.apim_app_name.clone(), c.clone()))
                    .collect(),
            ),
            http: Some(http),
            max_wait,
        }
    }

    /// [`MAX_WAIT_SETTING`] of `settings` (its default when unset).
    pub fn max_wait(settings: &Settings) -> Result<Duration, SettingError> {
        match settings.get(MAX_WAIT_SETTING) {
            None => Ok(Duration::from_secs(DEFAULT_MAX_WAIT_SECONDS)),
            // The value is not repeated: a secret pasted into the wrong setting must not leak.
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|s| *s <= 3600)
                .map(Duration::from_secs)
                .ok_or_else(|| SettingError {
                    setting: MAX_WAIT_SETTING.to_string(),
                    message: format!(
                        "not a whole number of seconds from 0 to 3600 (default {DEFAULT_MAX_WAIT_SECONDS}; 0 tries once)"
                    ),
                }),
        }
    }

    /// Whether no app has a check.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }
}

/// How one app's check came out.
enum Checked {
    /// The gateway accepted the key.
    Passed { attempts: u32 },
    /// A dry run: the check would be sent.
    Planned,
    /// The key was refused until the bound; nothing of the app is written. `withdrawn`: the
    /// key was this run's and is gone from the API manager again.
    Failed { report: String, withdrawn: bool },
}

/// One run's checks: one cell per app with a check, filled by whichever target of the app
/// is about to be written first; the others wait for it.
pub(super) struct Checks<'a> {
    config: &'a KeyChecks,
    dry_run: bool,
    cells: HashMap<String, tokio::sync::OnceCell<Checked>>,
}

impl<'a> Checks<'a> {
    /// The checks of a run over `apps`.
    pub(super) fn new(config: &'a KeyChecks, apps: &[String], dry_run: bool) -> Self {
        Self {
            config,
            dry_run,
            cells: apps
                .iter()
                .filter(|a| config.checks.contains_key(*a))
                .map(|a| (a.clone(), tokio::sync::OnceCell::new()))
                .collect(),
        }
    }

    /// Whether a target of `app` may be written with `grant`'s key: `Ok` when the app has
    /// no check, or its check passed (or, in a dry run, is planned); otherwise the
    /// [`FAILED_CODE`] error the target is reported with. The check runs once per app, the
    /// first time this is asked.
    pub(super) async fn allow(
        &self,
        call: &Call,
        source: &dyn KeySource,
        app: &str,
        grant: &KeyGrant,
    ) -> Result<(), Error> {
        let (Some(cell), Some(check)) = (self.cells.get(app), self.config.checks.get(app)) else {
            return Ok(());
        };
        let checked = cell
            .get_or_init(|| async {
                if self.dry_run {
                    return Checked::Planned;
                }
                self.run(call, source, check, grant).await
            })
            .await;
        match checked {
            Checked::Failed { .. } => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "Not written: the key check of {app} failed (see its {REPORT_TYPE} entry); it still holds its previous key."
                ),
            )
            .with_code(FAILED_CODE)),
            _ => Ok(()),
        }
    }

    /// Sends the check, and withdraws a key this run created when it fails.
    async fn run(
        &self,
        call: &Call,
        source: &dyn KeySource,
        check: &KeyCheck,
        grant: &KeyGrant,
    ) -> Checked {
        let app = check.apim_app_name.as_str();
        let Some(http) = &self.config.http else {
            return Checked::Failed {
                report: "no HTTP client to send the check with".into(),
                withdrawn: false,
            };
        };
        let tried = try_key(http, call, check, &grant.api_key, self.config.max_wait).await;
        let (attempts, refusal) = match tried {
            Ok(attempts) => {
                tracing::info!(app, key = %grant.api_key, attempts, "the gateway accepted the key");
                return Checked::Passed { attempts };
            }
            Err(failure) => failure,
        };
        let at = check.describe_url();
        let tries = if attempts == 1 {
            "1 try".to_string()
        } else {
            format!("{attempts} tries")
        };
        let mut report = format!(
            "The gateway did not accept key {} at {at} ({tries}): {refusal}. No target of {app} was written.",
            grant.api_key
        );
        let mut withdrawn = false;
        if grant.renewed {
            match source.withdraw(call, app, &grant.api_key).await {
                Ok(()) => {
                    withdrawn = true;
                    report.push_str(&format!(
                    " The new key {} was withdrawn from the API manager (it was never distributed); the previous key stays current.",
                    grant.api_key
                ))
                }
                Err(e) => report.push_str(&format!(
                    " The new key {} could not be withdrawn: {e}",
                    grant.api_key
                )),
            }
        } else {
            report.push_str(&format!(
                " Key {} was not created by this run, so it is not withdrawn (consumers may hold it).",
                grant.api_key
            ));
        }
        tracing::warn!(app, key = %grant.api_key, attempts, "{report}");
        Checked::Failed { report, withdrawn }
    }

    /// Whether `app`'s check failed and withdrew the key this run had created for it.
    pub(super) fn withdrew(&self, app: &str) -> bool {
        matches!(
            self.cells.get(app).and_then(|c| c.get()),
            Some(Checked::Failed {
                withdrawn: true,
                ..
            })
        )
    }

    /// Adds one [`REPORT_TYPE`] entry per app whose check ran (or, in a dry run, would run),
    /// in `apps` order.
    pub(super) fn report(
        &self,
        apps: &[String],
        grants: impl Fn(&str) -> Option<KeyGrant>,
        report: &mut Report,
    ) {
        for app in apps {
            let (Some(checked), Some(check)) = (
                self.cells.get(app).and_then(|c| c.get()),
                self.config.checks.get(app),
            ) else {
                continue;
            };
            let grant = grants(app);
            let at = check.describe_url();
            match checked {
                Checked::Planned => {
                    let what = match &grant {
                        Some(g) if !g.renewed => format!("key {}", g.api_key),
                        _ => "the new key".to_string(),
                    };
                    report.successes.push(ReportEntry::new(
                        REPORT_TYPE,
                        app,
                        &at,
                        format!("Would try {what} at {at} before distributing it."),
                    ));
                }
                Checked::Passed { attempts } => {
                    let entry = ReportEntry::new(
                        REPORT_TYPE,
                        app,
                        &at,
                        format!(
                            "The gateway accepted the key at {at} ({}); it is distributed.",
                            if *attempts == 1 {
                                "first try".to_string()
                            } else {
                                format!("after {attempts} tries")
                            }
                        ),
                    );
                    report.successes.push(match &grant {
                        Some(g) => entry.with_key(&g.api_key),
                        None => entry,
                    });
                }
                Checked::Failed {
                    report: message, ..
                } => {
                    let entry = ReportEntry::new(REPORT_TYPE, app, &at, message.clone())
                        .with_code(FAILED_CODE);
                    report.errors.push(match &grant {
                        Some(g) => entry.with_key(&g.api_key),
                        None => entry,
                    });
                }
            }
        }
    }
}

/// Tries `key` until the gateway answers an expected status: the number of tries, or the
/// tries and what the gateway answered last. Waits between tries grow from the retry
/// policy's base delay; no wait starts once `max_wait` has passed since the first try, nor
/// ends past the run's deadline.
async fn try_key(
    http: &reqwest::Client,
    call: &Call,
    check: &KeyCheck,
    key: &ApiKey,
    max_wait: Duration,
) -> Result<u32, (u32, String)> {
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let refusal = match send(http, call, check, key).await {
            Ok((status, _)) if check.expect_status.contains(&status) => return Ok(attempts),
            Ok((status, code)) => match code {
                Some(code) => format!("status {status} ({code})"),
                None => format!("status {status}"),
            },
            Err(e) if e.kind() == ErrorKind::DeadlineExceeded => {
                return Err((attempts, format!("{e}")))
            }
            Err(e) => e.to_string(),
        };
        let delay = call
            .policy()
            .base_delay
            .saturating_mul(2u32.saturating_pow((attempts - 1).min(16)))
            .min(MAX_DELAY);
        let past_bound = started.elapsed() + delay > max_wait;
        let past_deadline = call.deadline().is_some_and(|d| Instant::now() + delay >= d);
        if past_bound || past_deadline {
            let why = if past_bound {
                format!("{MAX_WAIT_SETTING} ({} s) reached", max_wait.as_secs())
            } else {
                "the run's deadline is near".to_string()
            };
            return Err((attempts, format!("{refusal}; {why}")));
        }
        tracing::info!(app = %check.apim_app_name, attempt = attempts, answer = %refusal, delay_ms = delay.as_millis() as u64, "the gateway does not accept the key yet; trying again");
        tokio::time::sleep(delay).await;
    }
}

/// One try: the status and the gateway's error code, if its body has one.
async fn send(
    http: &reqwest::Client,
    call: &Call,
    check: &KeyCheck,
    key: &ApiKey,
) -> Result<(u16, Option<String>), Error> {
    let method = match check.method {
        CheckMethod::Get => reqwest::Method::GET,
        CheckMethod::Head => reqwest::Method::HEAD,
    };
    let response = retry::send(call, "the API gateway", Idempotency::Idempotent, || {
        let mut url = check.url.clone();
        let request = match &check.key_in {
            KeyIn::Header(name) => {
                let mut value = reqwest::header::HeaderValue::from_str(key.expose())
                    .map_err(|_| Error::config("the key is not a valid header value"));
                if let Ok(v) = &mut value {
                    v.set_sensitive(true);
                }
                value.map(|v| http.request(method.clone(), url).header(name.as_str(), v))
            }
            KeyIn::QueryParameter(name) => {
                url.query_pairs_mut().append_pair(name, key.expose());
                Ok(http.request(method.clone(), url))
            }
        };
        std::future::ready(request)
    })
    .await?;
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    Ok((status, error_code(&body, key)))
}

/// The error code of a gateway's error body: Apigee's `fault.detail.errorcode`, or the common
/// `error.code` / `code` / `error`; never one that carries the key.
fn error_code(body: &[u8], key: &ApiKey) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = [
        v.pointer("/fault/detail/errorcode"),
        v.pointer("/error/code"),
        v.get("code"),
        v.get("error"),
    ]
    .into_iter()
    .flatten()
    .find_map(|c| c.as_str())?;
    let code: String = code.chars().take(120).collect();
    (!code.is_empty() && !code.contains(key.expose())).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_gateway_bodies() {
        let key = ApiKey::new("k3yk3yk3yk3yk3yk3y");
        let apigee = br#"{"fault":{"faultstring":"Invalid ApiKey","detail":{"errorcode":"oauth.v2.InvalidApiKey"}}}"#;
        assert_eq!(
            error_code(apigee, &key).as_deref(),
            Some("oauth.v2.InvalidApiKey")
        );
        assert_eq!(
            error_code(br#"{"error":{"code":"Unauthorized","message":"x"}}"#, &key).as_deref(),
            Some("Unauthorized")
        );
        assert_eq!(
            error_code(br#"{"error":"denied"}"#, &key).as_deref(),
            Some("denied")
        );
        assert_eq!(error_code(b"<html>no</html>", &key), None);
        assert_eq!(error_code(b"", &key), None);
        // A gateway that echoes the key does not get it into the report.
        assert_eq!(
            error_code(br#"{"error":"bad key k3yk3yk3yk3yk3yk3y"}"#, &key),
            None
        );
    }

    #[test]
    fn the_bound_is_a_setting() {
        let settings = |v: Option<&str>| {
            let mut raw = std::collections::BTreeMap::new();
            if let Some(v) = v {
                raw.insert(MAX_WAIT_SETTING.to_string(), v.to_string());
            }
            Settings::from_map(raw)
        };
        assert_eq!(
            KeyChecks::max_wait(&settings(None)).unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            KeyChecks::max_wait(&settings(Some("0"))).unwrap(),
            Duration::ZERO
        );
        assert_eq!(
            KeyChecks::max_wait(&settings(Some("30"))).unwrap(),
            Duration::from_secs(30)
        );
        for bad in ["-1", "ten", "3601", "secret-value-123"] {
            let e = KeyChecks::max_wait(&settings(Some(bad))).unwrap_err();
            assert_eq!(e.setting, MAX_WAIT_SETTING);
            assert!(!e.message.contains(bad), "{e}");
        }
    }
}

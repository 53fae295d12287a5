//! App settings (PRODUCT.md §4): read once from the environment, validated with errors that name
//! the setting and say what is expected.
//!
//! Reading never fails: the handler must start even with bad settings (the host would only say
//! "worker failed to start"), so problems are kept and returned to whoever calls a function.

use crate::azure::cloud::Cloud;
use crate::azure::http::TRUSTED_CA_SETTING;
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::fmt;

/// The mapping setting and its continuations, merged in this order.
pub const MAPPING_SETTINGS: [&str; 3] = [
    "APIKEYROTATIONAPPS",
    "APIKEYROTATIONAPPS2",
    "APIKEYROTATIONAPPS3",
];
/// Sealed company details.
pub const COMPANY_DETAILS: &str = "COMPANYDETAILS";
/// The UUID that unseals [`COMPANY_DETAILS`].
pub const TOOLKIT_UUID: &str = "TOOLKITUUID";
/// URL of a remote ToolkitApp; unset means in-process.
pub const TOOLKIT_APP_URL: &str = "TOOLKIT_APP_URL";
/// Function key sent to [`TOOLKIT_APP_URL`].
pub const TOOLKIT_APP_KEY: &str = "TOOLKIT_APP_KEY";
/// NCRONTAB schedule of RotatorTimer.
pub const SCHEDULE: &str = "API_KEY_ROTATION_SCHEDULE";
/// Default schedule: weekly, Tuesday 06:00 UTC.
pub const DEFAULT_SCHEDULE: &str = "0 0 6 * * 2";
/// Timeout of one outbound request, in seconds.
pub const REQUEST_TIMEOUT: &str = "ROTATION_REQUEST_TIMEOUT_SECONDS";
/// Deadline of a whole run, in seconds.
pub const DEADLINE: &str = "ROTATION_DEADLINE_SECONDS";
/// Requests in flight at most, across the whole run (apps, containers and entries are worked
/// on as far as this allows).
pub const CONCURRENCY: &str = "ROTATION_CONCURRENCY";
/// Requests in flight to one service host at most.
pub const CONCURRENCY_PER_HOST: &str = "ROTATION_CONCURRENCY_PER_HOST";
/// Default of [`REQUEST_TIMEOUT`].
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: u64 = 20;
/// Default of [`DEADLINE`] for the HTTP functions that answer with their result (KeyStatus,
/// KeyRollback: the front end drops an HTTP call at 230 s).
pub const DEFAULT_HTTP_DEADLINE_SECONDS: u64 = 200;
/// Default of [`DEADLINE`] for the timer and the command line.
pub const DEFAULT_DEADLINE_SECONDS: u64 = 540;
/// How long `ApiKeyRotator` waits for its run before it answers `202 Accepted` with a
/// `Location` to poll, in seconds.
pub const HTTP_ANSWER: &str = "ROTATION_HTTP_ANSWER_SECONDS";
/// Default of [`HTTP_ANSWER`]: the old HTTP deadline, well inside the 230 s after which the
/// platform's front end drops an HTTP call whatever the plan.
pub const DEFAULT_HTTP_ANSWER_SECONDS: u64 = 200;
/// Largest [`HTTP_ANSWER`]: an answer must leave the front end's 230 s some margin.
pub const MAX_HTTP_ANSWER_SECONDS: u64 = 220;
/// Default of [`CONCURRENCY`].
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default of [`CONCURRENCY_PER_HOST`].
pub const DEFAULT_CONCURRENCY_PER_HOST: usize = 4;

/// One setting problem: which setting, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The app setting's name.
    pub setting: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// Every app setting the rotator reads. `Debug` names the raw settings but prints none of
/// their values (any of them may be a secret: connection strings, header secrets, the sealed
/// details), nor the mapping's text.
#[derive(Clone)]
pub struct Settings {
    /// All settings as given, for lookups by name (header values, connection strings).
    raw: BTreeMap<String, String>,
    /// The non-empty mapping settings, in merge order: (setting name, JSON text).
    pub mapping_parts: Vec<(String, String)>,
    /// Sealed company details.
    pub company_details: Option<Secret>,
    /// The toolkit UUID.
    pub toolkit_uuid: Option<Secret>,
    /// Remote ToolkitApp URL.
    pub toolkit_app_url: Option<url::Url>,
    /// Remote ToolkitApp function key.
    pub toolkit_app_key: Option<Secret>,
    /// The timer schedule (validated).
    pub schedule: String,
    /// Client ID of a user-assigned managed identity.
    pub azure_client_id: Option<String>,
    /// The selected cloud (public when the selection is invalid; the problem is recorded).
    pub cloud: Cloud,
    /// PEM file with extra CAs to trust.
    pub trusted_ca_file: Option<std::path::PathBuf>,
    /// `WEBSITE_SITE_NAME`, the function app's name when running in Azure.
    pub site_name: Option<String>,
    /// How outbound requests are paced (the retry policy is made from these).
    pub outbound: OutboundLimits,
    /// When runs must end.
    pub deadlines: Deadlines,
    problems: Vec<SettingError>,
}

/// The settings that pace outbound requests: what [`crate::azure::retry::RetryPolicy`] is made
/// from, and all it needs of the settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboundLimits {
    /// Timeout of one outbound request ([`REQUEST_TIMEOUT`]).
    pub request_timeout: std::time::Duration,
    /// Requests in flight at most across a run ([`CONCURRENCY`]).
    pub concurrency: usize,
    /// Requests in flight per service host ([`CONCURRENCY_PER_HOST`]).
    pub concurrency_per_host: usize,
    /// Multiplies the published refill rates the rotator paces itself by
    /// ([`crate::azure::pace::TIME_FACTOR`], 1 but in tests and the benchmark).
    pub pace_time_factor: f64,
}

/// The settings that say when a run (or a ToolkitApp request) must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The run deadline when [`DEADLINE`] is set (else a default per entry point, see
    /// [`Deadlines::for_run`]).
    pub configured: Option<std::time::Duration>,
    /// How long an HTTP-started run is waited for before the answer is `202 Accepted`
    /// ([`HTTP_ANSWER`]).
    pub http_answer: std::time::Duration,
}

impl Deadlines {
    /// The run deadline: [`DEADLINE`] when set, else 200 s for the HTTP functions that answer
    /// with their result (`http_triggered`) and 540 s for the timer, the command line and
    /// ApiKeyRotator (which answers `202` past [`Deadlines::http_answer`]).
    pub fn for_run(self, http_triggered: bool) -> std::time::Duration {
        self.configured
            .unwrap_or(std::time::Duration::from_secs(if http_triggered {
                DEFAULT_HTTP_DEADLINE_SECONDS
            } else {
                DEFAULT_DEADLINE_SECONDS
            }))
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.raw.keys().map(String::as_str).collect();
        let parts: Vec<String> = self
            .mapping_parts
            .iter()
            .map(|(name, text)| format!("{name} ({} bytes)", text.len()))
            .collect();
        f.debug_struct("Settings")
            .field("raw", &names)
            .field("mapping_parts", &parts)
            .field("company_details", &self.company_details)
            .field("toolkit_uuid", &self.toolkit_uuid)
            .field(
                "toolkit_app_url",
                &self.toolkit_app_url.as_ref().map(url::Url::as_str),
            )
            .field("toolkit_app_key", &self.toolkit_app_key)
            .field("schedule", &self.schedule)
            .field("azure_client_id", &self.azure_client_id)
            .field("cloud", &self.cloud.name)
            .field("trusted_ca_file", &self.trusted_ca_file)
            .field("site_name", &self.site_name)
            .field("outbound", &self.outbound)
            .field("deadlines", &self.deadlines)
            .field("problems", &self.problems.len())
            .finish()
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_map(std::env::vars().collect())
    }

    /// Reads settings from a map and validates the format of each one present.
    pub fn from_map(raw: BTreeMap<String, String>) -> Self {
        let mut problems = Vec::new();
        let get = |k: &str| {
            raw.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let mapping_parts = MAPPING_SETTINGS
            .iter()
            .filter_map(|name| get(name).map(|v| (name.to_string(), v)))
            .collect();

        let toolkit_app_url = get(TOOLKIT_APP_URL).and_then(|v| match url::Url::parse(&v) {
            Ok(u) if u.scheme() == "https" || is_loopback(&u) => Some(u),
            Ok(u) => {
                problems.push(problem(
                    TOOLKIT_APP_URL,
                    format!("expected an https URL, got {}://", u.scheme()),
                ));
                None
            }
            Err(e) => {
                problems.push(problem(
                    TOOLKIT_APP_URL,
                    format!("not a URL ({e}); expected the https URL of a ToolkitApp"),
                ));
                None
            }
        });

        let schedule = get(SCHEDULE).unwrap_or_else(|| DEFAULT_SCHEDULE.to_string());
        if let Err(msg) = validate_schedule(&schedule) {
            problems.push(problem(SCHEDULE, msg));
        }

        if let Some(uuid) = get(TOOLKIT_UUID) {
            if uuid::Uuid::parse_str(&uuid).is_err() {
                problems.push(problem(
                    TOOLKIT_UUID,
                    "not a UUID; expected the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
                ));
            }
        }

        let cloud = match Cloud::from_settings(&raw) {
            Ok(c) => c,
            Err(e) => {
                let msg = e.message().to_string();
                let (setting, rest) = msg
                    .split_once(": ")
                    .unwrap_or((crate::azure::cloud::CLOUD_SETTING, &msg));
                problems.push(problem(setting, rest));
                Cloud::public()
            }
        };

        let trusted_ca_file = get(TRUSTED_CA_SETTING).map(std::path::PathBuf::from);
        if let Some(path) = &trusted_ca_file {
            if !path.is_file() {
                problems.push(problem(
                    TRUSTED_CA_SETTING,
                    format!("no such file: {}", path.display()),
                ));
            }
        }

        let mut number = |name: &str, default: u64, max: u64| match get(name) {
            None => default,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => {
                    // The value is not repeated: a secret pasted into the wrong setting must
                    // not reach a log.
                    problems.push(problem(
                        name,
                        format!("not a whole number from 1 to {max} (default {default})"),
                    ));
                    default
                }
            },
        };
        let request_timeout = number(REQUEST_TIMEOUT, DEFAULT_REQUEST_TIMEOUT_SECONDS, 600);
        let deadline_setting =
            get(DEADLINE).map(|_| number(DEADLINE, DEFAULT_DEADLINE_SECONDS, 86_400));
        let http_answer = number(
            HTTP_ANSWER,
            DEFAULT_HTTP_ANSWER_SECONDS,
            MAX_HTTP_ANSWER_SECONDS,
        );
        let concurrency = number(CONCURRENCY, DEFAULT_CONCURRENCY as u64, 1024) as usize;
        let concurrency_per_host = number(
            CONCURRENCY_PER_HOST,
            DEFAULT_CONCURRENCY_PER_HOST as u64,
            1024,
        ) as usize;
        let pace_time_factor = match get(crate::azure::pace::TIME_FACTOR) {
            None => 1.0,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(f) if f.is_finite() && f > 0.0 && f <= 10_000.0 => f,
                _ => {
                    problems.push(problem(
                        crate::azure::pace::TIME_FACTOR,
                        "not a number above 0 and at most 10000 (default 1)".to_string(),
                    ));
                    1.0
                }
            },
        };

        Self {
            outbound: OutboundLimits {
                request_timeout: std::time::Duration::from_secs(request_timeout),
                concurrency,
                concurrency_per_host,
                pace_time_factor,
            },
            deadlines: Deadlines {
                configured: deadline_setting.map(std::time::Duration::from_secs),
                http_answer: std::time::Duration::from_secs(http_answer),
            },
            mapping_parts,
            company_details: get(COMPANY_DETAILS).map(Secret::new),
            toolkit_uuid: get(TOOLKIT_UUID).map(Secret::new),
            toolkit_app_url,
            toolkit_app_key: get(TOOLKIT_APP_KEY).map(Secret::new),
            schedule,
            azure_client_id: get("AZURE_CLIENT_ID"),
            cloud,
            trusted_ca_file,
            site_name: get("WEBSITE_SITE_NAME"),
            problems,
            raw,
        }
    }

    /// Format problems of the settings that are present (not of missing ones; see the
    /// `require_*` checks of each function).
    pub fn problems(&self) -> &[SettingError] {
        &self.problems
    }

    /// A setting's value by name (trimmed; `None` when unset or empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Problems that stop a rotation run: format problems plus a missing mapping, and the
    /// toolkit settings when the toolkit runs in-process.
    pub fn check_for_rotation(&self) -> Vec<SettingError> {
        let mut out = self.problems.clone();
        if self.mapping_parts.is_empty() {
            out.push(problem(
                MAPPING_SETTINGS[0],
                "missing; expected the apps mapping as JSON (see examples/sampleAppsMapReq.json)",
            ));
        }
        if self.toolkit_app_url.is_none() && self.get(TOOLKIT_APP_URL).is_none() {
            out.extend(self.check_for_toolkit());
        }
        out
    }

    /// Problems that stop the in-process toolkit: missing sealed details or UUID.
    pub fn check_for_toolkit(&self) -> Vec<SettingError> {
        let mut out: Vec<SettingError> = self
            .problems
            .iter()
            .filter(|p| p.setting == TOOLKIT_UUID || p.setting == TRUSTED_CA_SETTING)
            .cloned()
            .collect();
        if self.company_details.is_none() {
            out.push(problem(
                COMPANY_DETAILS,
                "missing; expected the sealed company details printed by `apikey-rotator seal`",
            ));
        }
        if self.toolkit_uuid.is_none() {
            out.push(problem(
                TOOLKIT_UUID,
                "missing; expected the toolkit UUID that sealed COMPANYDETAILS",
            ));
        }
        out
    }
}

fn problem(setting: &str, message: impl Into<String>) -> SettingError {
    SettingError {
        setting: setting.to_string(),
        message: message.into(),
    }
}

/// Whether a URL points at a loopback address (allowed over plain http).
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Checks an NCRONTAB expression: six fields (`second minute hour day month day-of-week`, the
/// form Azure Functions documents) or five (minutes first), `%NAME%` not allowed here. The
/// message never repeats the expression (a secret pasted into the wrong setting must not
/// reach a log).
pub fn validate_schedule(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 && fields != 5 {
        return Err(format!(
            "has {fields} fields; expected an NCRONTAB expression with 6 fields \
             (second minute hour day month day-of-week), e.g. \"{DEFAULT_SCHEDULE}\""
        ));
    }
    let mut parser = croner::Cron::new(expr);
    if fields == 6 {
        parser.with_seconds_required();
    }
    parser
        .parse()
        .map(|_| ())
        .map_err(|_| format!("not a valid NCRONTAB expression (each field within its range: second 0-59, minute 0-59, hour 0-23, day 1-31, month 1-12, day-of-week 0-6); expected e.g. \"{DEFAULT_SCHEDULE}\""))
}

#[cfg(test)]
mod tests {
    /// `Debug` prints names, never values, whatever setting holds the secret.
    #[test]
    fn debug_prints_no_value() {
        let marker = "s3cr3t-marker-value";
        let settings = Settings::from_map(
            [
                ("AZURE_CLIENT_SECRET", marker),
                ("COMPANYDETAILS", marker),
                ("TOOLKITUUID", marker),
                ("TOOLKIT_APP_KEY", marker),
                ("APPAPI_SECRET_X", marker),
                ("APIKEYROTATIONAPPS", marker),
                ("AzureWebJobsStorage", marker),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let printed = format!("{settings:?} {settings:#?}");
        assert!(!printed.contains(marker), "{printed}");
        assert!(printed.contains("APPAPI_SECRET_X"), "{printed}");
    }

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn mapping_parts_keep_merge_order_and_skip_empty() {
        let s = settings(&[
            ("APIKEYROTATIONAPPS3", "{\"c\":1}"),
            ("APIKEYROTATIONAPPS", "{}"),
            ("APIKEYROTATIONAPPS2", " "),
        ]);
        let names: Vec<_> = s.mapping_parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["APIKEYROTATIONAPPS", "APIKEYROTATIONAPPS3"]);
    }

    #[test]
    fn missing_settings_are_named() {
        let s = settings(&[]);
        let problems: Vec<String> = s
            .check_for_rotation()
            .iter()
            .map(|p| p.setting.clone())
            .collect();
        assert_eq!(
            problems,
            ["APIKEYROTATIONAPPS", "COMPANYDETAILS", "TOOLKITUUID"]
        );
        assert_eq!(s.schedule, DEFAULT_SCHEDULE);
    }

    #[test]
    fn remote_toolkit_needs_no_sealed_details() {
        let s = settings(&[
            ("APIKEYROTATIONAPPS", "{}"),
            ("TOOLKIT_APP_URL", "https://toolkit.example/api/ToolkitApp"),
        ]);
        assert!(
            s.check_for_rotation().is_empty(),
            "{:?}",
            s.check_for_rotation()
        );
    }

    #[test]
    fn malformed_values_are_reported_with_expectation() {
        let s = settings(&[
            ("API_KEY_ROTATION_SCHEDULE", "every tuesday"),
            ("TOOLKIT_APP_URL", "http://toolkit.example/api"),
            ("TOOLKITUUID", "nope"),
            ("AZURE_CLOUD", "mars"),
        ]);
        let text: Vec<String> = s.problems().iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("API_KEY_ROTATION_SCHEDULE: ") && t.contains("6 fields")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("TOOLKIT_APP_URL: expected an https URL")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("TOOLKITUUID: not a UUID")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("AZURE_CLOUD: unknown cloud")),
            "{text:?}"
        );
    }

    #[test]
    fn limits_have_defaults_and_bad_values_name_the_setting() {
        let s = settings(&[]);
        assert_eq!(s.outbound.request_timeout.as_secs(), 20);
        assert_eq!(s.deadlines.for_run(true).as_secs(), 200);
        assert_eq!(s.deadlines.for_run(false).as_secs(), 540);
        assert_eq!(s.deadlines.http_answer.as_secs(), 200);
        assert_eq!(
            (s.outbound.concurrency, s.outbound.concurrency_per_host),
            (16, 4)
        );
        assert_eq!(
            settings(&[("ROTATION_HTTP_ANSWER_SECONDS", "5")])
                .deadlines
                .http_answer
                .as_secs(),
            5
        );

        let s = settings(&[
            ("ROTATION_DEADLINE_SECONDS", "30"),
            ("ROTATION_CONCURRENCY", "2"),
        ]);
        assert_eq!(
            (
                s.deadlines.for_run(true).as_secs(),
                s.deadlines.for_run(false).as_secs()
            ),
            (30, 30)
        );
        assert_eq!(s.outbound.concurrency, 2);
        assert!(s.problems().is_empty(), "{:?}", s.problems());

        let s = settings(&[
            ("ROTATION_REQUEST_TIMEOUT_SECONDS", "soon"),
            ("ROTATION_DEADLINE_SECONDS", "0"),
            ("ROTATION_CONCURRENCY", "-1"),
            ("ROTATION_CONCURRENCY_PER_HOST", "99999"),
            // Past the front end's 230 s the answer would never arrive.
            ("ROTATION_HTTP_ANSWER_SECONDS", "230"),
        ]);
        let named: Vec<&str> = s.problems().iter().map(|p| p.setting.as_str()).collect();
        assert_eq!(
            named,
            [
                "ROTATION_REQUEST_TIMEOUT_SECONDS",
                "ROTATION_DEADLINE_SECONDS",
                "ROTATION_HTTP_ANSWER_SECONDS",
                "ROTATION_CONCURRENCY",
                "ROTATION_CONCURRENCY_PER_HOST"
            ]
        );
        assert!(
            s.problems()[0].message.contains("whole number"),
            "{:?}",
            s.problems()
        );
    }

    /// Issue 13: a value in the wrong setting (a secret, say) is never repeated.
    #[test]
    fn problems_never_repeat_the_value() {
        let marker = "zq7marker";
        let s = settings(&[
            ("API_KEY_ROTATION_SCHEDULE", marker),
            ("ROTATION_CONCURRENCY", marker),
            ("ROTATION_REQUEST_TIMEOUT_SECONDS", marker),
            ("TOOLKITUUID", marker),
            ("TOOLKIT_APP_URL", marker),
        ]);
        assert_eq!(s.problems().len(), 5, "{:?}", s.problems());
        let six = settings(&[("API_KEY_ROTATION_SCHEDULE", "zq7marker * * * * *")]);
        for p in s.problems().iter().chain(six.problems()) {
            assert!(!p.to_string().contains(marker), "{p}");
        }
        assert_eq!(six.problems().len(), 1);
    }

    #[test]
    fn schedules() {
        assert!(validate_schedule("0 0 6 * * 2").is_ok());
        assert!(validate_schedule("0 */5 * * * *").is_ok());
        assert!(validate_schedule("0 6 * * 2").is_ok());
        assert!(validate_schedule("0 0 25 * * 2").is_err());
        assert!(validate_schedule("%API_KEY_ROTATION_SCHEDULE%").is_err());
    }

    #[test]
    fn loopback_http_toolkit_is_allowed() {
        let s = settings(&[("TOOLKIT_APP_URL", "http://127.0.0.1:7071/api/ToolkitApp")]);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
    }
}

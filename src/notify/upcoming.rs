//! The two events that need more than the report: `renewal.upcoming` (an app's current key
//! falls due for renewal within [`UPCOMING_DAYS`] days, sent once per key) and
//! `target.expiring` (after a run, a target still holds a key other than the current one that
//! expires within the same number of days).
//!
//! Both come from one read of the app's keys ([`KeySource::notice_keys`]), made only for the
//! apps that need it and only when a channel subscribes to one of the two events: the apps the
//! run did not renew (for `renewal.upcoming`), and the apps with a target the run read holding
//! another key and could not bring to the current one (for `target.expiring`; what each target
//! held comes from the run itself, [`Seen`], not from a second read of the targets).
//!
//! **Once per key**: the notice's delivery is kept on the key in the API manager
//! ([`crate::toolkit::KeyMarks::noticed_at`]), written once at least one channel accepted it,
//! so a failed delivery is sent again by the next run, and two instances (or a timer run and an
//! HTTP run) see the same mark. The event's id is the same for the same key in every run, so a
//! webhook receiver deduplicates a notice sent twice (delivered, then the mark failed).
//!
//! **`target.expiring` is sent by every run that sees it** (one event per app, every such
//! target in it): it is a reminder until the target is fixed, and it stops by itself once the
//! key has expired (then `run.failed` keeps naming the target). With a weekly schedule that is
//! a weekly reminder, with a daily one at most [`UPCOMING_DAYS`] reminders.
//!
//! The decisions ([`upcoming_of`], [`expiring_of`]) are pure and use the status step's
//! classification ([`status::renewal`], [`status::target_state`]).

use super::{EventType, Notice};
use crate::azure::call::Call;
use crate::rfc3339::{self, Fraction};
use crate::rotation::report::{Report, ReportEntry};
use crate::rotation::status::{self, TargetState};
use crate::secret::{sha256_hex, ApiKey};
use crate::settings::{SettingError, Settings};
use crate::targets::{Stored, TargetType};
use crate::toolkit::{fingerprint, policy, KeySource, NoticeKeys};
use serde_json::{json, Map};
use std::collections::BTreeSet;
use std::sync::Mutex;
use time::OffsetDateTime;

/// Setting: how many days before a key's renewal is due its `renewal.upcoming` notice goes
/// out, and how close to its expiry a key still held by a target makes `target.expiring`
/// (a whole number from 1 to 365; default [`DEFAULT_UPCOMING_DAYS`]).
pub const UPCOMING_DAYS: &str = "NOTIFY_UPCOMING_DAYS";

/// [`UPCOMING_DAYS`] when it is not set.
pub const DEFAULT_UPCOMING_DAYS: u32 = 7;

/// [`UPCOMING_DAYS`] as the settings give it, or its problem.
pub fn upcoming_days(settings: &Settings) -> Result<u32, SettingError> {
    parse_days(settings.get(UPCOMING_DAYS))
}

fn parse_days(value: Option<&str>) -> Result<u32, SettingError> {
    match value.map(str::trim) {
        None | Some("") => Ok(DEFAULT_UPCOMING_DAYS),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=365).contains(d))
            .ok_or_else(|| SettingError {
                setting: UPCOMING_DAYS.to_string(),
                message: format!(
                    "expected a whole number of days from 1 to 365 (default {DEFAULT_UPCOMING_DAYS}), got \"{v}\""
                ),
            }),
    }
}

/// What the run saw that the report does not carry: each app's current key's expiry, and what
/// the run read in targets that did not hold their app's current key (the app, the target's
/// report type and name, and the SHA-256 of what it held, never the key itself). Filled by the
/// engine when a run is asked to ([`crate::rotation::RunOptions::seen`]).
#[derive(Debug, Default)]
pub struct Seen {
    reads: Mutex<Vec<SeenRead>>,
    /// Each app's current key's expiry (inner `None`: never), as the run got it.
    grants: Mutex<Vec<(String, Option<OffsetDateTime>)>>,
}

/// A [`Seen`] for a run when some channel wants `renewal.upcoming` or `target.expiring`
/// (the engine notes nothing otherwise).
pub fn watch(channels: &[super::config::Channel]) -> Option<std::sync::Arc<Seen>> {
    channels
        .iter()
        .any(|c| {
            c.events.contains(&EventType::TargetExpiring)
                || c.events.contains(&EventType::RenewalUpcoming)
        })
        .then(Default::default)
}

/// One target read holding something other than the current key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRead {
    /// The API-manager app.
    pub app: String,
    /// The target's report type.
    pub kind: String,
    /// The target as the report names it.
    pub target: String,
    /// The SHA-256 (hex) of the value it held.
    pub sha256: String,
}

impl Seen {
    /// Notes that `target` of `app` was read holding `stored`, unless that is `current` (or
    /// nothing, or a reference: its secret is noted instead).
    pub fn note(&self, app: &str, kind: &str, target: &str, stored: &Stored, current: &ApiKey) {
        let sha256 = match stored {
            _ if stored.holds(current) => return,
            Stored::Value(v) => v.sha256_hex(),
            Stored::Fingerprint(f) => f.to_ascii_lowercase(),
            Stored::Missing | Stored::KeyVaultReference(_) => return,
        };
        self.reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(SeenRead {
                app: app.to_string(),
                kind: kind.to_string(),
                target: target.to_string(),
                sha256,
            });
    }

    /// Notes the expiry of `app`'s current key after the run (`None`: it never expires).
    pub fn grant(&self, app: &str, expires_at: Option<OffsetDateTime>) {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((app.to_string(), expires_at));
    }

    /// The expiry of `app`'s current key as noted (`None`: not noted).
    fn expiry_of(&self, app: &str) -> Option<Option<OffsetDateTime>> {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(a, _)| a == app)
            .map(|(_, e)| *e)
    }

    /// What was noted, in the order it was.
    pub fn reads(&self) -> Vec<SeenRead> {
        self.reads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A `renewal.upcoming` notice and the key its mark goes on once it is delivered.
#[derive(Debug, Clone)]
pub struct Upcoming {
    /// The event.
    pub notice: Notice,
    /// The key it is about (to mark it).
    pub key: ApiKey,
}

/// Whole days from `now` to `t`, as status counts them.
fn days(t: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (t - now).whole_days()
}

fn text(t: OffsetDateTime) -> String {
    rfc3339::format(t, Fraction::Millis)
}

/// The `renewal.upcoming` notice of `app` at `now`, if its current key (as the policy decides
/// it) falls due for renewal within `within_days` days, is not due yet (then the run renews
/// it), and has no notice mark. `run_id` and `time` as the report gives them.
pub fn upcoming_of(
    app: &str,
    keys: &NoticeKeys,
    now: OffsetDateTime,
    within_days: u32,
    run_id: &str,
    time: &str,
) -> Option<Upcoming> {
    let current = policy::current_key(&keys.list.keys, now)?;
    let (due_at, due_now) = status::renewal(current, &keys.list.keys, &keys.list.policy, now);
    let due_at = due_at?;
    if due_now || due_at - now > time::Duration::days(within_days.into()) {
        return None;
    }
    let print = fingerprint(&current.key);
    if keys.noticed.iter().any(|(f, _)| *f == print) {
        return None;
    }
    let shown = current.key.redacted();
    let left = days(due_at, now);
    let expires = current.expires_at.map(|e| {
        format!(
            "; it expires on {} ({} days from now)",
            e.date(),
            days(e, now)
        )
    });
    let summary = format!(
        "Key {shown} of {app} is due for renewal on {} (in {}){}.",
        due_at.date(),
        crate::rotation::report::plural(left.max(0) as usize, "day"),
        expires.unwrap_or_default()
    );
    let mut d = Map::new();
    d.insert("key".into(), json!(shown));
    d.insert("renewalDueAt".into(), json!(text(due_at)));
    d.insert("expiresAt".into(), json!(current.expires_at.map(text)));
    d.insert("daysLeft".into(), json!(left));
    Some(Upcoming {
        notice: Notice {
            // The same key's notice has the same id in every run: a receiver drops a repeat.
            id: uuid_like(&format!(
                "{}\n{app}\n{print}",
                EventType::RenewalUpcoming.as_str()
            )),
            kind: EventType::RenewalUpcoming,
            time: time.to_string(),
            run_id: run_id.to_string(),
            app: app.to_string(),
            summary,
            details: d,
        },
        key: current.key.clone(),
    })
}

/// The `target.expiring` event of `app` at `now`, if a target of `reads` (what the run read
/// in targets it then failed, `failed`: `(kind, target, code)`) holds a key of the app other
/// than its current one that expires within `within_days` days and has not expired yet.
pub fn expiring_of(
    app: &str,
    keys: &NoticeKeys,
    reads: &[SeenRead],
    failed: &[(String, String, String)],
    now: OffsetDateTime,
    within_days: u32,
) -> Option<(String, Map<String, serde_json::Value>)> {
    let list = &keys.list.keys;
    let current = policy::current_key(list, now);
    let mut targets = Vec::new();
    let mut lines = Vec::new();
    for r in reads.iter().filter(|r| r.app == app) {
        let Some((_, _, code)) = failed
            .iter()
            .find(|(k, t, _)| *k == r.kind && *t == r.target)
        else {
            continue;
        };
        let (state, key) =
            status::target_state(&Stored::Fingerprint(r.sha256.clone()), list, current, now);
        let Some(key) = key else { continue };
        let Some(expires) = key.expires_at else {
            continue;
        };
        let soon = expires > now && expires - now <= time::Duration::days(within_days.into());
        if state == TargetState::Current || !soon {
            continue;
        }
        let label = format!("{} {}", r.kind, r.target);
        lines.push(format!(
            "{label} holds {}, which expires on {} ({})",
            key.key.redacted(),
            expires.date(),
            code
        ));
        targets.push(json!({
            "target": label,
            "key": key.key.redacted(),
            "state": state.as_str(),
            "expiresAt": text(expires),
            "daysLeft": days(expires, now),
            "code": code,
        }));
    }
    if targets.is_empty() {
        return None;
    }
    let n = targets.len();
    let summary = format!(
        "{} of {app} still {} a key that expires within {}: {}.",
        crate::rotation::report::plural(n, "target"),
        if n == 1 { "holds" } else { "hold" },
        crate::rotation::report::plural(within_days as usize, "day"),
        lines.join("; ")
    );
    let mut d = Map::new();
    d.insert("targets".into(), serde_json::Value::Array(targets));
    Some((summary, d))
}

/// A UUID's layout over the SHA-256 of `seed`, as the other events' ids.
fn uuid_like(seed: &str) -> String {
    let h = sha256_hex(seed.as_bytes());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What [`gather`] found: the events, the notices whose keys are marked once delivered, and
/// the warnings (an app whose keys could not be read).
#[derive(Debug, Default)]
pub struct Gathered {
    /// `target.expiring` events.
    pub events: Vec<Notice>,
    /// `renewal.upcoming` notices.
    pub upcoming: Vec<Upcoming>,
    /// `NOTIFY` warnings.
    pub warnings: Vec<ReportEntry>,
}

/// The apps of the report (every target entry names its app), in report order.
fn apps_of(report: &Report) -> Vec<String> {
    let mut seen = BTreeSet::new();
    report
        .successes
        .iter()
        .chain(&report.unchanged)
        .chain(&report.errors)
        .filter(|e| TargetType::of_report(&e.kind).is_some())
        .filter(|e| seen.insert(e.app_name.clone()))
        .map(|e| e.app_name.clone())
        .collect()
}

/// The two events of a finished `report`, reading the keys of the apps that need it through
/// `keys` (one [`KeySource::notice_keys`] each, at most `call`'s concurrency at once): for
/// `renewal.upcoming` the apps the run did not renew whose key may be due within the days
/// (from `seen`'s expiries and [`KeySource::renewal_policy`]), for `target.expiring` the apps
/// with a failed target `seen` read. `upcoming` / `expiring`: whether some channel wants each.
pub async fn gather(
    call: &Call,
    keys: &dyn KeySource,
    report: &Report,
    seen: &Seen,
    (upcoming, expiring): (bool, bool),
    within_days: u32,
) -> Gathered {
    let reads = seen.reads();
    let seen_reads = &reads;
    let within = time::Duration::days(within_days.into());
    let started = OffsetDateTime::now_utc();
    // Without a read, from the expiry the run got and the policy's window (a pin only makes
    // the window shorter, the due date later): an app whose key cannot be due within the days
    // is not read.
    let could_be_due = |app: &str| match (keys.renewal_policy(), seen.expiry_of(app)) {
        (Some(_), Some(None)) => false,
        (Some(p), Some(Some(exp))) => exp - p.renew_window() - started <= within,
        _ => true,
    };
    let toolkit_apps: BTreeSet<&str> = report
        .successes
        .iter()
        .chain(&report.errors)
        .filter(|e| e.kind == "TOOLKIT")
        .map(|e| e.app_name.as_str())
        .collect();
    let failed: Vec<(String, String, String)> = report
        .errors
        .iter()
        .filter(|e| TargetType::of_report(&e.kind).is_some())
        .map(|e| {
            (
                e.kind.clone(),
                e.target.clone(),
                e.code.clone().unwrap_or_default(),
            )
        })
        .collect();
    let wants = |app: &str| {
        let up = upcoming && !toolkit_apps.contains(app) && could_be_due(app);
        let exp = expiring
            && seen_reads.iter().any(|r| {
                r.app == app
                    && failed
                        .iter()
                        .any(|(k, t, _)| *k == r.kind && *t == r.target)
            });
        (up, exp)
    };
    let apps: Vec<(String, (bool, bool))> = apps_of(report)
        .into_iter()
        .map(|a| {
            let w = wants(&a);
            (a, w)
        })
        .filter(|(_, (u, e))| *u || *e)
        .collect();
    let lists = crate::fan_out::bounded(
        call.concurrency(),
        apps.iter().map(|(app, _)| keys.notice_keys(call, app)),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let mut out = Gathered::default();
    for ((app, (up, exp)), list) in apps.iter().zip(lists) {
        let list = match list {
            Ok(l) => l,
            Err(e) => {
                out.warnings.push(
                    ReportEntry::new(
                        super::REPORT_TYPE,
                        app,
                        "",
                        format!(
                            "Could not check {app} for upcoming renewals and expiring keys: {e}"
                        ),
                    )
                    .with_code(e.code()),
                );
                continue;
            }
        };
        if *up {
            out.upcoming.extend(upcoming_of(
                app,
                &list,
                now,
                within_days,
                &report.run_id,
                &report.timestamp,
            ));
        }
        if *exp {
            if let Some((summary, details)) =
                expiring_of(app, &list, seen_reads, &failed, now, within_days)
            {
                out.events.push(Notice {
                    id: uuid_like(&format!(
                        "{}\n{}\n{app}",
                        report.run_id,
                        EventType::TargetExpiring.as_str()
                    )),
                    kind: EventType::TargetExpiring,
                    time: report.timestamp.clone(),
                    run_id: report.run_id.clone(),
                    app: app.clone(),
                    summary,
                    details,
                });
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::toolkit::{
        AppKeyList, AssociationStatus, IssuedKey, ProductAssociation, RenewalPolicy,
    };
    use time::macros::datetime;
    use time::Duration as Days;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn key(k: &str, issued_days_ago: i64, expires_in_days: i64) -> IssuedKey {
        IssuedKey {
            key: ApiKey::new(k),
            issued_at: Some(NOW - Days::days(issued_days_ago)),
            expires_at: Some(NOW + Days::days(expires_in_days)),
            approved: true,
            api_products: vec![ProductAssociation {
                product: "p1".into(),
                status: AssociationStatus::Approved,
            }],
            unfinished: false,
            made_by_rotator: false,
            revoked: false,
            replaces: None,
            pinned_at: None,
            withdrawn_at: None,
        }
    }

    /// An app whose current key expires in `current_days` (default policy: due 45 days before),
    /// with a previous key expiring in 5 days.
    fn keys(current_days: i64) -> NoticeKeys {
        NoticeKeys {
            list: AppKeyList {
                app_name: "A".into(),
                keys: vec![
                    key("PREVIOUSPREVIOUSPREVIOUS0001", 85, 5),
                    key("CURRENTCURRENTCURRENTCUR0002", 40, current_days),
                ],
                policy: RenewalPolicy::default(),
            },
            noticed: Vec::new(),
        }
    }

    fn up(keys: &NoticeKeys, within: u32) -> Option<Upcoming> {
        upcoming_of("A", keys, NOW, within, "run-1", "2026-12-01T12:00:00.000Z")
    }

    #[test]
    fn a_key_due_within_the_days_gets_one_notice() {
        // Due in 50 - 45 = 5 days.
        let u = up(&keys(50), 7).expect("due in 5 days");
        assert_eq!(u.notice.kind, EventType::RenewalUpcoming);
        assert_eq!(u.notice.details["key"], "****0002");
        assert_eq!(u.notice.details["daysLeft"], 5);
        assert_eq!(u.notice.details["renewalDueAt"], "2026-12-06T12:00:00.000Z");
        assert_eq!(u.notice.details["expiresAt"], "2027-01-20T12:00:00.000Z");
        assert_eq!(
            u.notice.summary,
            "Key ****0002 of A is due for renewal on 2026-12-06 (in 5 days); it expires on 2027-01-20 (50 days from now)."
        );
        assert_eq!(u.key.expose(), "CURRENTCURRENTCURRENTCUR0002");
        // The same key, another run: the same id.
        let again = upcoming_of("A", &keys(50), NOW, 7, "run-2", "t").unwrap();
        assert_eq!(again.notice.id, u.notice.id);
        // Exactly at the edge.
        assert!(up(&keys(52), 7).is_some());
        // Too far, or due already (the run renews it), or never expiring: none.
        assert!(up(&keys(53), 7).is_none());
        assert!(up(&keys(45), 7).is_none());
        let mut never = keys(50);
        never.list.keys[1].expires_at = None;
        assert!(up(&never, 7).is_none());
    }

    #[test]
    fn a_noticed_key_gets_none_and_another_key_does() {
        let mut k = keys(50);
        k.noticed = vec![(fingerprint(&k.list.keys[1].key), NOW - Days::days(1))];
        assert!(up(&k, 7).is_none());
        // The mark of the previous key does not count for the current one.
        k.noticed = vec![(fingerprint(&k.list.keys[0].key), NOW - Days::days(1))];
        assert!(up(&k, 7).is_some());
    }

    fn read(target: &str, k: &str) -> SeenRead {
        SeenRead {
            app: "A".into(),
            kind: "KEY_VAULT".into(),
            target: target.into(),
            sha256: ApiKey::new(k).sha256_hex(),
        }
    }

    #[test]
    fn a_failed_target_holding_an_expiring_key_is_named() {
        let k = keys(80);
        let reads = vec![
            read("kv/old", "PREVIOUSPREVIOUSPREVIOUS0001"),
            read("kv/written", "PREVIOUSPREVIOUSPREVIOUS0001"),
            read("kv/random", "not-a-key-of-the-app"),
        ];
        let failed = vec![
            (
                "KEY_VAULT".to_string(),
                "kv/old".to_string(),
                "Forbidden".to_string(),
            ),
            (
                "KEY_VAULT".to_string(),
                "kv/random".to_string(),
                "Forbidden".to_string(),
            ),
        ];
        let (summary, d) = expiring_of("A", &k, &reads, &failed, NOW, 7).unwrap();
        assert_eq!(
            d["targets"],
            json!([{
                "target": "KEY_VAULT kv/old",
                "key": "****0001",
                "state": "previous",
                "expiresAt": "2026-12-06T12:00:00.000Z",
                "daysLeft": 5,
                "code": "Forbidden",
            }])
        );
        assert_eq!(
            summary,
            "1 target of A still holds a key that expires within 7 days: KEY_VAULT kv/old holds ****0001, which expires on 2026-12-06 (Forbidden)."
        );
        // Not within the days, or a target that was written: nothing.
        assert!(expiring_of("A", &k, &reads, &failed, NOW, 4).is_none());
        assert!(expiring_of("A", &k, &reads, &failed[1..], NOW, 7).is_none());
        // An expired key is no longer "expiring": run.failed names the target.
        assert!(expiring_of("A", &k, &reads, &failed, NOW + Days::days(6), 30).is_none());
    }

    /// A `renewal.upcoming` and a `target.expiring` event, for the payload tests of the
    /// module above.
    pub(crate) fn sample_notices() -> Vec<Notice> {
        let k = keys(50);
        let mut out = vec![up(&k, 7).unwrap().notice];
        let reads = vec![read("kv/old", "PREVIOUSPREVIOUSPREVIOUS0001")];
        let failed = vec![(
            "KEY_VAULT".to_string(),
            "kv/old".to_string(),
            "Forbidden".to_string(),
        )];
        let (summary, details) = expiring_of("A", &k, &reads, &failed, NOW, 7).unwrap();
        out.push(Notice {
            id: uuid_like("x"),
            kind: EventType::TargetExpiring,
            time: "2026-12-01T12:00:00.000Z".into(),
            run_id: "run-1".into(),
            app: "A".into(),
            summary,
            details,
        });
        out
    }

    #[test]
    fn seen_notes_only_what_is_not_the_current_key() {
        let seen = Seen::default();
        let current = ApiKey::new("CURRENTCURRENTCURRENTCUR0002");
        seen.note(
            "A",
            "KEY_VAULT",
            "kv/a",
            &Stored::Value(current.clone()),
            &current,
        );
        seen.note("A", "KEY_VAULT", "kv/b", &Stored::Missing, &current);
        let old = ApiKey::new("PREVIOUSPREVIOUSPREVIOUS0001");
        seen.note(
            "A",
            "KEY_VAULT",
            "kv/c",
            &Stored::Value(old.clone()),
            &current,
        );
        seen.note(
            "A",
            "APPLICATION_API",
            "api/x",
            &Stored::Fingerprint(old.sha256_hex().to_uppercase()),
            &current,
        );
        let reads = seen.reads();
        assert_eq!(reads.len(), 2);
        assert!(reads.iter().all(|r| r.sha256 == old.sha256_hex()));
        assert!(!format!("{reads:?}").contains(old.expose()));
    }

    /// Keys by app (the same two keys for every app, the current one expiring in
    /// `current_days[app]` days); counts the reads.
    struct FakeKeys {
        current_days: std::collections::HashMap<&'static str, i64>,
        reads: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl KeySource for FakeKeys {
        async fn current_key(
            &self,
            _: &Call,
            _: &str,
            _: crate::toolkit::KeyRequest,
        ) -> crate::error::Result<crate::toolkit::KeyGrant> {
            unreachable!("the notifications never ask for a grant")
        }
        async fn notice_keys(&self, _: &Call, app: &str) -> crate::error::Result<NoticeKeys> {
            self.reads.lock().unwrap().push(app.to_string());
            let now = OffsetDateTime::now_utc();
            let mut k = keys(self.current_days[app]);
            // Real times: gather reads the clock itself.
            for key in &mut k.list.keys {
                key.expires_at = key.expires_at.map(|e| now + (e - NOW));
                key.issued_at = key.issued_at.map(|i| now + (i - NOW));
            }
            Ok(k)
        }
        fn renewal_policy(&self) -> Option<RenewalPolicy> {
            Some(RenewalPolicy::default())
        }
    }

    /// Only the apps that need it are read: not one whose key the run renewed, nor one whose
    /// key (as the run got it) cannot be due within the days; a failed target's app is read
    /// for `target.expiring` whatever its key's due date.
    #[tokio::test]
    async fn gather_reads_only_the_apps_that_need_it() {
        let source = FakeKeys {
            current_days: [
                ("far", 300),
                ("soon", 50),
                ("renewed", 90),
                ("failing", 300),
            ]
            .into_iter()
            .collect(),
            reads: Mutex::default(),
        };
        let now = OffsetDateTime::now_utc();
        let seen = Seen::default();
        for (app, days) in [
            ("far", 300),
            ("soon", 50),
            ("renewed", 90),
            ("failing", 300),
        ] {
            seen.grant(app, Some(now + Days::days(days)));
        }
        let previous = ApiKey::new("PREVIOUSPREVIOUSPREVIOUS0001");
        let current = ApiKey::new("CURRENTCURRENTCURRENTCUR0002");
        seen.note(
            "failing",
            "KEY_VAULT",
            "kv/x",
            &Stored::Value(previous),
            &current,
        );
        let mut report = Report::new(false);
        for app in ["far", "soon", "renewed"] {
            report.unchanged.push(ReportEntry::new(
                "KEY_VAULT",
                app,
                &format!("kv/{app}"),
                "No update needed",
            ));
        }
        report
            .successes
            .push(ReportEntry::new("TOOLKIT", "renewed", "", "renewed").with_key(&current));
        report.errors.push(
            ReportEntry::new("KEY_VAULT", "failing", "kv/x", "Forbidden").with_code("Forbidden"),
        );
        let call = Call::new(
            std::sync::Arc::new(crate::azure::retry::RetryPolicy::default()),
            None,
        );
        let got = gather(&call, &source, &report, &seen, (true, true), 7).await;
        assert_eq!(*source.reads.lock().unwrap(), ["soon", "failing"]);
        let apps: Vec<&str> = got.upcoming.iter().map(|u| u.notice.app.as_str()).collect();
        assert_eq!(apps, ["soon"]);
        assert_eq!(got.events.len(), 1);
        assert_eq!(
            (got.events[0].kind, got.events[0].app.as_str()),
            (EventType::TargetExpiring, "failing")
        );
        assert!(got.warnings.is_empty());
        // Without the run's expiries every app the run did not renew is read.
        let source = FakeKeys {
            current_days: source.current_days.clone(),
            reads: Mutex::default(),
        };
        gather(&call, &source, &report, &Seen::default(), (true, false), 7).await;
        assert_eq!(*source.reads.lock().unwrap(), ["far", "soon", "failing"]);
    }

    #[test]
    fn the_days_setting() {
        assert_eq!(parse_days(None).unwrap(), 7);
        assert_eq!(parse_days(Some(" 30 ")).unwrap(), 30);
        for bad in ["0", "366", "-1", "seven", "1.5"] {
            let e = parse_days(Some(bad)).unwrap_err();
            assert_eq!(e.setting, UPCOMING_DAYS);
            assert!(
                e.message
                    .starts_with("expected a whole number of days from 1 to 365"),
                "{}",
                e.message
            );
        }
    }
}

//! Grace and revocation (PRODUCT.md §6, "lifecycle beyond renewal"): once a run has put an
//! app's current key in every mapped target, the keys it superseded are revoked with the API
//! manager's revoke (never a delete, so it can be undone).
//!
//! Opt-in: without [`GRACE_SETTING`] nothing is revoked. A superseded key is revoked only when
//! all of these hold:
//! - the rotator replaced it: a complete key the rotator made carries its fingerprint
//!   ([`crate::toolkit::IssuedKey::replaces`]); a key nothing replaces is never touched (a
//!   consumer outside the mapping may use it), nor is the current or a pinned key
//!   ([`policy::may_revoke`], checked again by the key source under the app's locks);
//! - the grace period since its successor was issued has passed;
//! - the app is not in [`EXCLUDED_SETTING`];
//! - in this run, every mapped target of the app (each entry, Key Vault references followed to
//!   the secret) was read holding the current key. A target that failed, or that was written in
//!   this run without being read back, blocks it; the report names the target.
//!
//! **Emergency rotation** ([`RevokeMode::Immediately`], `revoke=immediate` with `force` and
//! `app`): the run reads back every container it wrote (one extra read each, references
//! followed), then revokes every key the rotator replaced, the leaked one among them, grace
//! ignored. An explicit emergency on one app overrides that app's opt-out in
//! [`EXCLUDED_SETTING`] (the report says so); it still never revokes without every target's
//! confirmation.
//!
//! A key a rollback withdrew ([`crate::toolkit::IssuedKey::withdrawn_at`]) is revoked under the
//! same confirmation, whenever a run decides revocations (grace on, an emergency, or the
//! rollback's own run, [`RevokeMode::Withdrawn`], which reads every write back as an emergency
//! does), grace and opt-out aside: the rollback asked for it.
//!
//! The decisions are pure functions ([`decide`]) tested with fixed times at the bottom; the
//! engine gives them what each target held ([`Held`]) and [`step`] asks the key source.

use super::engine::RunOptions;
use super::report::{Report, ReportEntry};
use crate::azure::call::Call;
use crate::error::{Error, Result};
use crate::secret::ApiKey;
use crate::settings::{SettingError, Settings};
use crate::targets::{Container, Stored, Write};
use crate::toolkit::{policy, IssuedKey, KeyGrant, KeySource};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// Setting: hours after a key's successor was issued before the key is revoked (a whole
/// number, 0 or more). Absent or empty: revocation is off (the default).
pub const GRACE_SETTING: &str = "KEY_REVOCATION_GRACE_HOURS";

/// Setting: comma-separated apimAppNames whose keys are never revoked (per-app opt-out).
pub const EXCLUDED_SETTING: &str = "KEY_REVOCATION_EXCLUDED_APPS";

/// The report type of every revocation entry.
pub const REPORT_TYPE: &str = "REVOCATION";

/// Code of a revocation the targets block (warning entries).
pub const BLOCKED_CODE: &str = "RevocationBlocked";

/// How a run revokes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RevokeMode {
    /// As the settings say ([`GRACE_SETTING`], [`EXCLUDED_SETTING`]).
    #[default]
    Settings,
    /// Emergency: read back every write, then revoke every key the rotator replaced at once,
    /// grace and opt-out aside (only with `force` and `app` at the entry points).
    Immediately,
    /// After a rollback: read back every write, and revoke the keys a rollback withdrew once
    /// every target confirms; other keys as the settings say. For the rollback's own run: no
    /// query parameter or flag sets it.
    Withdrawn,
}

/// The revocation settings, checked against the mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationPolicy {
    /// `None`: revocation is off.
    pub grace: Option<Duration>,
    /// Apps never revoked by the settings' policy.
    pub excluded: BTreeSet<String>,
}

impl RevocationPolicy {
    /// Reads [`GRACE_SETTING`] and [`EXCLUDED_SETTING`]; every app named must be one of
    /// `mapped_apps`. Each problem names its setting.
    pub fn from_settings(
        settings: &Settings,
        mapped_apps: &[String],
    ) -> std::result::Result<Self, Vec<SettingError>> {
        let mut problems = Vec::new();
        let problem = |setting: &str, message: String| SettingError {
            setting: setting.to_string(),
            message,
        };
        let grace = match settings.get(GRACE_SETTING).map(str::trim) {
            None | Some("") => None,
            Some(v) => match v.parse::<u32>() {
                Ok(hours) => Some(Duration::hours(hours.into())),
                Err(_) => {
                    problems.push(problem(
                        GRACE_SETTING,
                        format!("expected a whole number of hours, 0 or more (absent: revocation off), got \"{v}\""),
                    ));
                    None
                }
            },
        };
        if grace.is_some() && settings.get(crate::settings::TOOLKIT_APP_URL).is_some() {
            problems.push(problem(
                GRACE_SETTING,
                format!(
                    "revocation needs the in-process toolkit, and {} is set (a remote ToolkitApp only hands out keys); unset one of them",
                    crate::settings::TOOLKIT_APP_URL
                ),
            ));
        }
        let mut excluded = BTreeSet::new();
        for name in settings
            .get(EXCLUDED_SETTING)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            if !mapped_apps.iter().any(|a| a == name) {
                problems.push(problem(
                    EXCLUDED_SETTING,
                    format!("\"{name}\" is not an apimAppName of the mapping; expected a comma-separated list of apimAppNames"),
                ));
            }
            excluded.insert(name.to_string());
        }
        if problems.is_empty() {
            Ok(Self { grace, excluded })
        } else {
            Err(problems)
        }
    }

    /// Whether the settings turn revocation on.
    pub fn enabled(&self) -> bool {
        self.grace.is_some()
    }
}

/// What one target of an app held in this run, as far as revocation cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Read holding the current key: unchanged, or read back after its write.
    Confirmed,
    /// Written in this run (in a dry run: would be) and not read back.
    Written,
    /// Read back after its write holding another key (its last four characters, when the
    /// target shows them) or nothing.
    ReadBackOther(Option<String>),
    /// Its read-back failed (the error's code).
    ReadBackFailed(String),
    /// The target failed in this run (the error's code).
    Failed(String),
}

impl Held {
    /// Why the target blocks a revocation, for "Blocked by <target>: ...".
    fn reason(&self, dry_run: bool) -> String {
        match self {
            Held::Confirmed => "it holds the current key".into(),
            Held::Written if dry_run => {
                "it would be written in this run, and a target is confirmed only once read holding the current key".into()
            }
            Held::Written => {
                "it did not hold the current key and was written in this run; the next run's read confirms it".into()
            }
            Held::ReadBackOther(Some(k)) => format!("it holds {k} after the write"),
            Held::ReadBackOther(None) => "it holds another key after the write".into(),
            Held::ReadBackFailed(code) => format!("reading it back after the write failed ({code})"),
            Held::Failed(code) => format!("it failed in this run ({code})"),
        }
    }
}

/// Each app's targets in this run: (target, what it held).
pub type TargetsByApp = HashMap<String, Vec<(String, Held)>>;

/// The read-backs of a run's writes (emergency rotation), recorded by the containers as they
/// go, keyed by (app, target).
#[derive(Debug, Default)]
pub struct ReadBacks(Mutex<HashMap<(String, String), Held>>);

impl ReadBacks {
    /// Reads back, in one read of `store`, every write of `writes` whose result is `Ok`, and
    /// records what each holds under (its app, `target(name)`).
    pub async fn confirm(
        &self,
        store: &dyn Container,
        writes: &[Write],
        results: &[Result<()>],
        target: impl Fn(&str) -> String,
    ) {
        let written: Vec<&Write> = writes
            .iter()
            .zip(results)
            .filter(|(_, r)| r.is_ok())
            .map(|(w, _)| w)
            .collect();
        if written.is_empty() {
            return;
        }
        let names: Vec<String> = written.iter().map(|w| w.name.clone()).collect();
        let read = store.read(&names).await;
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (w, stored) in written.into_iter().zip(read) {
            let held = match stored {
                Ok(s) if s.holds(&w.key) => Held::Confirmed,
                Ok(Stored::Value(other)) => Held::ReadBackOther(Some(other.redacted())),
                Ok(_) => Held::ReadBackOther(None),
                Err(e) => Held::ReadBackFailed(e.code().to_string()),
            };
            tracing::debug!(target = %target(&w.name), ?held, "read back after the write");
            seen.insert((w.apim_app_name.clone(), target(&w.name)), held);
        }
    }

    /// Reads back `name` of `store` after a write of `key` there, recording what it holds
    /// under (`app`, `target`): the Key Vault secret an entry refers to.
    pub async fn confirm_one(
        &self,
        store: &dyn Container,
        app: &str,
        target: &str,
        name: &str,
        key: &ApiKey,
    ) {
        let write = Write {
            name: name.to_string(),
            apim_app_name: app.to_string(),
            key: key.clone(),
            expires_at: None,
        };
        self.confirm(store, &[write], &[Ok(())], |_| target.to_string())
            .await;
    }

    /// What the read-back of (app, target) found, if it was read back.
    pub fn get(&self, app: &str, target: &str) -> Option<Held> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(app.to_string(), target.to_string()))
            .cloned()
    }
}

/// What to do with one revocable key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Revoke it now.
    Revoke,
    /// Its grace period ends then.
    After(OffsetDateTime),
    /// These targets (target, why) block it.
    Blocked(Vec<(String, String)>),
}

/// A key the rotation may revoke, and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The superseded key.
    pub key: ApiKey,
    /// The key that replaced it and when that was issued; `None` for a key a rollback
    /// withdrew.
    pub successor: Option<(ApiKey, Option<OffsetDateTime>)>,
    /// When a rollback withdrew it.
    pub withdrawn_at: Option<OffsetDateTime>,
    /// What to do.
    pub verdict: Verdict,
}

/// Everything [`decide`] needs about one app.
#[derive(Debug)]
pub struct AppFacts<'a> {
    /// The app's keys as the API manager holds them.
    pub keys: &'a [IssuedKey],
    /// The key this run distributed.
    pub distributed: &'a ApiKey,
    /// What each of the app's targets held in this run.
    pub targets: &'a [(String, Held)],
    /// Whether [`EXCLUDED_SETTING`] lists the app.
    pub excluded: bool,
    /// The run's revocation mode.
    pub mode: RevokeMode,
    /// The grace period (`None`: revocation off).
    pub grace: Option<Duration>,
    /// Whether this is a dry run (for the reasons' wording only).
    pub dry_run: bool,
}

/// The keys of one app the run may revoke, each with its verdict; `Err` says why the run
/// decides nothing for the app. Keys the rules leave alone (the current key, keys nothing
/// replaces, revoked or expired ones; replaced keys of an excluded app, or with revocation
/// off, unless the run is an emergency) are not listed.
pub fn decide(
    facts: &AppFacts<'_>,
    now: OffsetDateTime,
) -> std::result::Result<Vec<Candidate>, String> {
    let current = policy::current_key(facts.keys, now)
        .ok_or_else(|| "the app has no current key in the API manager".to_string())?;
    if current.key != *facts.distributed {
        return Err(format!(
            "the app's current key is {} now, not {} which this run distributed; the next run decides",
            current.key, facts.distributed
        ));
    }
    let mut blockers: Vec<(String, String)> = facts
        .targets
        .iter()
        .filter(|(_, held)| *held != Held::Confirmed)
        .map(|(target, held)| (target.clone(), held.reason(facts.dry_run)))
        .collect();
    if facts.targets.is_empty() {
        blockers.push((
            String::new(),
            "no target of the app was read in this run".into(),
        ));
    }
    let mut out = Vec::new();
    for key in facts.keys {
        if policy::may_revoke(key, facts.keys, now).is_err() {
            continue;
        }
        let successor = policy::successor(key, facts.keys);
        let mut verdict = None;
        if key.withdrawn_at.is_none() && facts.mode != RevokeMode::Immediately {
            let Some(grace) = facts.grace else { continue };
            if facts.excluded {
                continue;
            }
            match successor.and_then(|s| s.issued_at) {
                Some(issued) if now < issued + grace => {
                    verdict = Some(Verdict::After(issued + grace))
                }
                Some(_) => {}
                None => {
                    verdict = Some(Verdict::Blocked(vec![(
                        String::new(),
                        "the issue time of the key that replaced it is unknown, so its grace period cannot be counted".into(),
                    )]))
                }
            }
        }
        let verdict = verdict.unwrap_or_else(|| {
            if blockers.is_empty() {
                Verdict::Revoke
            } else {
                Verdict::Blocked(blockers.clone())
            }
        });
        out.push(Candidate {
            key: key.key.clone(),
            successor: successor.map(|s| (s.key.clone(), s.issued_at)),
            withdrawn_at: key.withdrawn_at,
            verdict,
        });
    }
    Ok(out)
}

/// The revocation step of a run, after every target is done: for each app whose key the run
/// distributed, lists its keys, decides, and revokes (a dry run only plans), adding
/// `REVOCATION` entries and `summary.revoked` to `report`. Runs only when the settings turn
/// revocation on or the run is an emergency.
pub(super) async fn step<'a>(
    call: &Call,
    source: &dyn KeySource,
    apps: &[String],
    grant_of: impl Fn(&str) -> std::result::Result<&'a KeyGrant, Error> + Sync,
    targets: &TargetsByApp,
    options: &RunOptions,
    report: &mut Report,
) {
    let mode = options.revoke;
    if mode == RevokeMode::Settings && !options.revocation.enabled() {
        return;
    }
    let no_targets = Vec::new();
    let work = apps.iter().map(|app| {
        let grant = grant_of(app);
        let targets = targets.get(app).unwrap_or(&no_targets);
        async move { app_step(call, source, app, grant, targets, options).await }
    });
    let lines = match call.deadline() {
        Some(deadline) => {
            tokio::time::timeout_at(
                deadline.into(),
                crate::fan_out::bounded(call.concurrency(), work),
            )
            .await
        }
        None => Ok(crate::fan_out::bounded(call.concurrency(), work).await),
    };
    let Ok(lines) = lines else {
        report.warnings.push(ReportEntry::new(
            REPORT_TYPE,
            "",
            "",
            "The run's deadline passed before the revocations were decided; nothing more was revoked, and the next run decides again.",
        ));
        return;
    };
    for line in lines.into_iter().flatten() {
        match line {
            Line::Revoked(e) => {
                report.summary.revoked += 1;
                report.successes.push(e);
            }
            Line::Planned(e) => report.successes.push(e),
            Line::Warning(e) => report.warnings.push(e),
            Line::Error(e) => report.errors.push(e),
        }
    }
}

/// One entry of the revocation step.
enum Line {
    /// Revoked (in a dry run: would be now).
    Revoked(ReportEntry),
    /// A dry run's plan for later.
    Planned(ReportEntry),
    Warning(ReportEntry),
    Error(ReportEntry),
}

fn date(t: OffsetDateTime) -> String {
    t.date().to_string()
}

/// The step for one app.
async fn app_step(
    call: &Call,
    source: &dyn KeySource,
    app: &str,
    grant: std::result::Result<&KeyGrant, Error>,
    targets: &[(String, Held)],
    options: &RunOptions,
) -> Vec<Line> {
    let dry_run = options.dry_run;
    let mode = options.revoke;
    let excluded = options.revocation.excluded.contains(app);
    let entry = |message: String| ReportEntry::new(REPORT_TYPE, app, "", message);
    let grant = match grant {
        Ok(g) => g,
        Err(e) => {
            // The TOOLKIT error says why; an emergency also says what it did not do.
            return match mode {
                RevokeMode::Immediately | RevokeMode::Withdrawn => vec![Line::Warning(
                    entry(format!(
                        "Nothing was revoked: the toolkit could not provide the app's current key ({}).",
                        e.code()
                    ))
                    .with_code(BLOCKED_CODE),
                )],
                RevokeMode::Settings => Vec::new(),
            };
        }
    };
    let mut lines = Vec::new();
    if mode == RevokeMode::Immediately && excluded {
        lines.push(Line::Warning(entry(format!(
            "{EXCLUDED_SETTING} lists {app}, but revoke=immediate was asked for it: the emergency overrides the opt-out."
        ))));
    }
    if dry_run && grant.renewed && mode == RevokeMode::Immediately {
        // The key to revoke is the one the forced renewal would replace: the current one.
        lines.push(Line::Revoked(
            entry(format!(
                "Would revoke {} at once, after the forced renewal, once every target is read back holding the new key.",
                grant.api_key
            ))
            .with_key(&grant.api_key),
        ));
        return lines;
    }
    let keys = match source.app_keys(call, app).await {
        Ok(list) => list.keys,
        Err(e) => {
            lines.push(Line::Error(
                entry(format!(
                    "Could not read the app's keys to decide revocations: {e}"
                ))
                .with_code(e.code()),
            ));
            return lines;
        }
    };
    let now = OffsetDateTime::now_utc();
    let facts = AppFacts {
        keys: &keys,
        distributed: &grant.api_key,
        targets,
        excluded,
        mode,
        grace: options.revocation.grace,
        dry_run,
    };
    let candidates = match decide(&facts, now) {
        Ok(c) => c,
        Err(why) => {
            lines.push(Line::Warning(
                entry(format!("Nothing was revoked: {why}.")).with_code(BLOCKED_CODE),
            ));
            return lines;
        }
    };
    if candidates.is_empty() && mode == RevokeMode::Immediately {
        lines.push(Line::Warning(entry(
            "revoke=immediate: no key the rotator replaced is left to revoke.".to_string(),
        )));
    }
    if mode == RevokeMode::Withdrawn && !candidates.iter().any(|c| c.withdrawn_at.is_some()) {
        lines.push(Line::Warning(entry(
            "No key a rollback withdrew is left to revoke.".to_string(),
        )));
    }
    for c in candidates {
        let origin = match (&c.successor, c.withdrawn_at) {
            (_, Some(at)) => format!("withdrawn by a rollback on {}", date(at)),
            (Some((s, Some(at))), None) => format!("replaced by {s} on {}", date(*at)),
            (Some((s, None)), None) => format!("replaced by {s}"),
            (None, None) => "superseded".into(),
        };
        match c.verdict {
            Verdict::After(at) if dry_run => lines.push(Line::Planned(
                entry(format!(
                    "Would revoke {} after {} ({origin}; grace period {} hours).",
                    c.key,
                    date(at),
                    facts.grace.map(|g| g.whole_hours()).unwrap_or(0)
                ))
                .with_key(&c.key),
            )),
            Verdict::After(at) => {
                tracing::info!(app, key = %c.key, after = %at, "revocation is due after its grace period")
            }
            Verdict::Blocked(by) => {
                for (target, why) in by {
                    let message = if target.is_empty() {
                        format!("{} is not revoked: {why}.", c.key)
                    } else {
                        format!(
                            "Blocked by {target}: {why}. {} {} not revoked.",
                            c.key,
                            if dry_run { "would be" } else { "is" }
                        )
                    };
                    lines.push(Line::Warning(
                        ReportEntry::new(REPORT_TYPE, app, &target, message)
                            .with_key(&c.key)
                            .with_code(BLOCKED_CODE),
                    ));
                }
            }
            Verdict::Revoke if dry_run => lines.push(Line::Revoked(
                entry(format!("Would revoke {} now ({origin}).", c.key)).with_key(&c.key),
            )),
            Verdict::Revoke => {
                let why = match (c.withdrawn_at, mode) {
                    (Some(_), _) => "withdrawn by a rollback",
                    (None, RevokeMode::Immediately) => "emergency rotation",
                    (None, _) => "grace period passed",
                };
                match source.revoke(call, app, &c.key, why).await {
                    Ok(_) => lines.push(Line::Revoked(
                        entry(format!(
                            "Revoked {}, {origin}; every target holds {}.",
                            c.key, grant.api_key
                        ))
                        .with_key(&c.key),
                    )),
                    Err(e) => lines.push(Line::Error(
                        entry(format!("Could not revoke {}: {e}", c.key))
                            .with_key(&c.key)
                            .with_code(e.code()),
                    )),
                }
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::{fingerprint, AssociationStatus, ProductAssociation};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 06:00 UTC);

    fn key(name: &str, issued: OffsetDateTime, expires_days: i64) -> IssuedKey {
        IssuedKey {
            key: ApiKey::new(name),
            issued_at: Some(issued),
            expires_at: Some(issued + Duration::days(expires_days)),
            approved: true,
            api_products: vec![ProductAssociation {
                product: "p".into(),
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

    /// old (not the rotator's), new (the rotator's, replacing old, issued 10 hours ago), and a
    /// key no rotator key replaces.
    fn keys() -> Vec<IssuedKey> {
        let old = key("OLDKEY0000000000x7K2", NOW - Duration::days(80), 90);
        let new = IssuedKey {
            made_by_rotator: true,
            replaces: Some(fingerprint(&old.key)),
            ..key("NEWKEY00000000009M1x", NOW - Duration::hours(10), 90)
        };
        let foreign = key("FOREIGN000000000abcd", NOW - Duration::days(30), 60);
        vec![old, new, foreign]
    }

    fn facts<'a>(
        keys: &'a [IssuedKey],
        targets: &'a [(String, Held)],
        mode: RevokeMode,
        grace_hours: Option<i64>,
    ) -> AppFacts<'a> {
        AppFacts {
            keys,
            distributed: &keys[1].key,
            targets,
            excluded: false,
            mode,
            grace: grace_hours.map(Duration::hours),
            dry_run: false,
        }
    }

    fn confirmed() -> Vec<(String, Held)> {
        vec![
            ("kv/a".into(), Held::Confirmed),
            ("app/b".into(), Held::Confirmed),
        ]
    }

    fn verdicts(c: &[Candidate]) -> Vec<(&str, &Verdict)> {
        c.iter().map(|c| (c.key.expose(), &c.verdict)).collect()
    }

    #[test]
    fn revocation_is_off_without_a_grace_period() {
        let (keys, targets) = (keys(), confirmed());
        let c = decide(&facts(&keys, &targets, RevokeMode::Settings, None), NOW).unwrap();
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn the_grace_period_counts_from_the_successor_issue() {
        let (keys, targets) = (keys(), confirmed());
        let c = decide(&facts(&keys, &targets, RevokeMode::Settings, Some(24)), NOW).unwrap();
        let due = NOW - Duration::hours(10) + Duration::hours(24);
        assert_eq!(
            verdicts(&c),
            [("OLDKEY0000000000x7K2", &Verdict::After(due))]
        );
        let c = decide(&facts(&keys, &targets, RevokeMode::Settings, Some(10)), NOW).unwrap();
        assert_eq!(verdicts(&c), [("OLDKEY0000000000x7K2", &Verdict::Revoke)]);
        assert_eq!(
            c[0].successor,
            Some((
                ApiKey::new("NEWKEY00000000009M1x"),
                Some(NOW - Duration::hours(10))
            ))
        );
    }

    #[test]
    fn any_target_not_confirmed_blocks_and_is_named() {
        let keys = keys();
        for (held, reason) in [
            (Held::Written, "was written in this run"),
            (
                Held::Failed("Forbidden".into()),
                "it failed in this run (Forbidden)",
            ),
            (
                Held::ReadBackOther(Some("****x7K2".into())),
                "it holds ****x7K2 after the write",
            ),
            (
                Held::ReadBackFailed("Unavailable".into()),
                "reading it back after the write failed",
            ),
        ] {
            let targets = vec![
                ("kv/a".to_string(), Held::Confirmed),
                ("kv/stale".to_string(), held),
            ];
            let c = decide(&facts(&keys, &targets, RevokeMode::Settings, Some(0)), NOW).unwrap();
            match &c[0].verdict {
                Verdict::Blocked(by) => {
                    assert_eq!(by.len(), 1);
                    assert_eq!(by[0].0, "kv/stale");
                    assert!(by[0].1.contains(reason), "{by:?}");
                }
                other => panic!("{other:?}"),
            }
        }
        let c = decide(&facts(&keys, &[], RevokeMode::Settings, Some(0)), NOW).unwrap();
        assert!(matches!(&c[0].verdict, Verdict::Blocked(by) if by[0].1.contains("no target")));
    }

    #[test]
    fn an_excluded_app_is_left_alone_except_in_an_emergency() {
        let (keys, targets) = (keys(), confirmed());
        let mut f = facts(&keys, &targets, RevokeMode::Settings, Some(0));
        f.excluded = true;
        assert!(decide(&f, NOW).unwrap().is_empty());
        f.mode = RevokeMode::Immediately;
        let c = decide(&f, NOW).unwrap();
        assert_eq!(verdicts(&c), [("OLDKEY0000000000x7K2", &Verdict::Revoke)]);
    }

    /// An emergency ignores the grace period (and needs no grace setting), not the targets.
    #[test]
    fn an_emergency_ignores_grace_but_not_the_targets() {
        let (keys, targets) = (keys(), confirmed());
        let c = decide(&facts(&keys, &targets, RevokeMode::Immediately, None), NOW).unwrap();
        assert_eq!(verdicts(&c), [("OLDKEY0000000000x7K2", &Verdict::Revoke)]);
        let c = decide(
            &facts(&keys, &targets, RevokeMode::Immediately, Some(1000)),
            NOW,
        )
        .unwrap();
        assert_eq!(verdicts(&c), [("OLDKEY0000000000x7K2", &Verdict::Revoke)]);
        let failing = vec![("kv/a".to_string(), Held::Failed("Forbidden".into()))];
        let c = decide(&facts(&keys, &failing, RevokeMode::Immediately, None), NOW).unwrap();
        assert!(matches!(c[0].verdict, Verdict::Blocked(_)), "{c:?}");
    }

    /// A key nothing replaces, the current key, a revoked or expired key: never candidates.
    #[test]
    fn only_keys_the_rotator_replaced_are_candidates() {
        let mut keys = keys();
        let targets = confirmed();
        let c = decide(&facts(&keys, &targets, RevokeMode::Immediately, None), NOW).unwrap();
        assert!(c.iter().all(|c| c.key.expose() != "FOREIGN000000000abcd"));
        assert!(c.iter().all(|c| c.key.expose() != "NEWKEY00000000009M1x"));
        keys[0].revoked = true;
        keys[0].approved = false;
        assert!(
            decide(&facts(&keys, &targets, RevokeMode::Immediately, None), NOW)
                .unwrap()
                .is_empty()
        );
        keys[0] = IssuedKey {
            expires_at: Some(NOW - Duration::hours(1)),
            ..self::keys()[0].clone()
        };
        assert!(
            decide(&facts(&keys, &targets, RevokeMode::Immediately, None), NOW)
                .unwrap()
                .is_empty()
        );
    }

    /// A run that did not distribute the current key decides nothing.
    #[test]
    fn a_changed_current_key_decides_nothing() {
        let (keys, targets) = (keys(), confirmed());
        let mut f = facts(&keys, &targets, RevokeMode::Immediately, None);
        f.distributed = &keys[0].key;
        let e = decide(&f, NOW).unwrap_err();
        assert!(e.contains("****9M1x") && e.contains("****x7K2"), "{e}");
        assert!(!e.contains("NEWKEY00000000009M1x"), "no full key: {e}");
    }

    /// A rollback's withdrawn key is revoked once the targets confirm, grace and opt-out aside,
    /// but only in a run that decides revocations.
    #[test]
    fn a_withdrawn_key_is_revoked_once_confirmed() {
        let base = keys();
        let previous = IssuedKey {
            pinned_at: Some(NOW - Duration::hours(1)),
            ..base[0].clone()
        };
        let bad = IssuedKey {
            withdrawn_at: Some(NOW - Duration::hours(1)),
            ..base[1].clone()
        };
        let keys = vec![previous, bad];
        let targets = confirmed();
        let mut f = facts(&keys, &targets, RevokeMode::Settings, Some(1000));
        f.distributed = &keys[0].key;
        f.excluded = true;
        let c = decide(&f, NOW).unwrap();
        assert_eq!(verdicts(&c), [("NEWKEY00000000009M1x", &Verdict::Revoke)]);
        assert_eq!(c[0].withdrawn_at, Some(NOW - Duration::hours(1)));
        // The rollback's run: the withdrawn key once confirmed, other keys as the settings say
        // (here a replaced key inside its grace period, and with revocation off, none).
        let older = key("OLDER00000000000abcd", NOW - Duration::days(85), 90);
        let previous = IssuedKey {
            made_by_rotator: true,
            replaces: Some(fingerprint(&older.key)),
            ..keys[0].clone()
        };
        let keys = vec![older, previous, keys[1].clone()];
        let mut f = facts(&keys, &targets, RevokeMode::Withdrawn, None);
        f.distributed = &keys[1].key;
        let c = decide(&f, NOW).unwrap();
        assert_eq!(verdicts(&c), [("NEWKEY00000000009M1x", &Verdict::Revoke)]);
        f.grace = Some(Duration::days(1000));
        let c = decide(&f, NOW).unwrap();
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(matches!(c[0].verdict, Verdict::After(_)), "{c:?}");
        let blocked = vec![("kv/a".to_string(), Held::Written)];
        f.targets = &blocked;
        let c = decide(&f, NOW).unwrap();
        assert!(matches!(c[1].verdict, Verdict::Blocked(_)), "{c:?}");
    }

    #[test]
    fn settings_are_checked_against_the_mapping() {
        let s = |pairs: &[(&str, &str)]| {
            Settings::from_map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let apps = ["A".to_string(), "B".to_string()];
        assert_eq!(
            RevocationPolicy::from_settings(&s(&[]), &apps).unwrap(),
            RevocationPolicy::default()
        );
        let p = RevocationPolicy::from_settings(
            &s(&[(GRACE_SETTING, " 24 "), (EXCLUDED_SETTING, "A, ,B")]),
            &apps,
        )
        .unwrap();
        assert_eq!(p.grace, Some(Duration::hours(24)));
        assert_eq!(p.excluded.len(), 2);
        assert!(p.enabled());
        let p = RevocationPolicy::from_settings(&s(&[(GRACE_SETTING, "0")]), &apps).unwrap();
        assert_eq!(p.grace, Some(Duration::ZERO));
        let e = RevocationPolicy::from_settings(
            &s(&[
                (GRACE_SETTING, "0"),
                ("TOOLKIT_APP_URL", "https://tk.example/api/ToolkitApp"),
            ]),
            &apps,
        )
        .unwrap_err();
        assert!(e[0].message.contains("in-process toolkit"), "{}", e[0]);
        for (name, value, expect) in [
            (GRACE_SETTING, "-1", "expected a whole number of hours"),
            (GRACE_SETTING, "1.5", "expected a whole number of hours"),
            (EXCLUDED_SETTING, "A,Nope", "\"Nope\" is not an apimAppName"),
        ] {
            let e = RevocationPolicy::from_settings(&s(&[(name, value)]), &apps).unwrap_err();
            assert_eq!(e.len(), 1);
            assert_eq!(e[0].setting, name);
            assert!(e[0].message.contains(expect), "{}", e[0]);
        }
    }
}

//! `status`: every app's keys and which key each target holds, as tables for a person or as
//! the KeyStatus function's JSON body (`--json`). It reads what a dry run reads and writes
//! nothing ([`crate::rotation::status`]).
//!
//! Exit codes, as `rotate`'s: 0 every target holds its app's current key; 1 drift (a target
//! holds another key, or nothing) or something could not be read; 2 it could not start (the
//! settings, the mapping, an `--app` not in the mapping, a remote toolkit that cannot list
//! keys). `rotate`'s 3 (another run in progress) never happens: status takes no run lock.

use crate::rotation::status::{AppStatus, StatusAnswer, TargetState};
use crate::rotation::{Rotator, StatusOptions};
use std::process::ExitCode;

/// Runs `status` and prints the answer on stdout.
pub async fn run(rotator: Rotator, options: StatusOptions, json: bool) -> ExitCode {
    match rotator.status(&options).await {
        Ok(answer) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&answer).expect("a status serialises")
                );
            } else {
                print!("{}", render(&answer));
            }
            if answer.needs_attention() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The answer as a person reads it: the findings first (drift, errors), then one block per
/// app (its current key and renewal, its keys, its targets). Keys show as `****` and their
/// last four characters, as in the answer.
pub fn render(answer: &StatusAnswer) -> String {
    let s = &answer.summary;
    let mut out = String::new();
    let headline = if s.drift == 0 && s.errors == 0 {
        format!(
            "OK: all {} target(s) of {} app(s) hold their app's current key.",
            s.targets, s.apps
        )
    } else {
        format!(
            "DRIFT: {} of {} target(s) do not hold their app's current key; {} could not be checked.",
            s.drift, s.targets, s.errors
        )
    };
    out.push_str(&headline);
    out.push_str(&format!(" (as of {})\n", answer.timestamp));
    if !answer.drift.is_empty() {
        let rows = answer
            .drift
            .iter()
            .map(|d| {
                vec![
                    d.app_name.clone(),
                    d.target.clone(),
                    d.state.as_str().to_string(),
                    d.api_key.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        out.push_str(&table("  ", &["APP", "TARGET", "HOLDS", "KEY"], rows));
    }
    for app in &answer.apps {
        out.push('\n');
        out.push_str(&app_block(app));
    }
    out
}

fn app_block(app: &AppStatus) -> String {
    let mut out = format!("{}\n", app.app_name);
    if let Some(e) = &app.error {
        out.push_str(&format!(
            "  keys could not be listed: {} ({})\n",
            e.message, e.code
        ));
    }
    match &app.current {
        Some(c) => {
            let expiry = match (&c.expires_at, c.days_until_expiry) {
                (Some(t), Some(d)) => format!("expires {} ({})", date(t), in_days(d)),
                _ => "never expires".to_string(),
            };
            let renewal = match (&c.renewal_due_at, c.days_until_renewal) {
                (Some(t), Some(d)) if c.renewal_due => {
                    format!(
                        "renewal due {} ({}): the next run renews it",
                        date(t),
                        in_days(d)
                    )
                }
                (Some(t), Some(d)) => format!("renewal due {} ({})", date(t), in_days(d)),
                _ => "no renewal due".to_string(),
            };
            out.push_str(&format!(
                "  current key {}: {expiry}; {renewal}\n  why: {}\n",
                c.api_key, c.why
            ));
        }
        None if app.error.is_none() => {
            out.push_str(&format!(
                "  no current key: {}\n",
                app.note.as_deref().unwrap_or_default()
            ));
        }
        None => {}
    }
    if !app.keys.is_empty() {
        let rows = app
            .keys
            .iter()
            .map(|k| {
                let products = k
                    .products
                    .iter()
                    .map(|p| format!("{} ({})", p.product, p.approval))
                    .collect::<Vec<_>>()
                    .join(", ");
                vec![
                    k.api_key.clone(),
                    json_word(&k.status),
                    json_word(&k.role),
                    k.issued_at.as_deref().map(date).unwrap_or("-").to_string(),
                    k.expires_at
                        .as_deref()
                        .map(date)
                        .unwrap_or("never")
                        .to_string(),
                    if k.made_by_rotator { "yes" } else { "no" }.to_string(),
                    if products.is_empty() {
                        "-".into()
                    } else {
                        products
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            "  ",
            &[
                "KEY", "STATUS", "ROLE", "ISSUED", "EXPIRES", "ROTATOR", "PRODUCTS",
            ],
            rows,
        ));
    }
    if app.targets.is_empty() {
        out.push_str("  no mapped target\n");
        return out;
    }
    let rows = app
        .targets
        .iter()
        .map(|t| {
            let mark = match t.state {
                TargetState::Current => "",
                TargetState::Error => "!",
                _ => "*",
            };
            let detail = match (&t.error, &t.via) {
                (Some(e), _) => format!("{}: {}", e.code, e.message),
                (None, Some(via)) => format!("via {via}"),
                (None, None) => String::new(),
            };
            vec![
                format!("{mark}{}", t.state.as_str()),
                t.kind.clone(),
                t.target.clone(),
                t.api_key.clone().unwrap_or_else(|| "-".into()),
                detail,
            ]
        })
        .collect();
    out.push_str(&table("  ", &["STATE", "TYPE", "TARGET", "KEY", ""], rows));
    out
}

/// A serde word (`approved`, `current`) as the JSON spells it.
fn json_word<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The date part of an RFC 3339 time.
fn date(t: &str) -> &str {
    t.get(..10).unwrap_or(t)
}

fn in_days(d: i64) -> String {
    match d {
        0 => "today".to_string(),
        d if d > 0 => format!("in {d} days"),
        d => format!("{} days ago", -d),
    }
}

/// Rows under headers, each column as wide as its widest cell, two spaces apart, no trailing
/// spaces.
fn table(indent: &str, headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = indent.to_string();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            l.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::status::{
        CurrentKey, Drift, KeyInfo, KeyRole, KeyState, Problem, ProductInfo, StatusSummary,
        TargetStatus,
    };

    fn answer() -> StatusAnswer {
        let target = |t: &str, state, key: Option<&str>| TargetStatus {
            kind: "KEY_VAULT".into(),
            target: t.into(),
            via: None,
            state,
            api_key: key.map(String::from),
            error: None,
        };
        let mut denied = target("kv/denied", TargetState::Error, None);
        denied.error = Some(Problem {
            code: "Forbidden".into(),
            message: "refused".into(),
        });
        StatusAnswer {
            drift: vec![Drift {
                app_name: "App1".into(),
                kind: "KEY_VAULT".into(),
                target: "kv/old".into(),
                state: TargetState::Previous,
                api_key: Some("****0002".into()),
            }],
            summary: StatusSummary {
                apps: 1,
                keys: 2,
                targets: 3,
                current: 1,
                drift: 1,
                errors: 1,
            },
            apps: vec![AppStatus {
                app_name: "App1".into(),
                error: None,
                current: Some(CurrentKey {
                    api_key: "****0003".into(),
                    why: "the complete, unexpired key that expires latest".into(),
                    expires_at: Some("2027-02-24T12:00:00.000Z".into()),
                    days_until_expiry: Some(85),
                    renewal_due_at: Some("2027-01-10T12:00:00.000Z".into()),
                    days_until_renewal: Some(40),
                    renewal_due: false,
                }),
                note: None,
                renew_before_expiry_days: Some(45),
                keys: vec![
                    KeyInfo {
                        api_key: "****0002".into(),
                        issued_at: Some("2026-09-12T12:00:00.000Z".into()),
                        expires_at: Some("2026-12-11T12:00:00.000Z".into()),
                        status: KeyState::Approved,
                        role: KeyRole::Previous,
                        made_by_rotator: false,
                        products: vec![ProductInfo {
                            product: "p1".into(),
                            approval: "approved",
                        }],
                    },
                    KeyInfo {
                        api_key: "****0003".into(),
                        issued_at: Some("2026-11-26T12:00:00.000Z".into()),
                        expires_at: Some("2027-02-24T12:00:00.000Z".into()),
                        status: KeyState::Approved,
                        role: KeyRole::Current,
                        made_by_rotator: true,
                        products: vec![ProductInfo {
                            product: "p1".into(),
                            approval: "pending",
                        }],
                    },
                ],
                targets: vec![
                    target("kv/cur", TargetState::Current, Some("****0003")),
                    target("kv/old", TargetState::Previous, Some("****0002")),
                    denied,
                ],
            }],
            timestamp: "2026-12-01T12:00:00.000Z".into(),
        }
    }

    #[test]
    fn the_table_leads_with_drift_then_a_block_per_app() {
        let text = render(&answer());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("DRIFT: 1 of 3 target(s) do not hold"),
            "{text}"
        );
        assert_eq!(lines[1], "  APP   TARGET  HOLDS     KEY");
        assert_eq!(lines[2], "  App1  kv/old  previous  ****0002");
        assert_eq!(lines[4], "App1");
        assert_eq!(
            lines[5],
            "  current key ****0003: expires 2027-02-24 (in 85 days); renewal due 2027-01-10 (in 40 days)"
        );
        assert!(
            lines[7].starts_with("  KEY       STATUS    ROLE      ISSUED"),
            "{text}"
        );
        assert!(
            lines[8].contains("previous  2026-09-12  2026-12-11  no       p1 (approved)"),
            "{text}"
        );
        assert!(
            lines[9].contains("current   2026-11-26  2027-02-24  yes      p1 (pending)"),
            "{text}"
        );
        assert_eq!(
            lines[10].split_whitespace().collect::<Vec<_>>(),
            ["STATE", "TYPE", "TARGET", "KEY"]
        );
        assert!(lines[11].starts_with("  current    KEY_VAULT"), "{text}");
        assert!(
            lines[12].starts_with("  *previous  KEY_VAULT  kv/old"),
            "{text}"
        );
        assert!(lines[13].ends_with("Forbidden: refused"), "{text}");
        assert!(
            lines.iter().all(|l| l.trim_end() == *l),
            "no trailing spaces"
        );
    }

    #[test]
    fn all_current_says_ok() {
        let mut a = answer();
        a.drift.clear();
        a.summary = StatusSummary {
            apps: 1,
            keys: 2,
            targets: 1,
            current: 1,
            drift: 0,
            errors: 0,
        };
        assert!(render(&a).starts_with("OK: all 1 target(s) of 1 app(s) hold"));
        assert!(!a.needs_attention());
        assert_eq!(in_days(-3), "3 days ago");
        assert_eq!(in_days(0), "today");
    }
}

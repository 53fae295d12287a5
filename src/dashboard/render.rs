//! The dashboard's HTML: one self-contained page (inline CSS and SVG only; no script, no
//! outside URL) that reads without JavaScript. Every value is escaped ([`esc`]): app names,
//! targets and messages come from the mapping, the services and the trail.

use super::{runs, tail_shown, Audit, Page, Run, RunOutcome};
use crate::audit::Record;
use crate::rotation::status::{AppStatus, KeyInfo, KeyRole, KeyState, TargetState, TargetStatus};
use std::fmt::Write as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `text` escaped for HTML text and for a double- or single-quoted attribute value.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's own style: no outside fonts or images.
const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header,main,footer{max-width:1200px;margin:0 auto;padding:0 16px}
header{padding-top:16px}
h1{font-size:1.5rem;margin:8px 0}
h2{font-size:1.2rem;margin:24px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:1.05rem;margin:0 0 6px}
.app{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px;margin:12px 0}
.wide{overflow-x:auto}
td{overflow-wrap:break-word}
.key,.nowrap{white-space:nowrap}
table{border-collapse:collapse;width:100%;margin:6px 0 10px;font-size:.85rem;background:#fff}
th,td{border:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eef1f4}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0;padding:0;list-style:none}
.cards li{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:6px 12px}
.cards b{display:block;font-size:1.3rem}
.ok{color:#116329}.bad{color:#a40e26;font-weight:600}.warn{color:#9a6700;font-weight:600}.muted{color:#57606a}
.state-drifted,.outcome-failure,.run-failed{background:#ffebe9}
.state-error,.outcome-warning,.run-unfinished{background:#fff8c5}
.state-in-sync,.run-succeeded{background:#dafbe1}
.timeline{width:100%;height:auto;max-width:1100px;display:block;margin:6px 0}
.timeline text{font-size:11px;fill:#1b1f24}
.timeline .axis{stroke:#8c959f;stroke-width:1}
.timeline .tick{fill:#57606a}
.timeline .today{stroke:#cf222e;stroke-width:2}
.timeline .today-label{fill:#cf222e}
.timeline .due{stroke:#9a6700;stroke-width:2;stroke-dasharray:4 3}
.timeline .due-label{fill:#9a6700}
.bar{stroke:#1b1f24;stroke-width:.5}
.role-current{fill:#2da44e}.role-previous{fill:#54aeff}.role-expired{fill:#afb8c1}
.role-revoked{fill:#ff8182}.role-withdrawn{fill:#d4a72c}.role-incomplete{fill:#c297ff}
"#;

/// The page: summary, drift, the last runs, one block per app (its keys' timeline and table,
/// its targets), the audit tail.
pub fn render(page: &Page) -> String {
    let status = page.status;
    let now = parse(&status.timestamp);
    let mut out = String::with_capacity(32 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<title>API Key Rotator dashboard</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<header>\n<h1>API Key Rotator dashboard</h1>\n");
    let _ = write!(
        out,
        "<p class=\"muted\">Keys and targets as read at {} (read only: nothing was renewed or written to show this page).",
        time_el(&status.timestamp, true)
    );
    if let Some(app) = page.app {
        let _ = write!(out, " Only app <b>{}</b>.", esc(app));
    }
    out.push_str("</p>\n</header>\n<main>\n");
    summary(&mut out, page);
    drift(&mut out, page);
    // The runs before the apps: a failed run is the first thing to see.
    runs_section(&mut out, page);
    out.push_str("<section id=\"apps\">\n<h2>Apps</h2>\n");
    for (i, app) in status.apps.iter().enumerate() {
        app_block(&mut out, i, app, now);
    }
    if status.apps.is_empty() {
        out.push_str("<p>No app in the mapping.</p>\n");
    }
    out.push_str("</section>\n");
    tail_section(&mut out, page);
    out.push_str("</main>\n<footer>\n<p class=\"muted\">Keys show as <code>****</code> and their last four characters only. One app: <code>?app=NAME</code> (or <code>--app</code>). Made by apikey-rotator (the Dashboard function, or <code>apikey-rotator dashboard</code>).</p>\n</footer>\n</body>\n</html>\n");
    out
}

fn summary(out: &mut String, page: &Page) {
    let s = &page.status.summary;
    let card = |out: &mut String, n: usize, what: &str, class: &str| {
        let _ = write!(out, "<li class=\"{class}\"><b>{n}</b>{}</li>", esc(what));
    };
    out.push_str("<section id=\"summary\">\n<ul class=\"cards\">");
    card(out, s.apps, "apps", "");
    card(out, s.keys, "keys", "");
    card(out, s.targets, "targets", "");
    card(out, s.current, "in sync", "ok");
    card(
        out,
        s.drift,
        "drifted",
        if s.drift > 0 { "bad" } else { "ok" },
    );
    card(
        out,
        s.errors,
        "could not be checked",
        if s.errors > 0 { "warn" } else { "ok" },
    );
    if let Audit::Records(records) = page.audit {
        let runs = runs(records, page.app);
        if let Some(last) = runs.first() {
            let class = if last.outcome == RunOutcome::Succeeded {
                "ok"
            } else {
                "bad"
            };
            let _ = write!(
                out,
                "<li class=\"{class}\"><b>{}</b>last run</li>",
                esc(last.outcome.as_str())
            );
        }
    }
    out.push_str("</ul>\n</section>\n");
}

fn drift(out: &mut String, page: &Page) {
    let status = page.status;
    out.push_str("<section id=\"drift\">\n<h2>Drift</h2>\n");
    if status.drift.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"ok\">No drift: every target that could be read holds its app's current key.</p>"
        );
    } else {
        let _ = writeln!(
            out,
            "<p class=\"bad\">{} of {} target(s) do not hold their app's current key.</p>",
            status.drift.len(),
            status.summary.targets
        );
        out.push_str("<table><thead><tr><th>App</th><th>Type</th><th>Target</th><th>State</th><th>Holds</th></tr></thead><tbody>\n");
        for d in &status.drift {
            let _ = writeln!(
                out,
                "<tr class=\"state-drifted\"><td>{}</td><td>{}</td><td><code>{}</code></td><td>drifted: {}</td><td>{}</td></tr>",
                esc(&d.app_name),
                esc(&d.kind),
                esc(&d.target),
                d.state.as_str(),
                key_el(d.api_key.as_deref())
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n");
}

fn app_block(out: &mut String, i: usize, app: &AppStatus, now: Option<OffsetDateTime>) {
    let _ = writeln!(
        out,
        "<article class=\"app\" id=\"app-{i}\">\n<h3>{}</h3>",
        esc(&app.app_name)
    );
    if let Some(e) = &app.error {
        let _ = writeln!(
            out,
            "<p class=\"bad\">Its keys could not be listed: <code>{}</code> {}</p>",
            esc(&e.code),
            esc(&e.message)
        );
    }
    match &app.current {
        Some(c) => {
            let expiry = match (&c.expires_at, c.days_until_expiry) {
                (Some(at), Some(d)) => format!("expires {} ({})", time_el(at, false), days_text(d)),
                _ => "never expires".to_string(),
            };
            let renewal = match (&c.renewal_due_at, c.days_until_renewal) {
                (Some(at), Some(d)) if c.renewal_due => format!(
                    "<span class=\"warn\">renewal due {} ({}): the next run renews it</span>",
                    time_el(at, false),
                    days_text(d)
                ),
                (Some(at), Some(d)) => {
                    format!("renewal due {} ({})", time_el(at, false), days_text(d))
                }
                _ => "no renewal due".to_string(),
            };
            let _ = writeln!(
                out,
                "<p>Current key {}: {expiry}; {renewal}. <span class=\"muted\">{}.</span></p>",
                key_el(Some(&c.api_key)),
                esc(&c.why)
            );
        }
        None if app.error.is_none() => {
            let _ = writeln!(
                out,
                "<p class=\"bad\">No current key: {}</p>",
                esc(app.note.as_deref().unwrap_or(""))
            );
        }
        None => {}
    }
    if let Some(days) = app.renew_before_expiry_days {
        let _ = writeln!(
            out,
            "<p class=\"muted\">Renewal window: {days} days before expiry.</p>"
        );
    }
    if !app.keys.is_empty() {
        if let Some(now) = now {
            out.push_str(&timeline(app, now));
        }
        key_table(out, &app.keys, now);
    }
    target_table(out, &app.targets);
    out.push_str("</article>\n");
}

fn key_table(out: &mut String, keys: &[KeyInfo], now: Option<OffsetDateTime>) {
    out.push_str("<table class=\"keys\"><thead><tr><th>Key</th><th>Role</th><th>Status</th><th>Issued</th><th>Expires</th><th>Days left</th><th>Made by the rotator</th><th>API products</th></tr></thead><tbody>\n");
    for k in keys {
        let left = match (k.expires_at.as_deref().and_then(parse), now) {
            (Some(exp), Some(now)) => days_text((exp - now).whole_days()),
            (None, _) if k.expires_at.is_none() => "never expires".into(),
            _ => String::new(),
        };
        let products: Vec<String> = k
            .products
            .iter()
            .map(|p| format!("{} ({})", esc(&p.product), p.approval))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{left}</td><td>{}</td><td>{}</td></tr>",
            key_el(Some(&k.api_key)),
            role_name(k.role),
            state_name(k.status),
            k.issued_at.as_deref().map(|t| time_el(t, false)).unwrap_or_default(),
            k.expires_at
                .as_deref()
                .map(|t| time_el(t, false))
                .unwrap_or_else(|| "never".into()),
            if k.made_by_rotator { "yes" } else { "no" },
            products.join(", ")
        );
    }
    out.push_str("</tbody></table>\n");
}

fn target_table(out: &mut String, targets: &[TargetStatus]) {
    if targets.is_empty() {
        out.push_str("<p class=\"muted\">No target mapped.</p>\n");
        return;
    }
    out.push_str("<table class=\"targets\"><thead><tr><th>Type</th><th>Target</th><th>State</th><th>Holds</th><th>Detail</th></tr></thead><tbody>\n");
    for t in targets {
        let (class, state) = match t.state {
            TargetState::Current => ("state-in-sync", "in sync".to_string()),
            TargetState::Error => ("state-error", "could not be checked".to_string()),
            s => ("state-drifted", format!("drifted: {}", s.as_str())),
        };
        let mut detail = String::new();
        if let Some(via) = &t.via {
            let _ = write!(detail, "via {}", esc(via));
        }
        if let Some(e) = &t.error {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            let _ = write!(detail, "<code>{}</code> {}", esc(&e.code), esc(&e.message));
        }
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td><code>{}</code></td><td>{state}</td><td>{}</td><td>{detail}</td></tr>",
            esc(&t.kind),
            esc(&t.target),
            key_el(t.api_key.as_deref())
        );
    }
    out.push_str("</tbody></table>\n");
}

/// The keys of `app` as bars from issue to expiry on one time axis, with today and the current
/// key's renewal due date marked. Every label is also in the table below it.
fn timeline(app: &AppStatus, now: OffsetDateTime) -> String {
    const WIDTH: f64 = 960.0;
    const LEFT: f64 = 190.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 34.0;
    const ROW: f64 = 22.0;
    let due = app
        .current
        .as_ref()
        .and_then(|c| c.renewal_due_at.as_deref())
        .and_then(parse);
    let times: Vec<OffsetDateTime> = app
        .keys
        .iter()
        .flat_map(|k| [k.issued_at.as_deref(), k.expires_at.as_deref()])
        .flatten()
        .filter_map(parse)
        .chain([now])
        .chain(due)
        .collect();
    let month = time::Duration::days(30);
    let lo = times.iter().min().copied().unwrap_or(now).min(now - month);
    let hi = times.iter().max().copied().unwrap_or(now).max(now + month);
    let span = (hi - lo).as_seconds_f64().max(1.0);
    let pad = time::Duration::seconds_f64(span * 0.03);
    let (lo, hi) = (lo - pad, hi + pad);
    let span = (hi - lo).as_seconds_f64();
    let x = |t: OffsetDateTime| LEFT + (t - lo).as_seconds_f64() / span * (WIDTH - LEFT - RIGHT);
    let height = TOP + ROW * app.keys.len() as f64 + 8.0;
    let bottom = height - 4.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"Expiry timeline of the keys of {}\">",
        esc(&app.app_name)
    );
    // Axis with six dates.
    let _ = writeln!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\"/>",
        y = TOP - 6.0,
        x2 = WIDTH - RIGHT
    );
    for i in 0..6 {
        let t = lo + time::Duration::seconds_f64(span * f64::from(i) / 5.0);
        let anchor = match i {
            0 => "start",
            5 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            svg,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            x(t),
            TOP - 12.0,
            t.date()
        );
    }
    for (row, k) in app.keys.iter().enumerate() {
        let y = TOP + ROW * row as f64;
        let start = k.issued_at.as_deref().and_then(parse).unwrap_or(lo);
        let end = k.expires_at.as_deref().and_then(parse).unwrap_or(hi);
        let role = role_name(k.role);
        let (x1, x2) = (x(start), x(end).max(x(start) + 2.0));
        let ends = match &k.expires_at {
            Some(t) => format!("expires {}", short(t)),
            None => "never expires".into(),
        };
        let issued = k
            .issued_at
            .as_deref()
            .map(|t| format!("issued {}, ", short(t)))
            .unwrap_or_default();
        let _ = writeln!(
            svg,
            "<text x=\"4\" y=\"{:.1}\">{} {role}</text>",
            y + 14.0,
            esc(&k.api_key)
        );
        let _ = writeln!(
            svg,
            "<rect class=\"bar role-{role}\" x=\"{x1:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\" rx=\"3\"><title>{} ({role}): {issued}{ends}</title></rect>",
            y + 3.0,
            x2 - x1,
            esc(&k.api_key)
        );
    }
    let mut marker = |class: &str, t: OffsetDateTime, label: &str, y: f64| {
        let _ = writeln!(
            svg,
            "<line class=\"{class}\" x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{bottom:.1}\"/><text class=\"{class}-label\" x=\"{2:.1}\" y=\"{y:.1}\">{label}</text>",
            x(t),
            TOP - 6.0,
            x(t) + 3.0,
        );
    };
    if let Some(due) = due {
        marker("due", due, "renewal due", bottom);
    }
    marker("today", now, "today", TOP + 2.0);
    svg.push_str("</svg>\n");
    svg
}

fn runs_section(out: &mut String, page: &Page) {
    out.push_str("<section id=\"runs\">\n<h2>Last runs</h2>\n");
    match page.audit {
        Audit::NotConfigured => no_sink(out, "runs"),
        Audit::Unreadable(why) => unreadable(out, why),
        Audit::Records(records) => {
            let runs = runs(records, page.app);
            if runs.is_empty() {
                out.push_str("<p>No run in the audit trail yet.</p>\n");
            } else {
                out.push_str("<div class=\"wide\"><table class=\"runs\"><thead><tr><th>Run</th><th>Trigger</th><th>Who</th><th>Started</th><th>Ended</th><th>Outcome</th><th>Summary</th><th>Failures and warnings</th></tr></thead><tbody>\n");
                for run in runs.iter().take(super::RUNS_SHOWN) {
                    run_row(out, run);
                }
                out.push_str("</tbody></table></div>\n");
            }
        }
    }
    out.push_str("</section>\n");
}

/// Says that no sink is configured, so there are no `what` to show: a fact, not an error.
fn no_sink(out: &mut String, what: &str) {
    let _ = writeln!(
        out,
        "<p class=\"muted\">No audit trail is configured (on the Functions host it is the blob trail in <code>{}</code>; elsewhere set <code>{}</code>), so there are no {what} to show.</p>",
        crate::azure::storage::STORAGE_SETTING,
        crate::audit::AUDIT_LOG_FILE
    );
}

fn unreadable(out: &mut String, why: &str) {
    let _ = writeln!(
        out,
        "<p class=\"warn\">The audit trail could not be read: {}</p>",
        esc(why)
    );
}

fn run_row(out: &mut String, run: &Run) {
    let class = match run.outcome {
        RunOutcome::Succeeded => "run-succeeded",
        RunOutcome::Failed => "run-failed",
        RunOutcome::Unfinished => "run-unfinished",
    };
    let mut problems = String::new();
    if !run.problems.is_empty() {
        problems.push_str("<ul>");
        for p in &run.problems {
            let _ = write!(
                problems,
                "<li class=\"outcome-{}\">{} {}: <code>{}</code> {}</li>",
                esc(&p.outcome),
                esc(&p.app),
                esc(&p.target),
                esc(p.code.as_deref().unwrap_or(&p.outcome)),
                esc(&p.message)
            );
        }
        problems.push_str("</ul>");
    }
    let _ = writeln!(
        out,
        "<tr class=\"{class}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{problems}</td></tr>",
        esc(&run.run_id),
        esc(&run.trigger),
        esc(&run.who),
        run.started.as_deref().map(|t| time_el(t, true)).unwrap_or_else(|| "before the tail".into()),
        run.ended.as_deref().map(|t| time_el(t, true)).unwrap_or_default(),
        run.outcome.as_str(),
        esc(&run.summary)
    );
}

fn tail_section(out: &mut String, page: &Page) {
    out.push_str("<section id=\"audit\">\n<h2>Audit tail</h2>\n");
    match page.audit {
        Audit::NotConfigured => no_sink(out, "records"),
        Audit::Unreadable(why) => unreadable(out, why),
        Audit::Records(records) => {
            let shown = tail_shown(records, page.app);
            if shown.is_empty() {
                out.push_str("<p>The audit trail holds no record yet.</p>\n");
            } else {
                let _ = writeln!(
                    out,
                    "<p class=\"muted\">The last {} record(s), newest first.</p>",
                    shown.len()
                );
                out.push_str("<div class=\"wide\"><table class=\"tail\"><thead><tr><th>#</th><th>Time</th><th>Run</th><th>Who</th><th>App</th><th>Target</th><th>Action</th><th>Old key</th><th>New key</th><th>Outcome</th><th>Code</th><th>Message</th></tr></thead><tbody>\n");
                for r in shown {
                    tail_row(out, r);
                }
                out.push_str("</tbody></table></div>\n");
            }
        }
    }
    out.push_str("</section>\n");
}

fn tail_row(out: &mut String, r: &Record) {
    let _ = writeln!(
        out,
        "<tr class=\"outcome-{}\"><td>{}</td><td>{}</td><td><code>{}</code></td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&r.outcome),
        r.seq,
        time_el(&r.time, true),
        esc(&r.run_id),
        esc(&r.who),
        r.trigger.as_str(),
        esc(&r.app),
        esc(&r.target),
        esc(&r.action),
        key_el(r.old_key.as_deref()),
        key_el(r.new_key.as_deref()),
        esc(&r.outcome),
        esc(r.code.as_deref().unwrap_or("")),
        esc(&r.message)
    );
}

/// A key as the sources give it (`****` and its last four).
fn key_el(key: Option<&str>) -> String {
    key.map(|k| format!("<code class=\"key\">{}</code>", esc(k)))
        .unwrap_or_default()
}

fn parse(t: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(t, &Rfc3339).ok()
}

/// `t` as a date, or a date and minute (UTC); as given when it is not RFC 3339.
fn short_with(t: &str, minutes: bool) -> String {
    match parse(t) {
        Some(p) if minutes => format!("{} {:02}:{:02} UTC", p.date(), p.hour(), p.minute()),
        Some(p) => p.date().to_string(),
        None => t.to_string(),
    }
}

fn short(t: &str) -> String {
    esc(&short_with(t, false))
}

/// A `<time>` element of `t`, shown as a date (or a date and minute).
fn time_el(t: &str, minutes: bool) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        esc(t),
        esc(&short_with(t, minutes))
    )
}

fn days_text(d: i64) -> String {
    match d {
        0 => "today".into(),
        1 => "in 1 day".into(),
        d if d > 1 => format!("in {d} days"),
        -1 => "1 day ago".into(),
        d => format!("{} days ago", -d),
    }
}

fn role_name(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Current => "current",
        KeyRole::Previous => "previous",
        KeyRole::Expired => "expired",
        KeyRole::Revoked => "revoked",
        KeyRole::Withdrawn => "withdrawn",
        KeyRole::Incomplete => "incomplete",
    }
}

fn state_name(state: KeyState) -> &'static str {
    match state {
        KeyState::Approved => "approved",
        KeyState::Revoked => "revoked",
        KeyState::Unfinished => "unfinished",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::tests::{record, two_runs};
    use crate::rotation::status::{
        CurrentKey, Drift, Problem, ProductInfo, StatusAnswer, StatusSummary,
    };

    const EVIL: &str = "<script>alert(\"x\")</script>&'";

    fn key(k: &str, role: KeyRole, issued: &str, expires: Option<&str>) -> KeyInfo {
        KeyInfo {
            api_key: k.into(),
            issued_at: Some(issued.into()),
            expires_at: expires.map(String::from),
            status: KeyState::Approved,
            role,
            made_by_rotator: true,
            products: vec![ProductInfo {
                product: "p1".into(),
                approval: "approved",
            }],
        }
    }

    fn target(name: &str, state: TargetState) -> TargetStatus {
        TargetStatus {
            kind: "KEY_VAULT".into(),
            target: name.into(),
            via: None,
            state,
            api_key: Some("****OLD1".into()),
            error: None,
        }
    }

    /// One app named `name` with a previous and a current key, one target in sync and one
    /// drifted.
    fn answer(name: &str) -> StatusAnswer {
        StatusAnswer {
            drift: vec![Drift {
                app_name: name.into(),
                kind: "KEY_VAULT".into(),
                target: "kv/drifted-secret".into(),
                state: TargetState::Previous,
                api_key: Some("****OLD1".into()),
            }],
            summary: StatusSummary {
                apps: 1,
                keys: 2,
                targets: 2,
                current: 1,
                drift: 1,
                errors: 0,
            },
            apps: vec![AppStatus {
                app_name: name.into(),
                error: None,
                current: Some(CurrentKey {
                    api_key: "****NEW2".into(),
                    why: "the complete, unexpired key that expires latest".into(),
                    expires_at: Some("2027-03-01T00:00:00.000Z".into()),
                    days_until_expiry: Some(90),
                    renewal_due_at: Some("2027-01-15T00:00:00.000Z".into()),
                    days_until_renewal: Some(45),
                    renewal_due: false,
                }),
                note: None,
                renew_before_expiry_days: Some(45),
                keys: vec![
                    key(
                        "****OLD1",
                        KeyRole::Previous,
                        "2026-06-01T00:00:00.000Z",
                        Some("2026-12-20T00:00:00.000Z"),
                    ),
                    key(
                        "****NEW2",
                        KeyRole::Current,
                        "2026-11-01T00:00:00.000Z",
                        Some("2027-03-01T00:00:00.000Z"),
                    ),
                ],
                targets: vec![
                    target("kv/in-sync-secret", TargetState::Current),
                    target("kv/drifted-secret", TargetState::Previous),
                ],
            }],
            timestamp: "2026-12-01T12:00:00.000Z".into(),
        }
    }

    fn page(status: &StatusAnswer, audit: &Audit) -> String {
        render(&Page {
            status,
            audit,
            app: None,
        })
    }

    /// The `<tr>` of `html` that contains `needle`.
    fn row_of<'a>(html: &'a str, needle: &str) -> &'a str {
        let at = html
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} not in page"));
        let start = html[..at].rfind("<tr").unwrap();
        let end = at + html[at..].find("</tr>").unwrap();
        &html[start..end]
    }

    #[test]
    fn every_value_is_escaped() {
        assert_eq!(
            esc(EVIL),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        let mut status = answer(EVIL);
        status.apps[0].targets[0].error = Some(Problem {
            code: EVIL.into(),
            message: EVIL.into(),
        });
        status.apps[0].targets[0].state = TargetState::Error;
        let mut bad = record("r<1>", "target.failed", EVIL, "failure", Some(EVIL));
        bad.message = EVIL.into();
        let records = vec![
            record("r<1>", "run.started", "", "success", None),
            bad,
            record("r<1>", "run.ended", "", "failure", None),
        ];
        let html = page(&status, &Audit::Records(records));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert(\""));
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)"));
        assert!(html.contains("<code>r&lt;1&gt;</code>"));
        let unreadable = page(&status, &Audit::Unreadable(EVIL.into()));
        assert!(!unreadable.contains("<script"));
    }

    #[test]
    fn a_drifted_target_is_shown_drifted_and_one_in_sync_in_sync() {
        let html = page(&answer("App1"), &Audit::Records(two_runs()));
        let drifted = row_of(&html, "<code>kv/drifted-secret</code></td><td>drifted");
        assert!(drifted.contains("state-drifted"), "{drifted}");
        assert!(drifted.contains("drifted: previous"), "{drifted}");
        let in_sync = row_of(&html, "kv/in-sync-secret");
        assert!(in_sync.contains("in sync"), "{in_sync}");
        assert!(in_sync.contains("state-in-sync"), "{in_sync}");
        // The drift list at the top names it too.
        let top = &html[html.find("id=\"drift\"").unwrap()..html.find("id=\"apps\"").unwrap()];
        assert!(top.contains("kv/drifted-secret") && top.contains("1 of 2 target(s)"));
    }

    #[test]
    fn the_timeline_shows_each_key_today_and_the_renewal_due_date() {
        let html = page(&answer("App1"), &Audit::NotConfigured);
        let svg = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap()];
        assert_eq!(svg.matches("<rect class=\"bar").count(), 2, "{svg}");
        assert!(svg.contains("role-current") && svg.contains("role-previous"));
        assert!(svg.contains(">today</text>") && svg.contains(">renewal due</text>"));
        // The current key starts after the previous one on the same axis.
        let xs: Vec<f64> = svg
            .match_indices("<rect class=\"bar")
            .map(|(i, _)| {
                let s = &svg[i..];
                let x = &s[s.find("x=\"").unwrap() + 3..];
                x[..x.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert!(xs[0] < xs[1], "{xs:?}");
        assert!(html.contains("renewal due <time datetime=\"2027-01-15T00:00:00.000Z\">2027-01-15</time> (in 45 days)"));
        assert!(html.contains("in 18 days"), "the previous key's days left");
    }

    #[test]
    fn empty_states_are_said_plainly() {
        let mut status = answer("App1");
        status.drift.clear();
        status.apps.clear();
        let html = page(&status, &Audit::NotConfigured);
        assert!(html.contains("No drift"));
        assert!(html.contains("No app in the mapping."));
        assert_eq!(
            html.matches("No audit trail is configured").count(),
            2,
            "runs and tail both say so"
        );
        let empty = page(&status, &Audit::Records(Vec::new()));
        assert!(empty.contains("No run in the audit trail yet."));
        assert!(empty.contains("The audit trail holds no record yet."));
        let broken = page(
            &status,
            &Audit::Unreadable("AUDIT_LOG_FILE line 3: bad".into()),
        );
        assert!(broken.contains("could not be read: AUDIT_LOG_FILE line 3: bad"));
        // An app without a current key says what that means; one whose keys failed says why.
        let mut status = answer("App1");
        status.apps[0].current = None;
        status.apps[0].note = Some("no complete, unexpired key".into());
        let mut failed = status.apps[0].clone();
        failed.app_name = "App2".into();
        failed.error = Some(Problem {
            code: "AppNotFound".into(),
            message: "no such app".into(),
        });
        failed.keys.clear();
        status.apps.push(failed);
        let html = page(&status, &Audit::NotConfigured);
        assert!(html.contains("No current key: no complete, unexpired key"));
        assert!(html.contains("could not be listed: <code>AppNotFound</code> no such app"));
    }

    #[test]
    fn runs_show_their_failures_and_the_tail_its_records() {
        let html = page(&answer("App1"), &Audit::Records(two_runs()));
        let failed = row_of(&html, "<code>r2</code></td><td>timer");
        assert!(
            failed.contains("run-failed") && failed.contains(">failed<"),
            "{failed}"
        );
        assert!(failed.contains("<code>Forbidden</code>"), "{failed}");
        let open = row_of(&html, "<code>r3</code></td><td>timer");
        assert!(open.contains("no end record"), "{open}");
        assert!(html.contains("<b>no end record</b>last run"));
        let tail = &html[html.find("id=\"audit\"").unwrap()..];
        assert!(tail.contains("The last 9 record(s)"));
        assert!(tail.contains("key.handedOut") && tail.contains("<code>h1</code>"));
        assert!(tail.contains("<code class=\"key\">****x7K2</code>"));
    }

    #[test]
    fn the_page_is_self_contained() {
        let html = page(&answer("App1"), &Audit::Records(two_runs()));
        let lower = html.to_ascii_lowercase();
        for banned in ["<script", "<link", "url(", "@import", "src=", "href=\"http"] {
            assert!(!lower.contains(banned), "{banned}");
        }
        // The one URL is the SVG namespace, which loads nothing.
        assert_eq!(lower.matches("http").count(), 1);
    }
}

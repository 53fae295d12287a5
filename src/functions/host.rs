//! The Functions host's invocation protocol for non-forwarded triggers: the request body
//! `{"Data":{...},"Metadata":{...}}` and the answer `{"Outputs","Logs","ReturnValue"}`.
//!
//! The host serialises with Newtonsoft, so names are matched case-insensitively, and its
//! timer dates may lack an offset (`0001-01-01T00:00:00` on a first run) or be `null`.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

/// What the handler reads from a timer invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerInvocation {
    /// The timer fired late (the app was down at the scheduled time).
    pub is_past_due: bool,
    /// The previous occurrence, when the monitor knows it and it is a real date.
    pub last: Option<OffsetDateTime>,
    /// The next occurrence, when known.
    pub next: Option<OffsetDateTime>,
}

/// Parses a timer invocation body leniently: any binding name, `ScheduleStatus` absent or
/// `null`, dates with or without offset. An empty body is a timer invocation with nothing known.
/// Only a body that is not JSON, or whose `Data` is not an object, is an error.
pub fn parse_timer_invocation(body: &[u8]) -> Result<TimerInvocation, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TimerInvocation::default());
    }
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the invocation body is not JSON: {e}"))?;
    let data = match field(&json, "Data") {
        None | Some(Value::Null) => return Ok(TimerInvocation::default()),
        Some(Value::Object(d)) => d,
        Some(_) => return Err("the invocation body's Data is not an object".into()),
    };
    // The binding's name is the function.json's `name`; take the first object that looks like a timer.
    let timer = data
        .values()
        .find(|v| field(v, "IsPastDue").is_some() || field(v, "Schedule").is_some());
    let Some(timer) = timer else {
        return Ok(TimerInvocation::default());
    };
    let status = field(timer, "ScheduleStatus").filter(|v| v.is_object());
    let date = |name: &str| {
        status
            .and_then(|s| field(s, name))
            .and_then(Value::as_str)
            .and_then(parse_host_date)
    };
    Ok(TimerInvocation {
        is_past_due: field(timer, "IsPastDue")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        last: date("Last"),
        next: date("Next"),
    })
}

/// Parses a date as the host writes it: RFC 3339, or without offset (taken as UTC). The
/// .NET minimum `0001-01-01T00:00:00` means "never" and gives `None`.
pub fn parse_host_date(text: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok().or_else(|| {
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        time::PrimitiveDateTime::parse(text, &fmt)
            .ok()
            .map(|t| t.assume_utc())
    })?;
    (parsed.year() > 1).then_some(parsed)
}

/// A field of a JSON object, matched case-insensitively.
fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let object = value.as_object()?;
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The handler's answer to an invocation.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationResponse<T: Serialize> {
    /// Output bindings (none for the timer).
    pub outputs: serde_json::Map<String, Value>,
    /// Lines the host writes as Information logs.
    pub logs: Vec<String>,
    /// The function's return value (the report).
    pub return_value: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(file: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/reference/functions/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn captured_body_with_null_schedule_status() {
        let t = parse_timer_invocation(&reference(
            "invoke-request.timer.captured-host-4.24.4.4-ScheduleStatus-null.json",
        ))
        .unwrap();
        assert_eq!(t, TimerInvocation::default());
    }

    #[test]
    fn documented_timer_objects_parse_with_dates() {
        for file in [
            "timer-object.docs-current.json",
            "timer-object.spring-sample-log-2022.json",
        ] {
            let timer: Value = serde_json::from_slice(&reference(file)).unwrap();
            let body =
                serde_json::to_vec(&serde_json::json!({"Data": {"timer": timer}, "Metadata": {}}))
                    .unwrap();
            let t = parse_timer_invocation(&body).unwrap();
            assert!(t.last.is_some() && t.next.is_some(), "{file}: {t:?}");
        }
    }

    #[test]
    fn dates_without_offset_and_the_dotnet_minimum() {
        let body = br#"{"Data":{"myTimer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"0001-01-01T00:00:00","Next":"2024-03-05T06:00:00","LastUpdated":"0001-01-01T00:00:00"},"IsPastDue":true}},"Metadata":{"sys":{}}}"#;
        let t = parse_timer_invocation(body).unwrap();
        assert!(t.is_past_due);
        assert_eq!(t.last, None);
        assert_eq!(
            t.next,
            Some(time::macros::datetime!(2024-03-05 06:00:00 UTC))
        );
        assert_eq!(
            parse_host_date("2022-10-11T10:52:00.003967+02:00")
                .unwrap()
                .hour(),
            10
        );
        assert_eq!(
            parse_host_date("2023-09-07T11:40:45.004275")
                .unwrap()
                .second(),
            45
        );
    }

    #[test]
    fn lenient_about_case_and_emptiness_strict_about_json() {
        assert!(
            parse_timer_invocation(br#"{"data":{"timer":{"isPastDue":true}}}"#)
                .unwrap()
                .is_past_due
        );
        assert_eq!(
            parse_timer_invocation(b"").unwrap(),
            TimerInvocation::default()
        );
        assert!(parse_timer_invocation(b"{not json").is_err());
        assert!(parse_timer_invocation(br#"{"Data":[1]}"#).is_err());
    }

    #[test]
    fn response_uses_the_host_field_names() {
        let r = InvocationResponse {
            outputs: Default::default(),
            logs: vec!["a".into()],
            return_value: 1,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"Outputs":{},"Logs":["a"],"ReturnValue":1}"#
        );
    }
}

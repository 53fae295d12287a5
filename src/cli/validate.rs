//! `apikey-rotator validate`: the mapping alone by default; with `--settings` (the process
//! environment) or `--env local.settings.json`, every setting, the sealed company details
//! (unsealed with `TOOLKITUUID`), the location binding and the settings the mapping names.

use crate::mapping;
use crate::rotation::Rotator;
use crate::settings::{Settings, COMPANY_DETAILS, TOOLKIT_APP_URL};
use crate::toolkit::sealed;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// What a check found: problems make `validate` fail; notes and findings only inform.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Each problem, naming the setting or JSON path and what is expected.
    pub problems: Vec<String>,
    /// Things worth knowing that are not problems.
    pub notes: Vec<String>,
    /// What was found valid, one line each (printed on stdout).
    pub valid: Vec<String>,
}

/// Checks the mapping in `env` alone: its shape, names and URLs against the selected cloud.
/// The app settings it names (`connectionStringSetting`, a header's `valueSetting`) need not
/// exist here: they are listed as notes, and `--settings` checks them.
pub fn mapping_only(env: &BTreeMap<String, String>) -> Findings {
    let settings = Settings::from_map(env.clone());
    let mut out = Findings::default();
    for p in settings
        .problems()
        .iter()
        .filter(|p| is_cloud_setting(&p.setting))
    {
        out.notes.push(format!(
            "{p} (the mapping was checked against the public cloud's domains)"
        ));
    }
    let named = RefCell::new(BTreeSet::new());
    let exists = |name: &str| {
        named.borrow_mut().insert(name.to_string());
        true
    };
    check_mapping(&settings, &exists, &mut out);
    for name in named.into_inner() {
        out.notes.push(format!(
            "the mapping reads app setting {name}: it must be set where the rotator runs (validate --settings checks it)"
        ));
    }
    out
}

/// Checks everything a run needs from `env`: every setting's format, the mapping with the
/// settings it names, and, for the in-process toolkit, the sealed company details (unsealed
/// with `TOOLKITUUID`) and their location binding (`boundTo.siteName` against
/// `WEBSITE_SITE_NAME`); then what the rotator sets up from them (CA file, credential, run
/// lock, the API manager's client).
pub fn with_settings(env: &BTreeMap<String, String>) -> Findings {
    let settings = Settings::from_map(env.clone());
    let mut out = Findings::default();
    out.problems.extend(
        settings
            .check_for_rotation()
            .iter()
            .map(|p| format!("setting {p}")),
    );
    check_mapping(&settings, &|name| settings.get(name).is_some(), &mut out);

    let in_process = settings.get(TOOLKIT_APP_URL).is_none();
    let mut toolkit_ok = !in_process;
    if in_process {
        if let (Some(details), Some(uuid)) = (&settings.company_details, &settings.toolkit_uuid) {
            if uuid::Uuid::parse_str(uuid.expose().trim()).is_ok() {
                match sealed::open(uuid.expose(), details.expose()) {
                    Err(e) if e.to_string() == sealed::INCORRECT_UUID => out.problems.push(format!(
                        "setting {COMPANY_DETAILS}: {e}: TOOLKITUUID does not open it (or the value was altered); expected the UUID given to `apikey-rotator seal`"
                    )),
                    Err(e) => out.problems.push(format!("setting {e}")),
                    Ok(d) => match sealed::check_location(&d, settings.site_name.as_deref()) {
                        Err(e) => out.problems.push(format!("setting {COMPANY_DETAILS}: {e}")),
                        Ok(()) => {
                            toolkit_ok = true;
                            out.valid.push(describe_details(&d));
                        }
                    },
                }
            }
        }
    } else {
        out.notes.push(format!(
            "keys come from the ToolkitApp at {TOOLKIT_APP_URL}; its own function app holds COMPANYDETAILS and TOOLKITUUID (check them there)"
        ));
        if settings.toolkit_app_key.is_none() {
            out.notes.push(
                "TOOLKIT_APP_KEY is not set: the ToolkitApp must accept calls without a function key".into(),
            );
        }
    }

    let rotator = Rotator::new(settings.clone());
    if let Ok(Err(crate::rotation::RunError::Settings(problems))) =
        rotator.mapping().map(|m| rotator.revocation_policy(&m))
    {
        out.problems
            .extend(problems.iter().map(|p| format!("setting {p}")));
    }
    if let Err(p) = crate::rotation::key_check::KeyChecks::max_wait(rotator.settings()) {
        out.problems.push(format!("setting {p}"));
    }
    if let Err(problems) = crate::notify::config::from_settings(rotator.settings()) {
        out.problems
            .extend(problems.iter().map(|p| format!("setting {p}")));
    }
    if let Err(problems) = crate::audit::check_settings(rotator.settings()) {
        out.problems
            .extend(problems.iter().map(|p| format!("setting {p}")));
    }
    for e in rotator.setup_problems() {
        out.problems.push(format!("setup: {e}"));
    }
    // The toolkit's own set-up (the API manager's client) once the details themselves passed;
    // before that its error would only repeat theirs.
    if toolkit_ok {
        if let Err(e) = rotator.key_source() {
            out.problems.push(format!("toolkit: {e}"));
        }
    }
    if out.problems.is_empty() {
        out.valid.push("settings valid".to_string());
    }
    out
}

fn check_mapping(settings: &Settings, exists: &dyn Fn(&str) -> bool, out: &mut Findings) {
    if settings.mapping_parts.is_empty() {
        out.problems.push(format!(
            "setting {}: missing; expected the apps mapping as JSON (or --mapping FILE; see examples/sampleAppsMapReq.json)",
            crate::settings::MAPPING_SETTINGS[0]
        ));
        return;
    }
    match mapping::parse(&settings.mapping_parts, &settings.cloud, exists) {
        Ok(m) => out.valid.push(format!(
            "mapping valid: {}, {}",
            crate::rotation::report::plural(m.apim_app_names().len(), "app"),
            crate::rotation::report::plural(m.target_count(), "target")
        )),
        Err(errors) => out.problems.extend(
            errors
                .0
                .iter()
                .map(|e| format!("mapping {}: {}: {}", e.setting, e.path, e.message)),
        ),
    }
}

fn is_cloud_setting(name: &str) -> bool {
    name == crate::azure::cloud::CLOUD_SETTING || name.starts_with("AZURE_")
}

/// One line on what the unsealed details say (no secret in it).
fn describe_details(d: &sealed::CompanyDetails) -> String {
    let bound = match &d.bound_to {
        Some(b) => format!("bound to function app {}", b.site_name),
        None => "not location-bound".to_string(),
    };
    format!(
        "company details valid: {}, {}, renewal {} days before expiry, new keys valid {} days, {bound}",
        d.company,
        d.issuer.config().describe(),
        d.policy.renew_before_expiry_days,
        d.policy.new_key_lifetime_days
    )
}

/// The `Values` of a Core Tools `local.settings.json` (`{"IsEncrypted": false, "Values":
/// {...}}`), each a string as the Functions host requires. Errors name the field.
pub fn local_settings(text: &str) -> Result<BTreeMap<String, String>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!("not valid JSON ({e}); expected {{\"IsEncrypted\": false, \"Values\": {{...}}}}")
    })?;
    let obj = v
        .as_object()
        .ok_or("expected an object {\"IsEncrypted\": false, \"Values\": {...}}")?;
    if obj.get("IsEncrypted").and_then(|e| e.as_bool()) == Some(true) {
        return Err("IsEncrypted is true: decrypt it first (`func settings decrypt`)".to_string());
    }
    let values = match obj.get("Values") {
        None => return Err("Values: missing; expected an object of app settings".into()),
        Some(v) => v
            .as_object()
            .ok_or("Values: expected an object of app settings")?,
    };
    values
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(format!("Values.{k}: expected a string")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/sampleAppsMapReq.json"
        ))
        .unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_sample_mapping_is_valid_alone() {
        let f = mapping_only(&env(&[("APIKEYROTATIONAPPS", &sample())]));
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert!(f.valid[0].starts_with("mapping valid: "), "{f:?}");
        assert!(
            f.notes
                .iter()
                .any(|n| n.contains("APPCS_PARTNERS_CONNECTION_STRING")),
            "{f:?}"
        );
        assert!(
            f.notes
                .iter()
                .any(|n| n.contains("APPAPI_SECRET_REFERENCEAPI_ADMIN_TOKEN")),
            "{f:?}"
        );
    }

    #[test]
    fn with_settings_every_missing_piece_is_a_problem() {
        let f = with_settings(&env(&[("APIKEYROTATIONAPPS", &sample())]));
        let all = f.problems.join("\n");
        for needle in [
            "COMPANYDETAILS: missing",
            "TOOLKITUUID: missing",
            "valueSetting: app setting APPAPI_SECRET_REFERENCEAPI_ADMIN_TOKEN is not set",
            "connectionStringSetting: app setting APPCS_PARTNERS_CONNECTION_STRING is not set",
        ] {
            assert!(all.contains(needle), "{needle} in {all}");
        }
    }

    #[test]
    fn sealed_details_uuid_and_location_are_checked() {
        let uuid = sealed::tests::UUID;
        let bound =
            sealed::tests::details_json(serde_json::json!({"boundTo": {"siteName": "func-prd"}}));
        let value = sealed::seal(uuid, bound.to_string().as_bytes()).unwrap();
        let base = |extra: &[(&str, &str)]| {
            let mut e = env(&[
                (
                    "APIKEYROTATIONAPPS",
                    r#"{"keyVault":[{"vaultName":"kv1","secrets":[{"secretName":"s","apimAppName":"A"}]}]}"#,
                ),
                ("COMPANYDETAILS", &value),
                ("TOOLKITUUID", uuid),
                ("WEBSITE_SITE_NAME", "func-prd"),
            ]);
            for (k, v) in extra {
                e.insert(k.to_string(), v.to_string());
            }
            e
        };
        let f = with_settings(&base(&[]));
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert!(
            f.valid
                .iter()
                .any(|v| v.contains("bound to function app func-prd")),
            "{f:?}"
        );

        let f = with_settings(&base(&[(
            "TOOLKITUUID",
            "00000000-0000-4000-8000-000000000000",
        )]));
        assert!(
            f.problems
                .iter()
                .any(|p| p.contains("Incorrect Toolkit UUID")),
            "{f:?}"
        );
        let f = with_settings(&base(&[("TOOLKITUUID", "nope")]));
        assert!(
            f.problems
                .iter()
                .any(|p| p.contains("TOOLKITUUID: not a UUID")),
            "{f:?}"
        );
        let f = with_settings(&base(&[("WEBSITE_SITE_NAME", "func-dev")]));
        assert!(
            f.problems.iter().any(|p| p.contains("location-bound")),
            "{f:?}"
        );
        let f = with_settings(&base(&[("COMPANYDETAILS", "v1.garbage")]));
        assert!(
            f.problems.iter().any(|p| p.contains("not a sealed value")),
            "{f:?}"
        );
        assert!(!f.valid.iter().any(|v| v == "settings valid"));
    }

    #[test]
    fn local_settings_files() {
        let v =
            local_settings(r#"{"IsEncrypted": false, "Values": {"A": "1"}, "Host": {}}"#).unwrap();
        assert_eq!(v["A"], "1");
        assert!(local_settings(r#"{"IsEncrypted": true, "Values": {}}"#)
            .unwrap_err()
            .contains("IsEncrypted"));
        assert_eq!(
            local_settings(r#"{"Values": {"N": 5}}"#).unwrap_err(),
            "Values.N: expected a string"
        );
        assert!(local_settings("{}")
            .unwrap_err()
            .starts_with("Values: missing"));
    }
}

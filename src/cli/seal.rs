//! `apikey-rotator seal`: company details into the `COMPANYDETAILS` value, and `seal --check`:
//! what a sealed value contains, its secrets redacted.

use crate::toolkit::sealed;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

/// Seals the details read from `input` (`-`: stdin) under `uuid` (a new one, printed on
/// stderr, when absent) and prints the value. Invalid details are refused now, not at the
/// first run, with the field's path.
pub fn seal(uuid: Option<String>, input: &Path) -> ExitCode {
    let mut text = Vec::new();
    let read = if input.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut text).map(|_| ())
    } else {
        std::fs::read(input).map(|t| text = t)
    };
    if let Err(e) = read {
        eprintln!("error: --in {}: {e}", input.display());
        return ExitCode::from(2);
    }
    let uuid = uuid.unwrap_or_else(|| {
        let generated = uuid::Uuid::new_v4().to_string();
        eprintln!("TOOLKITUUID={generated}");
        generated
    });
    let sealed = sealed::parse_details(&text).and_then(|_| sealed::seal(&uuid, &text));
    zeroize::Zeroize::zeroize(&mut text);
    match sealed {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Opens `value` (stdin when `None` or `-`) with `uuid` and prints what it contains as JSON,
/// secrets redacted (see [`sealed::CompanyDetails::redacted`]); with `site_name`
/// (`WEBSITE_SITE_NAME`), also whether the location binding lets it be used there.
pub fn check(uuid: &str, value: Option<String>, site_name: Option<&str>) -> ExitCode {
    let value = match value.filter(|v| v != "-") {
        Some(v) => v,
        None => {
            let mut v = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut v) {
                eprintln!("error: reading the sealed value from stdin: {e}");
                return ExitCode::from(2);
            }
            v
        }
    };
    match describe(uuid, &value, site_name) {
        Ok((details, note)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&details).unwrap_or_default()
            );
            eprintln!("{note}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The redacted details and a line saying the value is valid (and where it may be used).
fn describe(
    uuid: &str,
    value: &str,
    site_name: Option<&str>,
) -> Result<(serde_json::Value, String), String> {
    let details = sealed::open(uuid, value).map_err(|e| {
        if e.to_string() == sealed::INCORRECT_UUID {
            format!("{e}: this UUID does not open the value (or the value was altered)")
        } else {
            e.to_string()
        }
    })?;
    let note = match (&details.bound_to, site_name) {
        (None, _) => "valid: opens with this UUID; not location-bound".to_string(),
        (Some(b), None) => format!(
            "valid: opens with this UUID; usable only in function app '{}' (WEBSITE_SITE_NAME)",
            b.site_name
        ),
        (Some(b), Some(here)) => {
            sealed::check_location(&details, Some(here)).map_err(|e| e.to_string())?;
            format!(
                "valid: opens with this UUID; location-bound to '{}', which is this site",
                b.site_name
            )
        }
    };
    Ok((details.redacted(), note))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::sealed::tests::{details_json, test_pem, UUID};

    #[test]
    fn check_redacts_every_secret() {
        let v = details_json(serde_json::json!({"boundTo": {"siteName": "func-prd"}}));
        let value = sealed::seal(UUID, v.to_string().as_bytes()).unwrap();
        let (shown, note) = describe(UUID, &value, None).unwrap();
        let text = shown.to_string();
        let pem = test_pem();
        let body_line = pem.lines().nth(1).unwrap();
        assert!(
            !text.contains(body_line) && !text.contains("BEGIN"),
            "{text}"
        );
        assert!(!text.contains("rotator@"), "{text}");
        assert_eq!(
            shown["issuer"]["serviceAccountKey"]["client_email"],
            "ro****@contoso.iam.gserviceaccount.com"
        );
        assert_eq!(
            shown["issuer"]["serviceAccountKey"]["private_key"],
            "RSA private key in PEM form (redacted)"
        );
        assert_eq!(shown["issuer"]["organization"], "contoso-prd");
        assert_eq!(shown["boundTo"]["siteName"], "func-prd");
        assert!(
            note.contains("usable only in function app 'func-prd'"),
            "{note}"
        );

        let e = describe("00000000-0000-4000-8000-000000000000", &value, None).unwrap_err();
        assert!(e.starts_with("Incorrect Toolkit UUID"), "{e}");
        let e = describe(UUID, &value, Some("func-dev")).unwrap_err();
        assert!(e.contains("location-bound"), "{e}");
        assert!(describe(UUID, "plain text", None)
            .unwrap_err()
            .contains("not a sealed value"));
    }
}

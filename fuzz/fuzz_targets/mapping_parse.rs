//! The apps-mapping parser on arbitrary input: the bytes are split on 0x1F (ASCII unit
//! separator) into at most three parts, given to `mapping::parse` as `APIKEYROTATIONAPPS`,
//! `APIKEYROTATIONAPPS2` and `APIKEYROTATIONAPPS3`. It must never panic or hang, and what it
//! returns must keep its contract: a mapping with at least one target, or errors that each name
//! one of the settings it was given.
#![no_main]

use apikey_rotator::azure::cloud::Cloud;
use apikey_rotator::mapping;
use apikey_rotator::settings::MAPPING_SETTINGS;
use libfuzzer_sys::fuzz_target;

/// Says yes to some names only, so both branches of the header-auth and connection-string
/// checks are reached: the sample's two settings, and any name of even length.
fn setting_exists(name: &str) -> bool {
    name == "APPAPI_SECRET_REFERENCEAPI_ADMIN_TOKEN"
        || name == "APPCS_PARTNERS_CONNECTION_STRING"
        || name.len() % 2 == 0
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<(String, String)> = text
        .splitn(MAPPING_SETTINGS.len(), '\u{1f}')
        .zip(MAPPING_SETTINGS)
        .map(|(part, setting)| (setting.to_string(), part.to_string()))
        .collect();
    match mapping::parse(&parts, &Cloud::public(), &setting_exists) {
        Ok(m) => {
            assert!(m.target_count() > 0, "an accepted mapping has a target");
            assert!(!m.apim_app_names().is_empty());
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a rejection names a problem");
            for e in &errors.0 {
                assert!(
                    parts.iter().any(|(s, _)| *s == e.setting),
                    "error for a setting that was not given: {e}"
                );
                assert!(!e.path.is_empty() && !e.message.is_empty(), "{e}");
            }
        }
    }
});

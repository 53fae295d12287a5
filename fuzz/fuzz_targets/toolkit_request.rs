//! A ToolkitApp request body on arbitrary input: `parse_request` (strict JSON: duplicate keys
//! refused) and `json::from_slice` may not panic or hang; an accepted request has a trimmed,
//! non-empty `appName` without control characters; whatever strict JSON accepts, serde_json
//! accepts as the same value; errors are 400s and stay short.
#![no_main]

use apikey_rotator::json;
use apikey_rotator::toolkit::request::{parse_request, MAX_APP_NAME_CHARS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(r) => {
            assert!(!r.app_name.is_empty());
            assert_eq!(r.app_name.trim(), r.app_name);
            assert!(r.app_name.chars().count() <= MAX_APP_NAME_CHARS);
            assert!(!r.app_name.chars().any(char::is_control));
        }
        Err(e) => {
            // InvalidInput is the ToolkitApp's 400 (functions::ApiError).
            assert_eq!(e.kind(), apikey_rotator::error::ErrorKind::InvalidInput);
            assert!(e.to_string().len() < 1024, "errors stay short");
        }
    }
    if let Ok(strict) = json::from_slice(data) {
        let loose: serde_json::Value = serde_json::from_slice(data).expect("serde_json accepts it too");
        assert_eq!(strict, loose);
    }
});

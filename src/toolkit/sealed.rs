//! Sealed company details (`COMPANYDETAILS`, PRODUCT.md §6).
//!
//! Envelope: `v1.` + base64url-no-pad(12-byte nonce || AES-256-GCM ciphertext and tag). The key
//! is HKDF-SHA256 over the 16 bytes of `TOOLKITUUID`, so whoever holds the UUID can unseal, and a
//! different UUID fails authentication instead of producing garbage.

use super::policy::RenewalPolicy;
use super::registry::{self, IssuerDetails};
use crate::error::{Error, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;

const PREFIX: &str = "v1.";
const HKDF_SALT: &[u8] = b"apikey-rotator/companydetails/v1";
const HKDF_INFO: &[u8] = b"aes-256-gcm key";
const AAD: &[u8] = b"v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

const NOT_SEALED: &str =
    "COMPANYDETAILS: not a sealed value (expected the output of `apikey-rotator seal`)";
/// The message when the UUID does not open the envelope (or the envelope was altered).
pub const INCORRECT_UUID: &str = "Incorrect Toolkit UUID";

/// The company details once unsealed. `Debug` never shows the private key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CompanyDetails {
    /// The company's display name.
    pub company: String,
    /// The API manager that issues the keys, and how to reach it.
    pub issuer: IssuerDetails,
    /// When to renew and how long new keys live.
    #[serde(default)]
    pub policy: RenewalPolicy,
    /// The function app these details are restricted to, if any.
    pub bound_to: Option<BoundTo>,
}

/// Restricts the details to one function app.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BoundTo {
    /// The `WEBSITE_SITE_NAME` the details may be used under.
    pub site_name: String,
}

fn cipher(uuid: &str) -> Result<Aes256Gcm> {
    let uuid = uuid::Uuid::parse_str(uuid.trim()).map_err(|_| {
        Error::config(
            "TOOLKITUUID: not a UUID; expected the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
        )
    })?;
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(HKDF_SALT), uuid.as_bytes());
    let mut key = [0u8; 32];
    hk.expand(HKDF_INFO, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let cipher = Aes256Gcm::new_from_slice(&key).expect("key is 32 bytes");
    zeroize::Zeroize::zeroize(&mut key);
    Ok(cipher)
}

/// Seals `plaintext` (the company-details JSON) under `uuid`, returning the `COMPANYDETAILS`
/// value. Fails when `uuid` is not a UUID. Does not validate the plaintext: see [`parse_details`].
pub fn seal(uuid: &str, plaintext: &[u8]) -> Result<String> {
    let cipher = cipher(uuid)?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: AAD,
            },
        )
        .map_err(|_| Error::unexpected("COMPANYDETAILS: encryption failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ciphertext);
    Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
}

/// Unseals `sealed` with `uuid` and parses and validates the details.
///
/// Errors (all [`crate::error::ErrorKind::ConfigInvalid`]): "Incorrect Toolkit UUID" when the
/// UUID does not open it or it was altered; "not a sealed value" when it is not an envelope;
/// `COMPANYDETAILS: <problem>` when the JSON inside is invalid.
pub fn open(uuid: &str, sealed: &str) -> Result<CompanyDetails> {
    let bytes = sealed
        .trim()
        .strip_prefix(PREFIX)
        .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
        .filter(|b| b.len() >= NONCE_LEN + TAG_LEN)
        .ok_or_else(|| Error::config(NOT_SEALED))?;
    let cipher = cipher(uuid)?;
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let mut plaintext = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: AAD,
            },
        )
        .map_err(|_| Error::config(INCORRECT_UUID))?;
    let details = parse_details(&plaintext);
    zeroize::Zeroize::zeroize(&mut plaintext);
    details
}

/// Parses and validates company-details JSON (what `seal` should check before sealing).
///
/// Errors name the field's path and what was expected (`COMPANYDETAILS:
/// issuer.serviceAccountKey.private_key: expected a string, found an object`), never the
/// value found there: a service-account key pasted as a string, or a PEM in the wrong field,
/// must not end up in a CI log.
pub fn parse_details(json: &[u8]) -> Result<CompanyDetails> {
    let bad = |what: String| Error::config(format!("COMPANYDETAILS: {what}"));
    // serde_json's syntax errors give a position and never quote the text.
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
        bad(format!(
            "not valid JSON ({e}); expected the company-details object"
        ))
    })?;
    let details: CompanyDetails =
        serde_path_to_error::deserialize(&value).map_err(|e| bad(field_error(&value, e)))?;
    details.validate()?;
    Ok(details)
}

/// `path: what was expected` for a deserialization error. The issuer is an internally tagged
/// enum, which serde reads from a buffer that loses the path inside it, so an error there is
/// found again by reading the issuer's fields on their own.
fn field_error(
    value: &serde_json::Value,
    e: serde_path_to_error::Error<serde_json::Error>,
) -> String {
    if e.path().to_string() == "issuer" {
        if let Some((type_name, fields)) = value
            .get("issuer")
            .and_then(|i| i.as_object())
            .and_then(|i| Some((i.get("type")?.as_str()?, i)))
        {
            let mut fields = fields.clone();
            fields.remove("type");
            let fields = serde_json::Value::Object(fields);
            if let Some(inner) = registry::fields_error(type_name, &fields) {
                let inner_path = object_path(&inner);
                let at = if inner_path == "." {
                    "issuer".to_string()
                } else {
                    format!("issuer.{inner_path}")
                };
                return format!("{at}: {}", without_values(&inner.into_inner().to_string()));
            }
        }
    }
    let path = object_path(&e);
    let message = without_values(&e.into_inner().to_string());
    if path == "." {
        message
    } else {
        format!("{path}: {message}")
    }
}

/// The error's path; for an unknown field, the path of the object holding it (the message
/// names the field).
fn object_path(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    if !e.inner().to_string().starts_with("unknown field ") {
        return path;
    }
    match path.rsplit_once('.') {
        Some((parent, _)) => parent.to_string(),
        None => ".".to_string(),
    }
}

/// serde's message with the rejected value left out: `invalid type: string "-----BEGIN
/// PRIVATE KEY...", expected u32` becomes `expected a whole number, found a string`. Field
/// names stay (they are the JSON's keys, which a typo check needs), shortened when long.
pub(crate) fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // The found value may itself contain ", expected ": the real separator is the last.
            if let Some(at) = rest.rfind(", expected ") {
                let found = found_kind(&rest[..at]);
                let expected = expected_kind(&rest[at + ", expected ".len()..]);
                return format!("expected {expected}, found {found}");
            }
            return "invalid value".to_string();
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let expected = rest.rsplit_once(", expected ").map(|(_, e)| e);
        return match expected {
            Some(e) => format!("unknown type; expected {e}"),
            None => "unknown type".to_string(),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, tail)) = rest.split_once('`') {
            let name: String = if name.chars().count() > 40 {
                name.chars().take(40).chain("…".chars()).collect()
            } else {
                name.to_string()
            };
            return format!("unknown field `{name}`{tail}");
        }
    }
    // Anything else quoting a string (a message this code does not know) loses the quote.
    match message.split_once('"') {
        Some((head, _)) => format!("{}…", head.trim_end()),
        None => message.to_string(),
    }
}

/// What serde's `Unexpected` names, without its value: `string "..."` is "a string".
fn found_kind(unexpected: &str) -> &'static str {
    let kind = unexpected
        .split(['"', '`'])
        .next()
        .unwrap_or_default()
        .trim();
    match kind {
        "string" => "a string",
        "integer" | "floating point" => "a number",
        "boolean" => "a boolean",
        "character" => "a character",
        "sequence" => "an array",
        "map" => "an object",
        "unit value" | "null" | "Option value" => "null",
        _ => "another kind of value",
    }
}

/// serde's expectation in words: `u32` is "a whole number", `struct X` "an object".
fn expected_kind(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" | "f32" | "f64" => "a number".into(),
        e if e.starts_with("struct ") || e.starts_with("internally tagged enum ") => {
            "an object".into()
        }
        e => e.to_string(),
    }
}

impl CompanyDetails {
    /// Checks what serde cannot: non-empty names, URL schemes, the policy, the private key.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |path: &str, what: &str| Err(Error::config(format!("COMPANYDETAILS: {path}: {what}")));
        if self.company.trim().is_empty() {
            return bad("company", "must not be empty");
        }
        if let Err(e) = self.policy.validate() {
            return bad("policy", e.message());
        }
        if let Some(b) = &self.bound_to {
            if b.site_name.trim().is_empty() {
                return bad("boundTo.siteName", "must not be empty");
            }
        }
        if let Err(p) = self.issuer.config().validate() {
            return bad(&format!("issuer.{}", p.path), &p.problem);
        }
        Ok(())
    }
}

impl CompanyDetails {
    /// What the details contain, for `apikey-rotator seal --check`, with the secrets redacted:
    /// the private key shows only its kind, the client e-mail its first two characters and its
    /// domain, the key and client IDs their last characters (see [`crate::secret::redact`]).
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::json!({
            "company": self.company,
            "issuer": self.issuer.config().redacted(),
            "policy": {
                "renewBeforeExpiryDays": self.policy.renew_before_expiry_days,
                "newKeyLifetimeDays": self.policy.new_key_lifetime_days,
            },
            "boundTo": self.bound_to.as_ref().map(|b| serde_json::json!({ "siteName": b.site_name })),
        })
    }
}

/// Refuses location-bound details outside their function app (`site_name` is
/// `WEBSITE_SITE_NAME`).
pub fn check_location(details: &CompanyDetails, site_name: Option<&str>) -> Result<()> {
    let Some(bound) = &details.bound_to else {
        return Ok(());
    };
    // App Service site names are case-insensitive.
    if site_name.is_some_and(|s| s.eq_ignore_ascii_case(bound.site_name.trim())) {
        return Ok(());
    }
    let here = match site_name {
        Some(s) => format!("'{s}'"),
        None => "unset".to_string(),
    };
    Err(Error::config(format!(
        "These company details are location-bound to function app '{}' and cannot be used here (WEBSITE_SITE_NAME is {here})",
        bound.site_name
    )))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::ErrorKind;

    pub(crate) const UUID: &str = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

    // The fixture's issuer is Apigee's (the one issuer so far).
    pub(crate) use crate::toolkit::apigee::config::tests::{test_keys, test_pem};

    pub(crate) fn details_json(extra: serde_json::Value) -> serde_json::Value {
        let mut v = serde_json::json!({
            "company": "Contoso",
            "issuer": crate::toolkit::apigee::config::tests::issuer_json(),
            "policy": { "renewBeforeExpiryDays": 45, "newKeyLifetimeDays": 90 }
        });
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in extra {
                obj.insert(k.clone(), val.clone());
            }
        }
        v
    }

    fn sealed(v: &serde_json::Value) -> String {
        seal(UUID, v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn round_trip_in_any_uuid_spelling() {
        let s = sealed(&details_json(serde_json::json!({})));
        assert!(s.starts_with("v1."));
        let d = open(&UUID.to_uppercase(), &s).unwrap();
        assert_eq!(d.company, "Contoso");
        let issuer = d.issuer.config().redacted();
        assert_eq!(issuer["organization"], "contoso-prd");
        assert_eq!(issuer["endpoint"], "https://apigee.googleapis.com/");
        assert_eq!(d.policy.renew_before_expiry_days, 45);
        let simple = UUID.replace('-', "");
        assert!(open(&simple, &s).is_ok());
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let d = parse_details(details_json(serde_json::json!({})).to_string().as_bytes()).unwrap();
        let dbg = format!("{d:?}");
        assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
        assert!(dbg.contains("Secret(****)"));
    }

    #[test]
    fn wrong_uuid_says_incorrect_toolkit_uuid() {
        let s = sealed(&details_json(serde_json::json!({})));
        let e = open("00000000-0000-4000-8000-000000000000", &s).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConfigInvalid);
        assert_eq!(e.to_string(), "Incorrect Toolkit UUID");
    }

    #[test]
    fn tampered_ciphertext_is_refused() {
        let s = sealed(&details_json(serde_json::json!({})));
        let mut bytes = URL_SAFE_NO_PAD.decode(&s[3..]).unwrap();
        let last = bytes.len() - 20;
        bytes[last] ^= 1;
        let tampered = format!("v1.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(
            open(UUID, &tampered).unwrap_err().to_string(),
            INCORRECT_UUID
        );
    }

    #[test]
    fn not_an_envelope() {
        for bad in ["", "v2.AAAA", "{\"company\":1}", "v1.!!!", "v1.AAAA"] {
            let e = open(UUID, bad).unwrap_err();
            assert_eq!(e.to_string(), NOT_SEALED, "{bad}");
        }
    }

    #[test]
    fn seal_and_open_refuse_a_non_uuid() {
        let e = seal("not-a-uuid", b"{}").unwrap_err();
        assert!(e.to_string().starts_with("TOOLKITUUID: not a UUID"), "{e}");
    }

    #[test]
    fn bad_json_inside_names_the_problem() {
        let mut v = details_json(serde_json::json!({ "colour": "blue" }));
        let e = open(UUID, &sealed(&v)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("COMPANYDETAILS: unknown field `colour`"),
            "{e}"
        );

        v = details_json(serde_json::json!({}));
        v["issuer"]["organisation"] = "typo".into();
        let e = open(UUID, &sealed(&v)).unwrap_err();
        assert!(
            e.to_string().contains("unknown field `organisation`"),
            "{e}"
        );

        v = details_json(serde_json::json!({}));
        v["issuer"]["serviceAccountKey"]["private_key_idd"] = "typo".into();
        let e = open(UUID, &sealed(&v)).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "COMPANYDETAILS: issuer.serviceAccountKey: unknown field `private_key_idd`"
            ),
            "{e}"
        );

        v = details_json(serde_json::json!({}));
        v["issuer"]
            .as_object_mut()
            .unwrap()
            .remove("developerEmail");
        let e = open(UUID, &sealed(&v)).unwrap_err();
        assert!(
            e.to_string().contains("missing field `developerEmail`"),
            "{e}"
        );
        v = details_json(serde_json::json!({}));
        v["issuer"]["serviceAccountKey"]["private_key"] = "nope".into();
        let e = open(UUID, &sealed(&v)).unwrap_err();
        assert!(
            e.to_string()
                .contains("private_key: not an RSA private key"),
            "{e}"
        );

        v = details_json(
            serde_json::json!({ "policy": { "renewBeforeExpiryDays": 90, "newKeyLifetimeDays": 30 } }),
        );
        let e = open(UUID, &sealed(&v)).unwrap_err();
        assert!(e.to_string().starts_with("COMPANYDETAILS: policy: "), "{e}");

        v = details_json(serde_json::json!({}));
        v["issuer"]["type"] = "apigeeEdge".into();
        let e = open(UUID, &sealed(&v)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "COMPANYDETAILS: issuer.type: unknown type; expected `apigeeX`"
        );
        assert!(!e.to_string().contains("apigeeEdge"), "{e}");

        v = details_json(serde_json::json!({}));
        v["issuer"]["serviceAccountKey"]["token_uri"] = "http://evil.example/token".into();
        let e = open(UUID, &sealed(&v)).unwrap_err();
        assert!(
            e.to_string().contains("token_uri: expected an https URL"),
            "{e}"
        );
    }

    /// Issue 13: no error of sealing or unsealing quotes a value. A marker sits in every
    /// field that can hold one; then every field in turn gets a value of the wrong type (the
    /// marker as a string, a PEM, a number, an array, an object, ...), and neither the marker
    /// nor the private key appears in any error, for `seal`'s check and for unsealing at run
    /// time. Errors about a field name its path.
    #[test]
    fn no_error_quotes_a_value() {
        const MARKER: &str = "zq7marker";
        let mut base = details_json(serde_json::json!({
            "boundTo": { "siteName": format!("func-{MARKER}") },
            "company": format!("Contoso {MARKER}"),
        }));
        let issuer = &mut base["issuer"];
        issuer["organization"] = format!("org-{MARKER}").into();
        issuer["developerEmail"] = format!("{MARKER}@contoso.com").into();
        issuer["endpoint"] = format!("https://{MARKER}.example/").into();
        let key = &mut issuer["serviceAccountKey"];
        for field in [
            "project_id",
            "private_key_id",
            "client_id",
            "universe_domain",
        ] {
            key[field] = format!("{field}-{MARKER}").into();
        }
        key["client_email"] = format!("{MARKER}@contoso.iam.gserviceaccount.com").into();
        key["token_uri"] = format!("https://{MARKER}.example/token").into();
        key["auth_uri"] = format!("https://{MARKER}.example/auth").into();
        assert!(parse_details(base.to_string().as_bytes()).is_ok());
        let pem = test_pem();
        let pem_line = pem.lines().nth(1).unwrap().to_string();

        fn pointers(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
            if let Some(obj) = v.as_object() {
                for (k, child) in obj {
                    let p = format!("{at}/{k}");
                    out.push(p.clone());
                    pointers(child, p, out);
                }
            }
        }
        let mut paths = Vec::new();
        pointers(&base, String::new(), &mut paths);
        assert!(paths.len() > 20, "{paths:?}");
        let wrong = [
            serde_json::json!(MARKER),
            serde_json::json!(format!("{pem}{MARKER}")),
            serde_json::json!(base["issuer"]["serviceAccountKey"].to_string()),
            serde_json::json!(7),
            serde_json::json!(-1.5),
            serde_json::json!(true),
            serde_json::json!(null),
            serde_json::json!([MARKER, pem]),
            serde_json::json!({ "x": MARKER, "y": pem }),
        ];
        let mut errors = 0;
        for path in &paths {
            for replacement in &wrong {
                let mut v = base.clone();
                *v.pointer_mut(path).unwrap() = replacement.clone();
                let text = v.to_string();
                let sealed = seal(UUID, text.as_bytes()).unwrap();
                for result in [parse_details(text.as_bytes()), open(UUID, &sealed)] {
                    let Err(e) = result else { continue };
                    errors += 1;
                    let e = e.to_string();
                    assert!(
                        !e.contains(MARKER) && !e.contains(&pem_line) && !e.contains("PRIVATE KEY"),
                        "{path} = {replacement}: the error quotes the value: {e}"
                    );
                    // The field is named: its own path, or its parent's (an unknown or
                    // missing field, a check of the whole object).
                    let dotted = path.trim_start_matches('/').replace('/', ".");
                    let parent = dotted.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
                    assert!(
                        e.contains(&format!("{dotted}:"))
                            || e.contains(&format!("{parent}:"))
                            || parent.is_empty(),
                        "{path} = {replacement}: the error does not name the field: {e}"
                    );
                }
            }
        }
        assert!(errors > paths.len() * 4, "only {errors} errors");
        // The message for a key pasted as a string, as the issue reported it.
        let mut v = base.clone();
        v["issuer"]["serviceAccountKey"]["private_key"] = serde_json::json!(7);
        assert_eq!(
            parse_details(v.to_string().as_bytes()).unwrap_err().to_string(),
            "COMPANYDETAILS: issuer.serviceAccountKey.private_key: expected a string, found a number"
        );
        v["issuer"]["serviceAccountKey"] = base["issuer"]["serviceAccountKey"].to_string().into();
        assert_eq!(
            parse_details(v.to_string().as_bytes())
                .unwrap_err()
                .to_string(),
            "COMPANYDETAILS: issuer.serviceAccountKey: expected an object, found a string"
        );
        v = base.clone();
        v["policy"]["newKeyLifetimeDays"] = pem.clone().into();
        assert_eq!(
            parse_details(v.to_string().as_bytes())
                .unwrap_err()
                .to_string(),
            "COMPANYDETAILS: policy.newKeyLifetimeDays: expected a whole number, found a string"
        );
    }

    #[test]
    fn serde_messages_lose_their_values() {
        for (message, expected) in [
            (
                r#"invalid type: string "-----BEGIN PRIVATE KEY-----, expected u32", expected u32"#,
                "expected a whole number, found a string",
            ),
            (
                "invalid value: integer `5`, expected a URL",
                "expected a URL, found a number",
            ),
            (
                "unknown variant `secret`, expected `apigeeX`",
                "unknown type; expected `apigeeX`",
            ),
            ("missing field `company`", "missing field `company`"),
            (r#"something "quoted" here"#, "something…"),
        ] {
            assert_eq!(without_values(message), expected, "{message}");
        }
    }

    #[test]
    fn location_binding() {
        let v = details_json(serde_json::json!({ "boundTo": { "siteName": "func-prd" } }));
        let d = open(UUID, &sealed(&v)).unwrap();
        assert!(check_location(&d, Some("func-prd")).is_ok());
        assert!(check_location(&d, Some("FUNC-PRD")).is_ok());
        let e = check_location(&d, Some("func-dev")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConfigInvalid);
        assert_eq!(
            e.to_string(),
            "These company details are location-bound to function app 'func-prd' and cannot be used here (WEBSITE_SITE_NAME is 'func-dev')"
        );
        let e = check_location(&d, None).unwrap_err();
        assert!(
            e.to_string().ends_with("(WEBSITE_SITE_NAME is unset)"),
            "{e}"
        );

        let unbound = open(UUID, &sealed(&details_json(serde_json::json!({})))).unwrap();
        assert!(check_location(&unbound, None).is_ok());
    }
}

//! Apigee's part of the sealed company details (`issuer` with `"type": "apigeeX"`): the
//! organization, the developer, and the Google service-account key, with the checks serde
//! cannot make. Field names and every error message are those of the sealed format
//! (PRODUCT.md §6); an error names the field, never its value.

use crate::error::Result;
use crate::secret::Secret;
use crate::toolkit::issuer::{ConfigProblem, IssuerConfig};
use crate::toolkit::Issuer;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;

/// Google's OAuth token endpoint, used when a service-account key names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The Apigee X management API.
pub const DEFAULT_APIGEE_ENDPOINT: &str = "https://apigee.googleapis.com";

/// How to reach an Apigee X / hybrid organization.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApigeeXConfig {
    /// Management API base URL; `None` means [`DEFAULT_APIGEE_ENDPOINT`].
    #[serde(default, deserialize_with = "optional_url")]
    pub endpoint: Option<url::Url>,
    /// The Apigee organization.
    pub organization: String,
    /// The developer that owns the apps whose keys are rotated.
    pub developer_email: String,
    /// The Google service-account key JSON, as downloaded.
    pub service_account_key: ServiceAccountKey,
}

impl ApigeeXConfig {
    /// The management API base URL, defaulted.
    pub fn endpoint(&self) -> url::Url {
        self.endpoint.clone().unwrap_or_else(|| {
            url::Url::parse(DEFAULT_APIGEE_ENDPOINT).expect("constant URL is valid")
        })
    }
}

/// A Google service-account key file. Field names are Google's (snake_case).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountKey {
    /// The service account's e-mail, the JWT issuer.
    pub client_email: String,
    /// The RSA private key in PEM form; never printed.
    #[serde(deserialize_with = "secret_string")]
    pub private_key: Secret,
    /// Identifies the key to Google; sent as the JWT `kid`.
    pub private_key_id: Option<String>,
    /// Where the signed assertion is exchanged for a token (honoured, for private endpoints).
    #[serde(default = "default_token_uri", deserialize_with = "url")]
    pub token_uri: url::Url,
    /// Always `service_account` in Google's files.
    #[serde(rename = "type")]
    pub key_type: Option<String>,
    /// Google project of the service account.
    pub project_id: Option<String>,
    /// Numeric ID of the service account.
    pub client_id: Option<String>,
    /// Google's interactive authorization URI (unused).
    pub auth_uri: Option<String>,
    /// Google's certificate URL (unused).
    pub auth_provider_x509_cert_url: Option<String>,
    /// The service account's certificate URL (unused).
    pub client_x509_cert_url: Option<String>,
    /// Google universe, `googleapis.com` by default (unused).
    pub universe_domain: Option<String>,
}

fn default_token_uri() -> url::Url {
    url::Url::parse(DEFAULT_TOKEN_URI).expect("constant URL is valid")
}

// The message names what is wrong, never the value (it may be a pasted secret).
fn url<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<url::Url, D::Error> {
    let s = String::deserialize(d)?;
    url::Url::parse(&s).map_err(|e| serde::de::Error::custom(format!("not a URL ({e})")))
}

fn optional_url<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<url::Url>, D::Error> {
    url(d).map(Some)
}

fn secret_string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::new)
}

impl IssuerConfig for ApigeeXConfig {
    fn validate(&self) -> std::result::Result<(), ConfigProblem> {
        let bad = |path: &str, what: &str| Err(ConfigProblem::new(path, what));
        let c = self;
        if c.organization.trim().is_empty() {
            return bad("organization", "must not be empty");
        }
        if c.developer_email.trim().is_empty() {
            return bad("developerEmail", "must not be empty");
        }
        if !secure_url(&c.endpoint()) {
            return bad("endpoint", "expected an https URL");
        }
        let k = &c.service_account_key;
        if k.client_email.trim().is_empty() {
            return bad("serviceAccountKey.client_email", "must not be empty");
        }
        if !secure_url(&k.token_uri) {
            return bad("serviceAccountKey.token_uri", "expected an https URL");
        }
        if k.key_type
            .as_deref()
            .is_some_and(|t| t != "service_account")
        {
            return bad(
                "serviceAccountKey.type",
                "expected \"service_account\" (a Google service-account key file)",
            );
        }
        if jsonwebtoken::EncodingKey::from_rsa_pem(k.private_key.expose().as_bytes()).is_err() {
            return bad(
                "serviceAccountKey.private_key",
                "not an RSA private key in PEM form",
            );
        }
        Ok(())
    }

    /// The private key shows only its kind, the client e-mail its first two characters and
    /// its domain, the key and client IDs their last characters (see [`crate::secret::redact`]).
    fn redacted(&self) -> serde_json::Value {
        let k = &self.service_account_key;
        let private_key =
            match jsonwebtoken::EncodingKey::from_rsa_pem(k.private_key.expose().as_bytes()) {
                Ok(_) => "RSA private key in PEM form (redacted)",
                Err(_) => "not an RSA private key (redacted)",
            };
        serde_json::json!({
            "type": "apigeeX",
            "endpoint": self.endpoint().as_str(),
            "organization": self.organization,
            "developerEmail": self.developer_email,
            "serviceAccountKey": {
                "type": k.key_type,
                "project_id": k.project_id,
                "client_email": redact_email(&k.client_email),
                "client_id": k.client_id.as_deref().map(crate::secret::redact),
                "private_key_id": k.private_key_id.as_deref().map(crate::secret::redact),
                "private_key": private_key,
                "token_uri": k.token_uri.as_str(),
            },
        })
    }

    fn describe(&self) -> String {
        format!(
            "Apigee X organization {} (developer {})",
            self.organization, self.developer_email
        )
    }

    fn connect(&self, http: reqwest::Client) -> Result<Arc<dyn Issuer>> {
        Ok(Arc::new(super::ApigeeX::new(self, http)?))
    }
}

/// `ro****@contoso.iam.gserviceaccount.com`: enough to recognise the account, not to name it.
fn redact_email(email: &str) -> String {
    match email.split_once('@') {
        Some((user, domain)) => {
            let head: String = user.chars().take(2).collect();
            format!("{head}****@{domain}")
        }
        None => crate::secret::redact(email),
    }
}

/// The private key leaves the process only as a JWT signature, and the token comes back over
/// this URL, so plain http is allowed only to loopback (tests, local doubles).
fn secure_url(url: &url::Url) -> bool {
    url.scheme() == "https" || (url.scheme() == "http" && crate::settings::is_loopback(url))
}

#[cfg(test)]
pub(crate) mod tests {
    /// A test-only RSA key pair (private PEM, public PEM), generated once per test process.
    pub(crate) fn test_keys() -> &'static (String, String) {
        use std::sync::OnceLock;
        // RSA generation is slow in debug builds; one key serves every test.
        static KEYS: OnceLock<(String, String)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA keygen");
            (kp.serialize_pem(), kp.public_key_pem())
        })
    }

    pub(crate) fn test_pem() -> String {
        test_keys().0.clone()
    }

    /// A valid `issuer` object of the sealed details, with [`test_keys`]' private key.
    pub(crate) fn issuer_json() -> serde_json::Value {
        serde_json::json!({
            "type": "apigeeX",
            "organization": "contoso-prd",
            "developerEmail": "integrations@contoso.com",
            "serviceAccountKey": {
                "type": "service_account",
                "project_id": "contoso",
                "private_key_id": "kid-1",
                "private_key": test_pem(),
                "client_email": "rotator@contoso.iam.gserviceaccount.com",
                "client_id": "123",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": "https://oauth2.googleapis.com/token",
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/x",
                "universe_domain": "googleapis.com"
            }
        })
    }

    /// The checks name paths inside `issuer`; the redacted form and the description keep the
    /// private key and the full client e-mail out.
    #[test]
    fn checks_redaction_and_description() {
        use super::*;
        let read = |v: serde_json::Value| {
            let mut v = v;
            v.as_object_mut().unwrap().remove("type");
            serde_json::from_value::<ApigeeXConfig>(v).unwrap()
        };
        let c = read(issuer_json());
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.describe(),
            "Apigee X organization contoso-prd (developer integrations@contoso.com)"
        );
        let r = c.redacted().to_string();
        assert!(!r.contains("PRIVATE KEY") && !r.contains("rotator@"), "{r}");
        assert!(r.starts_with(r#"{"type":"apigeeX","#), "{r}");
        let mut v = issuer_json();
        v["serviceAccountKey"]["token_uri"] = "http://evil.example/token".into();
        assert_eq!(
            read(v).validate(),
            Err(ConfigProblem::new(
                "serviceAccountKey.token_uri",
                "expected an https URL"
            ))
        );
    }
}

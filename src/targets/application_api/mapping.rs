//! The `applicationApis` section: a consumer's own HTTP API, the name under which it stores
//! a key, and how the rotator authenticates to it.

use crate::mapping::walk::{join, name, plain_url, Place, Walked, Walker};
use crate::mapping::Group;
use serde_json::Value;
use url::Url;

/// One `applicationApis` entry: a consumer's own HTTP API that stores a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationApiMapping {
    /// The API's URL (https, or http on a loopback address).
    pub http_url: url::Url,
    /// The name under which the consumer stores the key.
    pub app_name: String,
    /// The API-manager app whose key it is.
    pub apim_app_name: String,
    /// How the rotator authenticates to the API.
    pub auth: ApiAuth,
}

/// Authentication of the rotator to an application API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAuth {
    /// No authentication.
    None,
    /// A bearer token of the rotator's managed identity for `scope` (e.g. `api://x/.default`).
    ManagedIdentity {
        /// The token scope.
        scope: String,
    },
    /// A header whose value is read from an app setting.
    Header {
        /// The header name.
        name: String,
        /// The app setting holding the header value (checked to exist when parsing).
        value_setting: String,
    },
}

/// An entry is a group of one target.
impl Group for ApplicationApiMapping {
    fn apim_app_names(&self) -> Vec<&str> {
        vec![self.apim_app_name.as_str()]
    }

    fn only_app(&self, apim_app_name: &str) -> Option<Self> {
        (self.apim_app_name == apim_app_name).then(|| self.clone())
    }
}

/// Reads one `applicationApis` entry at `path`; the same URL and app name is the same target.
pub(super) fn read(w: &mut Walker, v: &Value, path: &str) -> Option<Walked> {
    let api = application_api(w, v, path)?;
    let place = Place::new(
        path.to_string(),
        api.http_url.to_string(),
        api.app_name.clone(),
    );
    Some(Walked::new(api, vec![place]))
}

fn application_api(w: &mut Walker, v: &Value, path: &str) -> Option<ApplicationApiMapping> {
    let obj = w.fields(v, path, &["httpURL", "appName", "apimAppName", "auth"])?;
    let http_url = w.required_string(obj, path, "httpURL", http_url);
    let app_name = w.required_string(obj, path, "appName", name);
    let apim_app_name = w.required_string(obj, path, "apimAppName", name);
    let auth = match obj.get("auth") {
        None => Some(ApiAuth::None),
        Some(v) => auth(w, v, &join(path, "auth")),
    };
    Some(ApplicationApiMapping {
        http_url: http_url?,
        app_name: app_name?,
        apim_app_name: apim_app_name?,
        auth: auth?,
    })
}

fn auth(w: &mut Walker, v: &Value, path: &str) -> Option<ApiAuth> {
    let obj = w.object(v, path)?;
    let kind = w.required_string(obj, path, "type", |s| match s {
        "none" | "managedIdentity" | "header" => Ok(s.to_string()),
        _ => Err(format!(
            "expected none, managedIdentity or header, got \"{s}\""
        )),
    });
    // With an unknown type, fields are still checked against those of every type.
    let allowed: &[&str] = match kind.as_deref() {
        Some("none") => &["type"],
        Some("managedIdentity") => &["type", "scope"],
        Some("header") => &["type", "name", "valueSetting"],
        _ => &["type", "scope", "name", "valueSetting"],
    };
    w.known_fields(obj, path, allowed);
    match kind?.as_str() {
        "none" => Some(ApiAuth::None),
        "managedIdentity" => {
            let cloud = w.cloud();
            let scope = w.required_string(obj, path, "scope", |s| {
                let scope = scope(s)?;
                match cloud.protected_audience(&scope) {
                    Some(service) => Err(format!(
                        "is an audience of {service}, where the rotator itself holds roles: its token would let the application act as the rotator there; expected the application's own scope, such as api://<application-id>/.default"
                    )),
                    None => Ok(scope),
                }
            })?;
            Some(ApiAuth::ManagedIdentity { scope })
        }
        _ => {
            let header = w.required_string(obj, path, "name", header_name);
            let value_setting =
                w.required_string(obj, path, "valueSetting", header_secret_setting)?;
            if !w.setting_exists(&value_setting) {
                w.error(
                    &join(path, "valueSetting"),
                    format!("app setting {value_setting} is not set"),
                );
                return None;
            }
            Some(ApiAuth::Header {
                name: header?,
                value_setting,
            })
        }
    }
}

fn http_url(s: &str) -> Result<Url, String> {
    let url = plain_url(s)?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if crate::settings::is_loopback(&url) => Ok(url),
        _ => {
            Err("only https URLs are accepted (http is allowed for loopback addresses only)".into())
        }
    }
}

fn scope(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        Err("expected one scope without spaces, such as api://<application-id>/.default".into())
    } else {
        Ok(s.to_string())
    }
}

/// The prefix every app setting that holds an application API's header secret must have.
///
/// An allow-list rather than a deny-list: the rotator's own settings (`COMPANYDETAILS` with
/// `TOOLKITUUID` unseal the API manager's credentials), the platform's (`IDENTITY_HEADER`,
/// `AzureWebJobsStorage`, `WEBSITE_*`, `AZURE_CLIENT_SECRET`) and connection strings the mapping
/// names elsewhere can never be sent to an application, whatever settings are added later.
pub const HEADER_SECRET_PREFIX: &str = "APPAPI_SECRET_";

fn header_secret_setting(s: &str) -> Result<String, String> {
    let setting = name(s)?;
    if !setting.starts_with(HEADER_SECRET_PREFIX) || setting.len() == HEADER_SECRET_PREFIX.len() {
        return Err(format!(
            "\"{setting}\" cannot hold a header secret: only app settings named {HEADER_SECRET_PREFIX}<name> are sent to application APIs (so no setting of the rotator or the platform can be), e.g. {HEADER_SECRET_PREFIX}{setting}"
        ));
    }
    Ok(setting)
}

fn header_name(s: &str) -> Result<String, String> {
    match reqwest::header::HeaderName::from_bytes(s.as_bytes()) {
        Ok(_) => Ok(s.to_string()),
        Err(_) => Err(format!("\"{s}\" is not a valid HTTP header name")),
    }
}

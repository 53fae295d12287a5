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

#[cfg(test)]
mod tests {
    use crate::mapping::walk::tests::{one_problem_each, valid};
    use serde_json::json;

    /// Each case changes one thing in the mapping's shared valid case and expects exactly one
    /// problem.
    #[test]
    fn one_tweak_one_problem() {
        one_problem_each(
            &valid(),
            vec![
            ("/applicationApis/0/httpURL", None, "applicationApis[0].httpURL: required"),
            ("/applicationApis/0/httpURL", Some(json!(true)), "applicationApis[0].httpURL: expected a string, got boolean"),
            ("/applicationApis/0/httpURL", Some(json!("http://api.contoso.com/keys")), "applicationApis[0].httpURL: only https URLs are accepted (http is allowed for loopback addresses only)"),
            ("/applicationApis/0/httpURL", Some(json!("http://10.0.0.1/keys")), "applicationApis[0].httpURL: only https URLs are accepted"),
            ("/applicationApis/0/httpURL", Some(json!("ftp://127.0.0.1/keys")), "applicationApis[0].httpURL: only https URLs are accepted"),
            ("/applicationApis/0/httpURL", Some(json!("https://api.contoso.com/#x")), "applicationApis[0].httpURL: must not contain a #fragment"),
            ("/applicationApis/0/httpUrl", Some(json!("x")), "applicationApis[0].httpUrl: unknown field; did you mean httpURL?"),
            ("/applicationApis/0/appName", None, "applicationApis[0].appName: required"),
            ("/applicationApis/0/appName", Some(json!("")), "applicationApis[0].appName: must not be empty"),
            ("/applicationApis/0/apimAppName", Some(json!(["x"])), "applicationApis[0].apimAppName: expected a string, got array"),
            ("/applicationApis/0/auth", Some(json!("managedIdentity")), "applicationApis[0].auth: expected an object, got string"),
            ("/applicationApis/0/auth/type", None, "applicationApis[0].auth.type: required"),
            ("/applicationApis/0/auth/type", Some(json!("basic")), "applicationApis[0].auth.type: expected none, managedIdentity or header, got \"basic\""),
            ("/applicationApis/0/auth/scope", None, "applicationApis[0].auth.scope: required"),
            ("/applicationApis/0/auth/scope", Some(json!("")), "applicationApis[0].auth.scope: expected one scope without spaces"),
            ("/applicationApis/0/auth/scope", Some(json!("a b")), "applicationApis[0].auth.scope: expected one scope without spaces"),
            ("/applicationApis/0/auth/name", Some(json!("x")), "applicationApis[0].auth.name: unknown field; expected type, scope"),
            ("/applicationApis/1/auth/name", None, "applicationApis[1].auth.name: required"),
            ("/applicationApis/1/auth/name", Some(json!("x admin")), "applicationApis[1].auth.name: \"x admin\" is not a valid HTTP header name"),
            ("/applicationApis/1/auth/name", Some(json!("")), "applicationApis[1].auth.name: \"\" is not a valid HTTP header name"),
            ("/applicationApis/1/auth/valueSetting", None, "applicationApis[1].auth.valueSetting: required"),
            ("/applicationApis/1/auth/valueSetting", Some(json!("APPAPI_SECRET_MISSING")), "applicationApis[1].auth.valueSetting: app setting APPAPI_SECRET_MISSING is not set"),
            // Trust boundaries: header secrets only from settings made for them; tokens only
            // for the applications' own audiences.
            ("/applicationApis/1/auth/valueSetting", Some(json!("COMPANYDETAILS")), "applicationApis[1].auth.valueSetting: \"COMPANYDETAILS\" cannot hold a header secret: only app settings named APPAPI_SECRET_<name>"),
            ("/applicationApis/1/auth/valueSetting", Some(json!("TOOLKITUUID")), "applicationApis[1].auth.valueSetting: \"TOOLKITUUID\" cannot hold a header secret"),
            ("/applicationApis/1/auth/valueSetting", Some(json!("AZURE_CLIENT_SECRET")), "applicationApis[1].auth.valueSetting: \"AZURE_CLIENT_SECRET\" cannot hold a header secret"),
            ("/applicationApis/1/auth/valueSetting", Some(json!("IDENTITY_HEADER")), "applicationApis[1].auth.valueSetting: \"IDENTITY_HEADER\" cannot hold a header secret"),
            ("/applicationApis/1/auth/valueSetting", Some(json!("APPCS_CS")), "applicationApis[1].auth.valueSetting: \"APPCS_CS\" cannot hold a header secret"),
            ("/applicationApis/1/auth/valueSetting", Some(json!("APPAPI_SECRET_")), "applicationApis[1].auth.valueSetting: \"APPAPI_SECRET_\" cannot hold a header secret"),
            ("/applicationApis/0/auth/scope", Some(json!("https://management.azure.com/.default")), "applicationApis[0].auth.scope: is an audience of Resource Manager, where the rotator itself holds roles"),
            ("/applicationApis/0/auth/scope", Some(json!("https://vault.azure.net/.default")), "applicationApis[0].auth.scope: is an audience of Key Vault"),
            ("/applicationApis/0/auth/scope", Some(json!("https://appcs-consumers.azconfig.io/.default")), "applicationApis[0].auth.scope: is an audience of App Configuration"),
            ("/applicationApis/0/auth/scope", Some(json!("https://storage.azure.com/.default")), "applicationApis[0].auth.scope: is an audience of Storage"),
            ("/applicationApis/0/auth/scope", Some(json!("https://graph.microsoft.com/.default")), "applicationApis[0].auth.scope: is an audience of Microsoft Graph"),
            ("/applicationApis/1/auth/scope", Some(json!("s")), "applicationApis[1].auth.scope: unknown field; expected type, name, valueSetting"),
            ("/applicationApis/2/auth", Some(json!({"type": "none", "scope": "s"})), "applicationApis[2].auth.scope: unknown field; expected type"),
        ]);
    }
}

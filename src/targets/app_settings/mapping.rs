//! The `functionApps`, `webApps` and `staticWebApps` sections: a site (or one of its deployment
//! slots, or a static site) and the app settings in it that hold keys.

use crate::mapping::walk::{index, join, name, Place, Walked, Walker};
use crate::mapping::Group;
use serde_json::Value;

/// The mapping section a site group comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteSection {
    /// `functionApps`: a Function App (`Microsoft.Web/sites`, kind `functionapp`).
    FunctionApp,
    /// `webApps`: a Web App (`Microsoft.Web/sites`, kind `app`).
    WebApp,
    /// `staticWebApps`: a Static Web App (`Microsoft.Web/staticSites`).
    StaticWebApp,
}

/// One `functionApps` / `webApps` / `staticWebApps` entry: a site (or one of its deployment
/// slots, or a static site) and the app settings in it that hold keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteGroup {
    /// The section it comes from.
    pub section: SiteSection,
    /// The subscription (a GUID).
    pub subscription_id: String,
    /// The resource group.
    pub resource_group: String,
    /// The site's name.
    pub name: String,
    /// A deployment slot (never for static sites); `None` is the production slot.
    pub slot: Option<String>,
    /// The settings of this site, never empty.
    pub settings: Vec<SettingMapping>,
}

impl SiteGroup {
    /// The ARM resource path segments: `subscriptions/{sub}/resourceGroups/{rg}/providers/
    /// Microsoft.Web/sites/{name}[/slots/{slot}]`, or `.../staticSites/{name}`.
    pub fn resource_path(&self) -> Vec<&str> {
        let mut path = vec![
            "subscriptions",
            &self.subscription_id,
            "resourceGroups",
            &self.resource_group,
            "providers",
            "Microsoft.Web",
        ];
        if self.section == SiteSection::StaticWebApp {
            path.extend(["staticSites", &self.name]);
        } else {
            path.extend(["sites", &self.name]);
            if let Some(slot) = &self.slot {
                path.extend(["slots", slot]);
            }
        }
        path
    }

    /// How reports name it: `name` or `name/slot`.
    pub fn label(&self) -> String {
        match &self.slot {
            Some(slot) => format!("{}/{slot}", self.name),
            None => self.name.clone(),
        }
    }
}

/// One app setting that holds the key of an API-manager app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingMapping {
    /// The app setting's name.
    pub setting_name: String,
    /// The API-manager app whose key the setting holds.
    pub apim_app_name: String,
}

impl Group for SiteGroup {
    fn apim_app_names(&self) -> Vec<&str> {
        self.settings
            .iter()
            .map(|s| s.apim_app_name.as_str())
            .collect()
    }

    fn only_app(&self, apim_app_name: &str) -> Option<Self> {
        let settings: Vec<_> = self
            .settings
            .iter()
            .filter(|s| s.apim_app_name == apim_app_name)
            .cloned()
            .collect();
        (!settings.is_empty()).then(|| SiteGroup {
            settings,
            ..self.clone()
        })
    }
}

/// Reads one entry of the sites section `section` at `path`.
pub(super) fn read(w: &mut Walker, section: &str, v: &Value, path: &str) -> Option<Walked> {
    let site_section = match section {
        "functionApps" => SiteSection::FunctionApp,
        "webApps" => SiteSection::WebApp,
        _ => SiteSection::StaticWebApp,
    };
    let (group, paths) = site(w, v, path, site_section)?;
    // Function Apps and Web Apps are both Microsoft.Web/sites: the same site may be named in
    // either section, so they share one identity space; names are case-insensitive in ARM.
    let scope = format!(
        "{}/{}/{}/{}/{}",
        if group.section == SiteSection::StaticWebApp {
            "staticSites"
        } else {
            "sites"
        },
        group.subscription_id,
        group.resource_group,
        group.name,
        group.slot.as_deref().unwrap_or("")
    )
    .to_ascii_lowercase();
    let places = paths
        .into_iter()
        .zip(&group.settings)
        .map(|(p, s)| Place::new(p, scope.clone(), s.setting_name.to_ascii_lowercase()))
        .collect();
    Some(Walked::new(group, places))
}

fn site(
    w: &mut Walker,
    v: &Value,
    path: &str,
    section: SiteSection,
) -> Option<(SiteGroup, Vec<String>)> {
    let allowed: &[&str] = if section == SiteSection::StaticWebApp {
        &["subscriptionId", "resourceGroup", "name", "settings"]
    } else {
        &[
            "subscriptionId",
            "resourceGroup",
            "name",
            "slot",
            "settings",
        ]
    };
    let obj = w.fields(v, path, allowed)?;
    let subscription_id = w.required_string(obj, path, "subscriptionId", subscription_id);
    let resource_group = w.required_string(obj, path, "resourceGroup", resource_group);
    let name = if section == SiteSection::StaticWebApp {
        w.required_string(obj, path, "name", static_site_name)
    } else {
        w.required_string(obj, path, "name", site_name)
    };
    let slot = match obj
        .get("slot")
        .filter(|_| section != SiteSection::StaticWebApp)
    {
        None => Some(None),
        Some(v) => w.string(v, &join(path, "slot"), slot_name).map(Some),
    };
    let settings_path = join(path, "settings");
    let settings = w
        .required(obj, path, "settings")
        .and_then(|v| w.array(v, &settings_path));
    if settings.is_some_and(|s| s.is_empty()) {
        w.error(
            &settings_path,
            "must not be empty; expected at least one setting",
        );
    }
    let mut kept = Vec::new();
    let mut paths = Vec::new();
    for (j, s) in settings.into_iter().flatten().enumerate() {
        let p = index(&settings_path, j);
        if let Some(setting) = setting(w, s, &p) {
            kept.push(setting);
            paths.push(p);
        }
    }
    Some((
        SiteGroup {
            section,
            subscription_id: subscription_id?,
            resource_group: resource_group?,
            name: name?,
            slot: slot?,
            settings: kept,
        },
        paths,
    ))
}

fn setting(w: &mut Walker, v: &Value, path: &str) -> Option<SettingMapping> {
    let obj = w.fields(v, path, &["settingName", "apimAppName"])?;
    let setting_name = w.required_string(obj, path, "settingName", setting_name);
    let apim_app_name = w.required_string(obj, path, "apimAppName", name);
    Some(SettingMapping {
        setting_name: setting_name?,
        apim_app_name: apim_app_name?,
    })
}

/// A subscription ID: a GUID in its hyphenated form, kept lower-case.
fn subscription_id(s: &str) -> Result<String, String> {
    match uuid::Uuid::try_parse(s) {
        Ok(u) if s.len() == 36 => Ok(u.hyphenated().to_string()),
        _ => Err(format!(
            "\"{s}\" is not a subscription ID; expected a GUID such as 00000000-0000-0000-0000-000000000000"
        )),
    }
}

/// A resource group name: 1-90 letters, digits, `_ - . ( )`, not ending with a period.
fn resource_group(s: &str) -> Result<String, String> {
    let ok = (1..=90).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_alphanumeric() || "_-.()".contains(c))
        && !s.ends_with('.');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "\"{s}\" is not a resource group name; expected 1-90 letters, digits, _ - . ( ), not ending with a period"
        ))
    }
}

/// Letters, digits and hyphens, `min..=max` long, not starting or ending with a hyphen.
fn dns_label(s: &str, min: usize, max: usize, noun: &str) -> Result<String, String> {
    let ok = (min..=max).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "\"{s}\" is not a {noun}; expected {min}-{max} letters, digits and hyphens, not starting or ending with a hyphen"
        ))
    }
}

fn site_name(s: &str) -> Result<String, String> {
    dns_label(s, 2, 60, "site name")
}

fn static_site_name(s: &str) -> Result<String, String> {
    dns_label(s, 1, 40, "static site name")
}

fn slot_name(s: &str) -> Result<String, String> {
    dns_label(s, 1, 59, "slot name")
}

/// An app setting name: 1-256 characters, no `=`, no control characters, no surrounding spaces.
fn setting_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else if s.chars().count() > 256 {
        Err("too long; expected at most 256 characters".into())
    } else if s.contains('=') || s.trim() != s || s.chars().any(char::is_control) {
        Err(format!(
            "{s:?} is not an app setting name; expected no '=', control characters or surrounding spaces"
        ))
    } else {
        Ok(s.to_string())
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
            ("/functionApps", Some(json!(null)), "functionApps: expected an array, got null"),
            ("/functionApps/0/subscriptionId", None, "functionApps[0].subscriptionId: required"),
            ("/functionApps/0/subscriptionId", Some(json!("sub-1")), "functionApps[0].subscriptionId: \"sub-1\" is not a subscription ID"),
            ("/functionApps/0/subscriptionId", Some(json!("34adfa4fcedf4dc0ba29b6d1a69ab345")), "functionApps[0].subscriptionId: \"34adfa4fcedf4dc0ba29b6d1a69ab345\" is not a subscription ID"),
            ("/functionApps/0/resourceGroup", Some(json!("rg.")), "functionApps[0].resourceGroup: \"rg.\" is not a resource group name"),
            ("/functionApps/0/resourceGroup", Some(json!("rg/x")), "functionApps[0].resourceGroup: \"rg/x\" is not a resource group name"),
            ("/functionApps/0/resourceGroup", Some(json!("r".repeat(91))), "functionApps[0].resourceGroup: \"rrr"),
            ("/functionApps/0/resourceGroup", Some(json!("")), "functionApps[0].resourceGroup: \"\" is not a resource group name"),
            ("/functionApps/0/name", None, "functionApps[0].name: required"),
            ("/functionApps/0/name", Some(json!("-func")), "functionApps[0].name: \"-func\" is not a site name"),
            ("/functionApps/0/name", Some(json!("func_orders")), "functionApps[0].name: \"func_orders\" is not a site name"),
            ("/functionApps/0/name", Some(json!("f")), "functionApps[0].name: \"f\" is not a site name"),
            ("/functionApps/0/slot", Some(json!("")), "functionApps[0].slot: \"\" is not a slot name"),
            ("/functionApps/0/slot", Some(json!(1)), "functionApps[0].slot: expected a string, got number"),
            ("/functionApps/0/settings", None, "functionApps[0].settings: required"),
            ("/functionApps/0/settings", Some(json!([])), "functionApps[0].settings: must not be empty"),
            ("/functionApps/0/settings/0/settingName", None, "functionApps[0].settings[0].settingName: required"),
            ("/functionApps/0/settings/0/settingName", Some(json!("")), "functionApps[0].settings[0].settingName: must not be empty"),
            ("/functionApps/0/settings/0/settingName", Some(json!("A=B")), "functionApps[0].settings[0].settingName: \"A=B\" is not an app setting name"),
            ("/functionApps/0/settings/0/settingName", Some(json!("A\nB")), "functionApps[0].settings[0].settingName: \"A\\nB\" is not an app setting name"),
            ("/functionApps/0/settings/0/apimAppName", Some(json!("")), "functionApps[0].settings[0].apimAppName: must not be empty"),
            ("/functionApps/0/settings/0/secretName", Some(json!("x")), "functionApps[0].settings[0].secretName: unknown field; expected settingName, apimAppName"),
            ("/functionApps/0/resourcegroup", Some(json!("x")), "functionApps[0].resourcegroup: unknown field; did you mean resourceGroup?"),
            ("/webApps/0/name", Some(json!("a".repeat(61))), "webApps[0].name: \"aaaa"),
            ("/webApps", Some(json!({})), "webApps: expected an array, got object"),
            ("/staticWebApps/0/slot", Some(json!("staging")), "staticWebApps[0].slot: unknown field; expected subscriptionId, resourceGroup, name, settings"),
            ("/staticWebApps/0/name", Some(json!("a".repeat(41))), "staticWebApps[0].name: \"aaaa"),
            ("/staticWebApps/0/settings/0", Some(json!([])), "staticWebApps[0].settings[0]: expected an object, got array"),
        ]);
    }
}

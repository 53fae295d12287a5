//! `infra/azuredeploy.json`, the ARM template behind "Deploy to Azure": the function app's
//! security settings, its identity, every app setting the rotator reads (PRODUCT.md §4), the
//! schedule default, secure parameters, the optional role assignments, expressions that
//! resolve, and checkov skips that are documented.

use apikey_rotator::settings;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn read(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn template() -> Value {
    serde_json::from_str(&read("infra/azuredeploy.json")).expect("azuredeploy.json is JSON")
}

fn resources(t: &Value) -> &Vec<Value> {
    t["resources"].as_array().expect("resources array")
}

fn resource<'a>(t: &'a Value, kind: &str) -> &'a Value {
    let found: Vec<&Value> = resources(t).iter().filter(|r| r["type"] == kind).collect();
    assert_eq!(found.len(), 1, "want exactly one {kind}");
    found[0]
}

fn site(t: &Value) -> &Value {
    resource(t, "Microsoft.Web/sites")
}

/// The function app's app settings as (name, value).
fn app_settings(t: &Value) -> Vec<(String, String)> {
    site(t)["properties"]["siteConfig"]["appSettings"]
        .as_array()
        .expect("siteConfig.appSettings array")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn setting(t: &Value, name: &str) -> String {
    app_settings(t)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("app setting {name} missing"))
        .1
}

/// `[parameters('x')]` → `x`.
fn parameter_of(value: &str) -> Option<&str> {
    value
        .strip_prefix("[parameters('")?
        .strip_suffix("')]")
        .filter(|p| !p.contains('\''))
}

#[test]
fn the_template_is_an_arm_deployment_template() {
    let t = template();
    assert_eq!(
        t["$schema"],
        "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
    );
    assert_eq!(t["contentVersion"], "1.0.0.0");
}

#[test]
fn the_function_app_is_a_linux_custom_handler_with_https_tls12_and_no_ftp() {
    let t = template();
    let app = site(&t);
    assert_eq!(app["kind"], "functionapp,linux");
    assert_eq!(app["identity"]["type"], "SystemAssigned");
    let p = &app["properties"];
    assert_eq!(p["httpsOnly"], true);
    assert_eq!(p["reserved"], true, "Linux");
    let c = &p["siteConfig"];
    assert_eq!(c["minTlsVersion"], "1.2");
    assert_eq!(c["scmMinTlsVersion"], "1.2");
    assert_eq!(c["ftpsState"], "Disabled");
    assert_eq!(c["remoteDebuggingEnabled"], false);
    // The Functions stack data for custom handlers on Linux: an empty linuxFxVersion.
    assert_eq!(c["linuxFxVersion"], "");
    assert_eq!(setting(&t, "FUNCTIONS_WORKER_RUNTIME"), "custom");
    assert_eq!(setting(&t, "FUNCTIONS_EXTENSION_VERSION"), "~4");
    assert!(setting(&t, "AzureWebJobsStorage").contains("listKeys("));
    assert!(setting(&t, "APPLICATIONINSIGHTS_CONNECTION_STRING").contains("ConnectionString"));
    let ftp = resource(&t, "Microsoft.Web/sites/basicPublishingCredentialsPolicies");
    assert_eq!(ftp["properties"]["allow"], false);
}

#[test]
fn storage_is_https_only_tls12_and_private() {
    let t = template();
    let s = resource(&t, "Microsoft.Storage/storageAccounts");
    let p = &s["properties"];
    assert_eq!(p["supportsHttpsTrafficOnly"], true);
    assert_eq!(p["minimumTlsVersion"], "TLS1_2");
    assert_eq!(p["allowBlobPublicAccess"], false);
}

#[test]
fn application_insights_and_a_plan_parameter() {
    let t = template();
    let ai = resource(&t, "Microsoft.Insights/components");
    assert!(ai["properties"]["WorkspaceResourceId"]
        .as_str()
        .unwrap()
        .contains("Microsoft.OperationalInsights/workspaces"));
    resource(&t, "Microsoft.OperationalInsights/workspaces");
    let plan = resource(&t, "Microsoft.Web/serverfarms");
    assert_eq!(plan["properties"]["reserved"], true);
    assert_eq!(plan["sku"]["name"], "[parameters('planSku')]");
    let allowed = &t["parameters"]["planSku"]["allowedValues"];
    assert_eq!(allowed, &serde_json::json!(["Y1", "EP1", "EP2", "EP3"]));
}

#[test]
fn every_setting_of_product_section_4_is_set_from_a_parameter() {
    let t = template();
    let mut wanted: Vec<&str> = settings::MAPPING_SETTINGS.to_vec();
    wanted.extend([
        settings::COMPANY_DETAILS,
        settings::TOOLKIT_UUID,
        settings::TOOLKIT_APP_URL,
        settings::TOOLKIT_APP_KEY,
        settings::SCHEDULE,
        "AZURE_CLIENT_ID",
        apikey_rotator::azure::cloud::CLOUD_SETTING,
    ]);
    let params = &t["parameters"];
    for name in wanted {
        let value = setting(&t, name);
        let param = parameter_of(&value)
            .unwrap_or_else(|| panic!("{name} is {value:?}, want [parameters('...')]"));
        assert!(params.get(param).is_some(), "{name}: no parameter {param}");
    }
    // No setting is listed twice (the later one would silently win).
    let names: Vec<String> = app_settings(&t).into_iter().map(|(n, _)| n).collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}

#[test]
fn secrets_are_secure_parameters_and_the_rest_have_safe_defaults() {
    let t = template();
    let params = &t["parameters"];
    for name in [
        settings::COMPANY_DETAILS,
        settings::TOOLKIT_UUID,
        settings::TOOLKIT_APP_KEY,
    ] {
        let value = setting(&t, name);
        let param = parameter_of(&value).unwrap();
        assert_eq!(params[param]["type"], "securestring", "{name} ({param})");
        assert!(
            params[param].get("defaultValue").is_none() || params[param]["defaultValue"] == "",
            "{param} must not carry a real default"
        );
    }
    let schedule = parameter_of(&setting(&t, settings::SCHEDULE))
        .unwrap()
        .to_string();
    assert_eq!(
        params[&schedule]["defaultValue"],
        settings::DEFAULT_SCHEDULE
    );
    assert_eq!(params[&schedule]["defaultValue"], "0 0 6 * * 2");
    let cloud = parameter_of(&setting(&t, "AZURE_CLOUD"))
        .unwrap()
        .to_string();
    assert_eq!(params[&cloud]["defaultValue"], "public");
    // Each allowed cloud is one the rotator accepts.
    for c in params[&cloud]["allowedValues"].as_array().unwrap() {
        let env = [("AZURE_CLOUD".to_string(), c.as_str().unwrap().to_string())]
            .into_iter()
            .collect();
        assert!(
            apikey_rotator::azure::cloud::Cloud::from_settings(&env).is_ok(),
            "{c}"
        );
    }
    // Optional settings default to empty, which the rotator treats as unset.
    for name in [
        "APIKEYROTATIONAPPS2",
        "APIKEYROTATIONAPPS3",
        settings::TOOLKIT_APP_URL,
        settings::TOOLKIT_APP_KEY,
        "AZURE_CLIENT_ID",
    ] {
        let param = parameter_of(&setting(&t, name)).unwrap().to_string();
        assert_eq!(params[&param]["defaultValue"], "", "{name}");
    }
}

#[test]
fn every_parameter_is_documented_and_the_example_parameters_fit() {
    let t = template();
    let params = t["parameters"].as_object().unwrap();
    for (name, p) in params {
        let d = p["metadata"]["description"].as_str().unwrap_or("");
        assert!(d.len() > 10, "parameter {name} has no metadata.description");
    }
    let example: Value =
        serde_json::from_str(&read("infra/azuredeploy.parameters.example.json")).unwrap();
    let given = example["parameters"].as_object().unwrap();
    for name in given.keys() {
        assert!(params.contains_key(name), "example sets unknown {name}");
    }
    for (name, p) in params {
        if p.get("defaultValue").is_none() {
            assert!(given.contains_key(name), "example lacks required {name}");
        }
    }
    // The example's mapping is a valid mapping.
    let mapping = given["apiKeyRotationApps"]["value"].as_str().unwrap();
    serde_json::from_str::<Value>(mapping).expect("example mapping is JSON");
}

#[test]
fn role_assignments_grant_the_three_roles_on_the_given_resources() {
    let t = template();
    let ids = &t["variables"]["roleDefinitionIds"];
    assert_eq!(
        ids["keyVaultSecretsOfficer"],
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
    );
    assert_eq!(
        ids["appConfigurationDataOwner"],
        "5ae67dd6-50cb-40e7-96ff-dc2bfa4b606b"
    );
    assert_eq!(
        ids["websiteContributor"],
        "de139f84-1756-47ae-9be6-808fbbe84772"
    );
    // One array parameter of resource IDs per role, empty by default, each feeding one copy
    // loop that pairs it with its role.
    let copies = t["variables"]["copy"].as_array().unwrap();
    for (param, role) in [
        ("keyVaultIds", "keyVaultSecretsOfficer"),
        ("appConfigurationIds", "appConfigurationDataOwner"),
        ("siteIds", "websiteContributor"),
    ] {
        let p = &t["parameters"][param];
        assert_eq!(p["type"], "array", "{param}");
        assert_eq!(p["defaultValue"], serde_json::json!([]), "{param}");
        let loop_ = copies
            .iter()
            .find(|c| c["count"] == format!("[length(parameters('{param}'))]"))
            .unwrap_or_else(|| panic!("no copy loop over {param}"));
        assert_eq!(
            loop_["input"]["roleDefinitionId"],
            format!("[variables('roleDefinitionIds').{role}]")
        );
        let all = t["variables"]["roleTargets"].as_str().unwrap();
        assert!(all.contains(loop_["name"].as_str().unwrap()));
    }
    // A nested deployment per target, in the target's subscription and resource group...
    let nested = resource(&t, "Microsoft.Resources/deployments");
    assert_eq!(
        nested["copy"]["count"],
        "[length(variables('roleTargets'))]"
    );
    assert!(nested["subscriptionId"].as_str().unwrap().contains("[2]"));
    assert!(nested["resourceGroup"].as_str().unwrap().contains("[4]"));
    assert!(nested["properties"]["parameters"]["principalId"]["value"]
        .as_str()
        .unwrap()
        .contains(".identity.principalId"));
    // ...holding a role assignment scoped (an extension resource) to that target.
    let inner = &nested["properties"]["template"];
    let ra = resources(inner)
        .iter()
        .find(|r| r["type"] == "Microsoft.Authorization/roleAssignments")
        .expect("a roleAssignments resource in the nested template");
    assert!(ra["scope"].as_str().unwrap().contains("targetId"));
    assert!(ra["name"].as_str().unwrap().starts_with("[guid("));
    assert_eq!(ra["properties"]["principalType"], "ServicePrincipal");
    assert!(ra["properties"]["roleDefinitionId"]
        .as_str()
        .unwrap()
        .contains("Microsoft.Authorization/roleDefinitions"));
}

/// Collects every string in `v`, not descending into nested deployment templates (which have
/// their own parameters).
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                if k != "template" {
                    strings(x, out);
                }
            }
        }
        _ => {}
    }
}

/// Names used as `function('name')` in the expressions of `v`.
fn references(v: &Value, function: &str) -> BTreeSet<String> {
    let mut all = Vec::new();
    strings(v, &mut all);
    let needle = format!("{function}('");
    let mut names = BTreeSet::new();
    for s in all.into_iter().filter(|s| s.starts_with('[')) {
        for part in s.split(&needle).skip(1) {
            names.insert(part.split('\'').next().unwrap().to_string());
        }
    }
    names
}

fn check_references(t: &Value, what: &str) {
    let declared = |section: &str| -> BTreeSet<String> {
        let mut names: BTreeSet<String> = t[section]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(copies) = t[section]["copy"].as_array() {
            names.extend(
                copies
                    .iter()
                    .map(|c| c["name"].as_str().unwrap().to_string()),
            );
        }
        names
    };
    for (function, section) in [("parameters", "parameters"), ("variables", "variables")] {
        let missing: Vec<_> = references(t, function)
            .difference(&declared(section))
            .cloned()
            .collect();
        assert!(
            missing.is_empty(),
            "{what}: undeclared {section}: {missing:?}"
        );
    }
}

#[test]
fn every_parameter_and_variable_reference_resolves() {
    let t = template();
    check_references(&t, "template");
    for r in resources(&t) {
        if let Some(inner) = r["properties"].get("template") {
            check_references(inner, "nested template");
        }
    }
    // And the references found are real ones (the scan is not vacuous).
    assert!(references(&t, "parameters").contains("companyDetails"));
    assert!(references(&t, "variables").contains("roleTargets"));
}

#[test]
fn checkov_skips_carry_a_reason_and_are_documented() {
    let t = template();
    let readme = read("infra/README.md");
    let mut count = 0;
    for r in resources(&t) {
        for skip in r["metadata"]["checkov"].as_array().into_iter().flatten() {
            let skip = skip.as_str().unwrap();
            let rest = skip
                .strip_prefix("checkov:skip=")
                .unwrap_or_else(|| panic!("not a checkov skip: {skip}"));
            let (id, reason) = rest.split_once(':').expect("checkov:skip=ID: reason");
            assert!(
                reason.trim().len() > 20,
                "{id} on {} needs a reason",
                r["type"]
            );
            assert!(
                readme.contains(&format!("| `{id}` |")),
                "{id} is skipped in the template but not documented in infra/README.md"
            );
            count += 1;
        }
    }
    assert!(count > 0);
}

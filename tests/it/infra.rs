//! `infra/azuredeploy.json`, the ARM template behind "Deploy to Azure": Flex Consumption by
//! default (custom handler runtime, identity-based deployment container), Elastic Premium as the
//! option, host storage reached with the app's identity, the function app's security settings,
//! every app setting the rotator reads (PRODUCT.md §4), secure parameters, a re-run that keeps the
//! deployed code, role assignments whose built-in role definitions (copied in
//! `tests/fixtures/roles/`) really cover what the rotator does on each target kind, expressions
//! that resolve, and checkov skips that are documented.

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

/// The blob container whose name ends with the variable `var` (the template has two: the
/// deployment container and the audit container).
fn container<'a>(t: &'a Value, var: &str) -> &'a Value {
    let suffix = format!("variables('{var}'))]");
    let found: Vec<&Value> = resources(t)
        .iter()
        .filter(|r| {
            r["type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"
                && r["name"].as_str().unwrap().ends_with(&suffix)
        })
        .collect();
    assert_eq!(found.len(), 1, "want exactly one container named by {var}");
    found[0]
}

fn site(t: &Value) -> &Value {
    resource(t, "Microsoft.Web/sites")
}

fn variable<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["variables"]
        .get(name)
        .unwrap_or_else(|| panic!("variable {name} missing"))
}

/// The site's `appSettings` expression: `concat(...)` of the setting groups (each plan gets
/// the settings it supports, so the list cannot be a literal array).
fn app_settings_expression(t: &Value) -> &str {
    site(t)["properties"]["siteConfig"]["appSettings"]
        .as_str()
        .expect("siteConfig.appSettings is an expression")
}

/// `(name, value)` of a settings variable (an array of `{name, value}`).
fn settings_of(t: &Value, var: &str) -> Vec<(String, String)> {
    variable(t, var)
        .as_array()
        .unwrap_or_else(|| panic!("variable {var} is not an array"))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The settings every plan gets: host storage and the rotator's own.
fn common_settings(t: &Value) -> Vec<(String, String)> {
    let mut all = settings_of(t, "hostStorageSettings");
    all.extend(settings_of(t, "rotatorSettings"));
    all
}

fn setting(t: &Value, name: &str) -> String {
    common_settings(t)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("app setting {name} missing"))
        .1
}

/// Names the expression adds inline with `createObject('name', 'X', ...)`.
fn inline_setting_names(expr: &str) -> Vec<String> {
    expr.split("createObject('name', '")
        .skip(1)
        .map(|p| p.split('\'').next().unwrap().to_string())
        .collect()
}

/// `[parameters('x')]` → `x`.
fn parameter_of(value: &str) -> Option<&str> {
    value
        .strip_prefix("[parameters('")?
        .strip_suffix("')]")
        .filter(|p| !p.contains('\''))
}

/// The text of the `if(cond, then, else)` call that starts at `start` (just after `if(`),
/// split into its three arguments at the top level of parentheses and quotes.
fn if_arguments(expr: &str, cond: &str) -> (String, String) {
    let needle = format!("if({cond}, ");
    let start = expr
        .find(&needle)
        .unwrap_or_else(|| panic!("no if({cond}, ...) in {expr}"))
        + needle.len();
    let (mut depth, mut quoted) = (0i32, false);
    let mut args = vec![String::new()];
    for c in expr[start..].chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth == 0 => break,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                args.push(String::new());
                continue;
            }
            _ => {}
        }
        args.last_mut().unwrap().push(c);
    }
    assert_eq!(args.len(), 2, "if({cond}, then, else): {args:?}");
    (args[0].trim().to_string(), args[1].trim().to_string())
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
fn flex_consumption_is_the_default_plan_and_elastic_premium_the_option() {
    let t = template();
    let p = &t["parameters"]["planSku"];
    assert_eq!(p["defaultValue"], "FC1");
    // Linux Consumption (Y1) retires on 2028-09-30: not offered.
    assert_eq!(
        p["allowedValues"],
        serde_json::json!(["FC1", "EP1", "EP2", "EP3"])
    );
    assert_eq!(
        variable(&t, "isFlex"),
        "[equals(parameters('planSku'), 'FC1')]"
    );
    let plan = resource(&t, "Microsoft.Web/serverfarms");
    assert_eq!(plan["sku"]["name"], "[parameters('planSku')]");
    assert_eq!(
        plan["sku"]["tier"],
        "[if(variables('isFlex'), 'FlexConsumption', 'ElasticPremium')]"
    );
    assert_eq!(
        plan["kind"],
        "[if(variables('isFlex'), 'functionapp', 'elastic')]"
    );
    assert_eq!(plan["properties"]["reserved"], true, "Linux");
}

#[test]
fn flex_runs_the_custom_handler_from_an_identity_based_deployment_container() {
    let t = template();
    let p = &site(&t)["properties"];
    // functionAppConfig exists only on Flex; Elastic Premium gets none.
    assert_eq!(
        p["functionAppConfig"],
        "[if(variables('isFlex'), variables('functionAppConfig'), json('null'))]"
    );
    let config = variable(&t, "functionAppConfig");
    // What Get-AzFunctionAppFlexConsumptionRuntime lists for custom handlers on FC1.
    assert_eq!(
        config["runtime"],
        serde_json::json!({"name": "custom", "version": "1.0"})
    );
    let storage = &config["deployment"]["storage"];
    assert_eq!(storage["type"], "blobContainer");
    assert_eq!(
        storage["value"],
        "[format('{0}/{1}', variables('blobEndpoint'), variables('deploymentContainer'))]"
    );
    // The blob endpoint follows the cloud (core.windows.net, core.chinacloudapi.cn, ...).
    assert!(variable(&t, "blobEndpoint")
        .as_str()
        .unwrap()
        .contains("environment().suffixes.storage"));
    let auth = storage["authentication"].as_str().unwrap();
    assert!(
        auth.contains("'type', 'UserAssignedIdentity', 'userAssignedIdentityResourceId', variables('identityId')")
            && auth.contains("'type', 'SystemAssignedIdentity'"),
        "identity-based, never a connection string: {auth}"
    );
    let scale = &config["scaleAndConcurrency"];
    assert_eq!(
        scale["instanceMemoryMB"],
        "[parameters('instanceMemoryMB')]"
    );
    assert_eq!(
        scale["maximumInstanceCount"],
        "[parameters('maximumInstanceCount')]"
    );
    assert_eq!(
        t["parameters"]["instanceMemoryMB"]["allowedValues"],
        serde_json::json!([512, 2048, 4096])
    );
    // The container the package lands in exists, private.
    let container = container(&t, "deploymentContainer");
    assert_eq!(container["properties"]["publicAccess"], "None");
}

#[test]
fn the_function_app_is_linux_https_only_tls12_and_without_ftp() {
    let t = template();
    let app = site(&t);
    assert_eq!(app["kind"], "functionapp,linux");
    assert_eq!(
        app["identity"]["type"],
        "[if(variables('userAssigned'), 'UserAssigned', 'SystemAssigned')]"
    );
    let p = &app["properties"];
    assert_eq!(p["httpsOnly"], true);
    assert_eq!(p["reserved"], true, "Linux");
    let c = &p["siteConfig"];
    assert_eq!(c["minTlsVersion"], "1.2");
    assert_eq!(c["scmMinTlsVersion"], "1.2");
    assert_eq!(c["ftpsState"], "Disabled");
    assert_eq!(c["remoteDebuggingEnabled"], false);
    // Flex Consumption rejects the site properties it deprecates; the custom handler needs
    // none of them on Elastic Premium either (an absent linuxFxVersion is the empty one the
    // Functions stack data gives custom handlers).
    for deprecated in ["linuxFxVersion", "use32BitWorkerProcess", "alwaysOn"] {
        assert!(c.get(deprecated).is_none(), "siteConfig.{deprecated}");
    }
    let expr = app_settings_expression(&t);
    assert!(expr.contains("APPLICATIONINSIGHTS_CONNECTION_STRING"));
    let ftp = resource(&t, "Microsoft.Web/sites/basicPublishingCredentialsPolicies");
    assert_eq!(ftp["properties"]["allow"], false);
}

#[test]
fn storage_is_https_only_tls12_private_and_keyless_on_flex() {
    let t = template();
    let s = resource(&t, "Microsoft.Storage/storageAccounts");
    let p = &s["properties"];
    assert_eq!(p["supportsHttpsTrafficOnly"], true);
    assert_eq!(p["minimumTlsVersion"], "TLS1_2");
    assert_eq!(p["allowBlobPublicAccess"], false);
    // Flex needs no key (host storage and deployment container use the identity); Elastic
    // Premium's content share (Azure Files) still takes one.
    assert_eq!(p["allowSharedKeyAccess"], "[not(variables('isFlex'))]");
    assert_eq!(p["defaultToOAuthAuthentication"], true);
}

#[test]
fn host_storage_is_identity_based_with_the_settings_the_host_reads() {
    let t = template();
    let host = settings_of(&t, "hostStorageSettings");
    let names: Vec<&str> = host.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "AzureWebJobsStorage__blobServiceUri",
            "AzureWebJobsStorage__credential"
        ]
    );
    assert_eq!(
        setting(&t, "AzureWebJobsStorage__blobServiceUri"),
        "[variables('blobEndpoint')]"
    );
    assert_eq!(
        setting(&t, "AzureWebJobsStorage__credential"),
        "managedidentity"
    );
    // No connection string with a key for the host storage, in any plan.
    let expr = app_settings_expression(&t);
    let all: Vec<String> = common_settings(&t)
        .into_iter()
        .map(|(n, _)| n)
        .chain(inline_setting_names(expr))
        .chain(
            settings_of(&t, "premiumSettings")
                .into_iter()
                .map(|(n, _)| n),
        )
        .collect();
    assert!(!all.iter().any(|n| n == "AzureWebJobsStorage"), "{all:?}");
    // With a user-assigned identity, the host and the rotator are told which one.
    let (ua, system) = if_arguments(expr, "variables('userAssigned')");
    assert_eq!(
        inline_setting_names(&ua),
        ["AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID"]
    );
    assert_eq!(
        ua.matches("reference(variables('identityId'), '2023-01-31').clientId")
            .count(),
        2
    );
    assert_eq!(system, "createArray()");
    // The identity gets Storage Blob Data Owner on the account: the host's keys, timer
    // monitor and the run lock, and Flex's deployment container.
    let ra = resource(&t, "Microsoft.Authorization/roleAssignments");
    assert_eq!(
        ra["scope"],
        "[format('Microsoft.Storage/storageAccounts/{0}', parameters('storageAccountName'))]"
    );
    assert_eq!(
        variable(&t, "roleDefinitionIds")["storageBlobDataOwner"],
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
    );
    assert!(ra["properties"]["roleDefinitionId"]
        .as_str()
        .unwrap()
        .contains("roleDefinitionIds').storageBlobDataOwner"));
    assert!(ra["properties"]["principalId"]
        .as_str()
        .unwrap()
        .contains("reference(variables('identityId'), '2023-01-31').principalId"));
}

#[test]
fn flex_gets_none_of_the_settings_it_deprecates_and_premium_gets_what_it_needs() {
    let t = template();
    let flex_deprecated = [
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_RUN_FROM_PACKAGE",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
    ];
    for (name, _) in common_settings(&t) {
        assert!(
            !flex_deprecated.contains(&name.as_str()),
            "{name} is common"
        );
    }
    let expr = app_settings_expression(&t);
    let (flex, premium) = if_arguments(expr, "variables('isFlex')");
    assert_eq!(flex, "createArray()", "Flex adds nothing");
    assert!(premium.starts_with("concat(variables('premiumSettings')"));
    assert_eq!(
        inline_setting_names(&premium),
        ["WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"]
    );
    // Outside that branch, no deprecated setting is added inline.
    let outside = expr.replace(&premium, "");
    for name in inline_setting_names(&outside) {
        assert!(!flex_deprecated.contains(&name.as_str()), "{name}");
    }
    let premium_settings: Vec<(String, String)> = settings_of(&t, "premiumSettings");
    let get = |n: &str| {
        premium_settings
            .iter()
            .find(|(k, _)| k == n)
            .unwrap_or_else(|| panic!("premium {n}"))
            .1
            .clone()
    };
    assert_eq!(get("FUNCTIONS_WORKER_RUNTIME"), "custom");
    assert_eq!(get("FUNCTIONS_EXTENSION_VERSION"), "~4");
    assert_eq!(get("WEBSITE_CONTENTSHARE"), "[variables('contentShare')]");
}

#[test]
fn rerunning_the_template_keeps_the_deployed_code() {
    let t = template();
    // Elastic Premium: config-zip leaves the package in /home/data/SitePackages and sets
    // WEBSITE_RUN_FROM_PACKAGE=1. The template sets the same value, so its (full) rewrite of
    // the app settings keeps the app running from that package instead of an empty wwwroot.
    let premium = settings_of(&t, "premiumSettings");
    assert!(
        premium.contains(&("WEBSITE_RUN_FROM_PACKAGE".into(), "1".into())),
        "{premium:?}"
    );
    // Flex: the package lives in the deployment container, whose name is fixed (no
    // deployment-time function in it) so a re-run points at the same container; the template
    // declares the container without contents, which keeps the blobs in it.
    assert_eq!(variable(&t, "deploymentContainer"), "app-package");
    let container = container(&t, "deploymentContainer");
    let props = container["properties"].as_object().unwrap();
    assert_eq!(props.keys().collect::<Vec<_>>(), ["publicAccess"]);
    let mut all = Vec::new();
    strings(&t, &mut all);
    for s in &all {
        for f in ["utcNow(", "newGuid(", "deployment().name"] {
            assert!(!s.contains(f), "{f} makes a re-run differ: {s}");
        }
    }
    // The template deploys code only when given a package URL; empty means "leave it".
    let p = &t["parameters"]["packageUri"];
    assert_eq!(p["type"], "string");
    assert_eq!(p["defaultValue"], "");
    let deploy = resource(&t, "Microsoft.Web/sites/extensions");
    assert_eq!(
        deploy["name"],
        "[format('{0}/onedeploy', parameters('appName'))]"
    );
    assert_eq!(
        deploy["condition"],
        "[not(empty(parameters('packageUri')))]"
    );
    assert_eq!(
        deploy["properties"]["packageUri"],
        "[parameters('packageUri')]"
    );
    assert_eq!(deploy["properties"]["remoteBuild"], false);
    // It waits for the identity's access to the deployment container.
    assert!(deploy["dependsOn"].as_array().unwrap().iter().any(|d| d
        .as_str()
        .unwrap()
        .contains("Microsoft.Authorization/roleAssignments")));
    // Nested deployments are incremental: nothing is deleted.
    let nested = resource(&t, "Microsoft.Resources/deployments");
    assert_eq!(nested["properties"]["mode"], "Incremental");
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
        apikey_rotator::azure::cloud::CLOUD_SETTING,
    ]);
    let params = &t["parameters"];
    for name in wanted {
        let value = setting(&t, name);
        let param = parameter_of(&value)
            .unwrap_or_else(|| panic!("{name} is {value:?}, want [parameters('...')]"));
        assert!(params.get(param).is_some(), "{name}: no parameter {param}");
    }
    // AZURE_CLIENT_ID is the template's own user-assigned identity (checked above), never a
    // free parameter that could name an identity the app does not have.
    assert!(params.get("azureClientId").is_none());
    // No setting is listed twice in any plan (the later one would silently win).
    let expr = app_settings_expression(&t);
    let mut names: Vec<String> = common_settings(&t).into_iter().map(|(n, _)| n).collect();
    names.extend(inline_setting_names(expr));
    names.extend(
        settings_of(&t, "premiumSettings")
            .into_iter()
            .map(|(n, _)| n),
    );
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    // Every group is in the expression.
    for group in ["hostStorageSettings", "rotatorSettings", "premiumSettings"] {
        assert!(expr.contains(&format!("variables('{group}')")), "{group}");
    }
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
    ] {
        let param = parameter_of(&setting(&t, name)).unwrap().to_string();
        assert_eq!(params[&param]["defaultValue"], "", "{name}");
    }
    assert_eq!(params["identityType"]["defaultValue"], "SystemAssigned");
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
    for (name, v) in given {
        let p = params
            .get(name)
            .unwrap_or_else(|| panic!("example sets unknown {name}"));
        if let Some(allowed) = p["allowedValues"].as_array() {
            assert!(allowed.contains(&v["value"]), "example {name}: {v}");
        }
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

/// `pattern` (an RBAC action with `*` wildcards, case-insensitive) matches `action`.
fn action_matches(pattern: &str, action: &str) -> bool {
    let (p, a) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == a;
    }
    let mut rest = a.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Whether the permissions (`actions`/`notActions` or their data counterparts) grant `action`.
fn grants(role: &Value, allow: &str, deny: &str, action: &str) -> bool {
    let any = |key: &str| {
        role[key]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| action_matches(p.as_str().unwrap(), action))
    };
    any(allow) && !any(deny)
}

fn built_in_role(guid: &str) -> Value {
    let roles: Value = serde_json::from_str(&read("tests/fixtures/roles/built-in-roles.docs.json"))
        .expect("roles fixture");
    roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == guid)
        .unwrap_or_else(|| panic!("role {guid} not in the fixture"))
        .clone()
}

#[test]
fn each_role_covers_what_the_rotator_does_on_its_target_kind() {
    let t = template();
    let ids = variable(&t, "roleDefinitionIds");
    // (role, control-plane actions, data actions) of the requests the rotator (and, for the
    // storage account, the Functions host) sends.
    let cases: [(&str, &[&str], &[&str]); 4] = [
        (
            "websiteContributor",
            &[
                "Microsoft.Web/sites/config/list/action",
                "Microsoft.Web/sites/config/write",
                "Microsoft.Web/sites/slots/config/list/action",
                "Microsoft.Web/sites/slots/config/write",
            ],
            &[],
        ),
        (
            "keyVaultSecretsOfficer",
            &[],
            &[
                "Microsoft.KeyVault/vaults/secrets/getSecret/action",
                "Microsoft.KeyVault/vaults/secrets/setSecret/action",
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            ],
        ),
        (
            "appConfigurationDataOwner",
            &[],
            &[
                "Microsoft.AppConfiguration/configurationStores/keyValues/read",
                "Microsoft.AppConfiguration/configurationStores/keyValues/write",
            ],
        ),
        (
            "storageBlobDataOwner",
            &["Microsoft.Storage/storageAccounts/blobServices/containers/write"],
            &[
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
            ],
        ),
    ];
    for (key, actions, data) in cases {
        let role = built_in_role(ids[key].as_str().unwrap());
        for a in actions {
            assert!(grants(&role, "actions", "notActions", a), "{key}: {a}");
        }
        for a in data {
            assert!(
                grants(&role, "dataActions", "notDataActions", a),
                "{key}: {a}"
            );
        }
    }
    // Website Contributor does NOT cover static sites: they get the custom role.
    let website = built_in_role(ids["websiteContributor"].as_str().unwrap());
    let static_ops = [
        "Microsoft.Web/staticSites/listAppSettings/action",
        "Microsoft.Web/staticSites/config/write",
    ];
    for a in static_ops {
        assert!(!grants(&website, "actions", "notActions", a), "{a}");
    }
    let custom = serde_json::json!({"actions": variable(&t, "staticSiteRoleActions")});
    for a in static_ops {
        assert!(grants(&custom, "actions", "notActions", a), "custom: {a}");
    }
    assert!(
        variable(&t, "staticSiteRoleActions")
            .as_array()
            .unwrap()
            .len()
            <= 3,
        "least privilege: read, list settings, write settings"
    );
    // The matcher itself.
    assert!(action_matches(
        "Microsoft.Web/sites/*",
        "microsoft.web/sites/config/write"
    ));
    assert!(action_matches(
        "Microsoft.AppConfiguration/configurationStores/*/read",
        "Microsoft.AppConfiguration/configurationStores/keyValues/read"
    ));
    assert!(!action_matches(
        "Microsoft.Web/sites/*",
        "Microsoft.Web/staticSites/config/write"
    ));
}

#[test]
fn role_assignments_grant_the_roles_on_the_given_resources() {
    let t = template();
    let ids = variable(&t, "roleDefinitionIds");
    for (key, guid) in [
        (
            "keyVaultSecretsOfficer",
            "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        ),
        (
            "appConfigurationDataOwner",
            "5ae67dd6-50cb-40e7-96ff-dc2bfa4b606b",
        ),
        ("websiteContributor", "de139f84-1756-47ae-9be6-808fbbe84772"),
        (
            "storageBlobDataOwner",
            "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        ),
    ] {
        assert_eq!(ids[key], guid, "{key}");
        assert_eq!(built_in_role(guid)["name"], guid);
    }
    // One array parameter of resource IDs per role, empty by default, each feeding one copy
    // loop that pairs it with its role.
    let copies = variable(&t, "copy").as_array().unwrap();
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
        assert!(
            loop_["input"]["roleDefinitionId"]
                .as_str()
                .unwrap()
                .contains(&format!("variables('roleDefinitionIds').{role}")),
            "{param}"
        );
        let all = variable(&t, "roleTargets").as_str().unwrap();
        assert!(all.contains(loop_["name"].as_str().unwrap()));
    }
    // A static site among siteIds gets the custom role (an empty role ID tells the nested
    // template to use it).
    let sites = copies.iter().find(|c| c["name"] == "siteTargets").unwrap();
    assert!(sites["input"]["roleDefinitionId"]
        .as_str()
        .unwrap()
        .starts_with("[if(contains(toLower(parameters('siteIds')[copyIndex('siteTargets')]), '/providers/microsoft.web/staticsites/'), '', "));
    // A nested deployment per target, in the target's subscription and resource group, one
    // at a time (targets in one resource group share the custom role)...
    let nested = resource(&t, "Microsoft.Resources/deployments");
    assert_eq!(
        nested["copy"]["count"],
        "[length(variables('roleTargets'))]"
    );
    assert_eq!(nested["copy"]["mode"], "serial");
    assert!(nested["subscriptionId"].as_str().unwrap().contains("[2]"));
    assert!(nested["resourceGroup"].as_str().unwrap().contains("[4]"));
    let principal = nested["properties"]["parameters"]["principalId"]["value"]
        .as_str()
        .unwrap();
    assert!(
        principal.contains("reference(variables('identityId'), '2023-01-31').principalId")
            && principal.contains("'full').identity.principalId"),
        "the user-assigned identity, else the system-assigned one: {principal}"
    );
    // ...holding the custom role (only when needed) and a role assignment scoped to the target.
    let inner = &nested["properties"]["template"];
    let def = resources(inner)
        .iter()
        .find(|r| r["type"] == "Microsoft.Authorization/roleDefinitions")
        .expect("the static-site custom role");
    assert_eq!(def["condition"], "[variables('custom')]");
    assert_eq!(def["properties"]["type"], "customRole");
    assert_eq!(
        def["properties"]["permissions"][0]["actions"],
        "[parameters('roleActions')]"
    );
    assert_eq!(
        def["properties"]["assignableScopes"],
        serde_json::json!(["[resourceGroup().id]"])
    );
    let ra = resources(inner)
        .iter()
        .find(|r| r["type"] == "Microsoft.Authorization/roleAssignments")
        .expect("a roleAssignments resource in the nested template");
    assert!(ra["scope"].as_str().unwrap().contains("targetId"));
    assert!(ra["name"].as_str().unwrap().starts_with("[guid("));
    assert_eq!(ra["properties"]["principalType"], "ServicePrincipal");
    assert_eq!(
        ra["properties"]["roleDefinitionId"],
        "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', variables('roleDefinitionId'))]"
    );
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

/// The API versions of the resources issue 16 added, as the ARM reference
/// (learn.microsoft.com/azure/templates) lists them with the properties the template sets.
#[test]
fn the_observability_resources_use_released_api_versions() {
    let t = template();
    for (kind, version) in [
        (
            "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies",
            "2023-01-01",
        ),
        ("Microsoft.Insights/workbooks", "2023-06-01"),
        ("Microsoft.Insights/actionGroups", "2023-01-01"),
        ("Microsoft.Insights/scheduledQueryRules", "2023-12-01"),
    ] {
        assert_eq!(resource(&t, kind)["apiVersion"], version, "{kind}");
    }
}

#[test]
fn the_audit_container_is_private_and_append_only_for_the_retention_days() {
    let t = template();
    assert_eq!(
        variable(&t, "auditContainer"),
        apikey_rotator::audit::AUDIT_CONTAINER
    );
    let c = container(&t, "auditContainer");
    assert_eq!(c["properties"], serde_json::json!({"publicAccess": "None"}));
    let policy = resource(
        &t,
        "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies",
    );
    // The policy's name is always `default`, under the audit container.
    assert_eq!(
        policy["name"],
        "[format('{0}/default/{1}/default', parameters('storageAccountName'), variables('auditContainer'))]"
    );
    assert_eq!(policy["condition"], "[parameters('auditImmutability')]");
    let p = &policy["properties"];
    // Protected append writes: the audit trail's append blobs grow, nothing is rewritten.
    assert_eq!(p["allowProtectedAppendWrites"], true);
    assert_eq!(
        p["immutabilityPeriodSinceCreationInDays"],
        "[parameters('auditRetentionDays')]"
    );
    assert!(policy["dependsOn"][0]
        .as_str()
        .unwrap()
        .contains("variables('auditContainer')"));
    let params = &t["parameters"];
    assert_eq!(params["auditImmutability"]["type"], "bool");
    assert_eq!(params["auditImmutability"]["defaultValue"], true);
    assert_eq!(params["auditRetentionDays"]["defaultValue"], 365);
    assert_eq!(params["auditRetentionDays"]["minValue"], 1);
    // The app's identity writes it: Storage Blob Data Owner on the whole account covers the
    // container, appending included (checked against the role's definition above).
    let ra = resource(&t, "Microsoft.Authorization/roleAssignments");
    assert_eq!(
        ra["scope"],
        "[format('Microsoft.Storage/storageAccounts/{0}', parameters('storageAccountName'))]"
    );
    let owner = built_in_role("b7e6dc6d-f1e8-4753-8033-0f276bb0955b");
    for a in [
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    ] {
        assert!(
            grants(&owner, "dataActions", "notDataActions", a),
            "audit: {a}"
        );
    }
}

/// Every KQL query of the template: the workbook's, then the alert rule's.
fn queries(t: &Value) -> Vec<String> {
    let content = variable(t, "workbookContent");
    assert_eq!(content["version"], "Notebook/1.0");
    let mut all: Vec<String> = content["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == 3)
        .map(|i| {
            assert_eq!(i["content"]["version"], "KqlItem/1.0");
            assert_eq!(
                i["content"]["resourceType"],
                "microsoft.insights/components"
            );
            i["content"]["query"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        all.len() >= 5,
        "runs, last runs, renewals, failures, expiry"
    );
    all.push(variable(t, "failedRunsQuery").as_str().unwrap().to_string());
    all
}

/// `customDimensions.<name>` (and `customDimensions['<name>']`) in `query`.
fn dimensions_in(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for part in query.split("customDimensions").skip(1) {
        let name: String = if let Some(rest) = part.strip_prefix('.') {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        } else if let Some(rest) = part.strip_prefix("['") {
            rest.split('\'').next().unwrap().to_string()
        } else {
            panic!("customDimensions without a field name: {query}")
        };
        names.insert(name);
    }
    names
}

#[test]
fn the_workbook_and_the_alert_query_exactly_the_fields_the_process_sends() {
    use apikey_rotator::telemetry;
    let t = template();
    let mut used = BTreeSet::new();
    let mut events = BTreeSet::new();
    for q in queries(&t) {
        // Only the rotator's own telemetry (the host logs the same lines as plain traces).
        assert!(
            q.contains("sdkVersion startswith \"apikey-rotator\""),
            "{q}"
        );
        for table in q
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| !w.starts_with('|') && *w != "let" && *w != "union")
        {
            assert!(
                ["traces", "customEvents"].contains(&table),
                "{table} in {q}"
            );
        }
        used.extend(dimensions_in(&q));
        for part in q.split("name == \"").skip(1) {
            events.insert(part.split('"').next().unwrap().to_string());
        }
    }
    assert!(telemetry::SDK_VERSION.starts_with("apikey-rotator:"));
    let sent: BTreeSet<String> = telemetry::DIMENSIONS
        .iter()
        .map(|d| d.to_string())
        .collect();
    // tests/it/app_insights.rs checks that a run sends every one of DIMENSIONS.
    assert_eq!(used, sent, "the queries' fields and telemetry::DIMENSIONS");
    let known: BTreeSet<String> = telemetry::EVENTS.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        events, known,
        "the queries' custom events and telemetry::EVENTS"
    );
    // The scan itself.
    assert_eq!(
        dimensions_in("x | where customDimensions.a_b == 1 and customDimensions['c'] > 0"),
        BTreeSet::from(["a_b".to_string(), "c".to_string()])
    );
}

#[test]
fn the_workbook_is_shared_on_the_application_insights_resource() {
    let t = template();
    let w = resource(&t, "Microsoft.Insights/workbooks");
    assert_eq!(w["kind"], "shared");
    // A workbook's name must be a GUID: derived, so a re-run updates the same one.
    assert_eq!(w["name"], "[variables('workbookName')]");
    assert!(variable(&t, "workbookName")
        .as_str()
        .unwrap()
        .starts_with("[guid("));
    let p = &w["properties"];
    assert_eq!(p["category"], "workbook");
    assert_eq!(p["sourceId"], "[variables('appInsightsId')]");
    assert_eq!(
        p["serializedData"],
        "[string(variables('workbookContent'))]"
    );
    assert!(p["displayName"].as_str().unwrap().len() > 5);
    assert_eq!(
        variable(&t, "workbookContent")["fallbackResourceIds"],
        serde_json::json!(["[variables('appInsightsId')]"])
    );
    assert_eq!(
        variable(&t, "appInsightsId"),
        "[resourceId('Microsoft.Insights/components', variables('appInsightsName'))]"
    );
}

#[test]
fn the_failed_run_alert_watches_the_telemetry_and_notifies_the_action_groups() {
    let t = template();
    let rule = resource(&t, "Microsoft.Insights/scheduledQueryRules");
    assert_eq!(rule["kind"], "LogAlert");
    let p = &rule["properties"];
    assert_eq!(p["enabled"], true);
    assert_eq!(
        p["scopes"],
        serde_json::json!(["[variables('appInsightsId')]"])
    );
    let c = &p["criteria"]["allOf"][0];
    assert_eq!(c["query"], "[variables('failedRunsQuery')]");
    assert_eq!(c["timeAggregation"], "Count");
    assert_eq!(c["operator"], "GreaterThan");
    assert_eq!(c["threshold"], 0);
    let q = variable(&t, "failedRunsQuery").as_str().unwrap();
    assert!(q.contains("toint(customDimensions.failed) > 0"), "{q}");
    assert!(q.contains("severityLevel >= 3"), "{q}");
    // A request refused to its caller is no failed run.
    assert!(
        q.contains(r#"!in ("BadRequest", "AppNotFound", "RunInProgress")"#),
        "{q}"
    );
    // The evaluation window covers the frequency: no run's telemetry falls between two.
    assert_eq!(p["evaluationFrequency"], "PT15M");
    assert_eq!(p["windowSize"], "PT15M");
    assert_eq!(
        p["actions"]["actionGroups"],
        "[variables('alertActionGroups')]"
    );
    let groups = variable(&t, "alertActionGroups").as_str().unwrap();
    assert!(groups.contains("createArray(parameters('alertActionGroupId'))"));
    assert!(groups.contains(
        "createArray(resourceId('Microsoft.Insights/actionGroups', variables('actionGroupName')))"
    ));
    // The optional email: an action group only when it is given.
    let ag = resource(&t, "Microsoft.Insights/actionGroups");
    assert_eq!(ag["condition"], "[not(empty(parameters('alertEmail')))]");
    assert_eq!(ag["location"], "Global");
    let short = ag["properties"]["groupShortName"].as_str().unwrap();
    assert!(!short.is_empty() && short.len() <= 12, "{short}");
    assert_eq!(
        ag["properties"]["emailReceivers"][0]["emailAddress"],
        "[parameters('alertEmail')]"
    );
    for param in ["alertEmail", "alertActionGroupId"] {
        assert_eq!(t["parameters"][param]["defaultValue"], "", "{param}");
    }
}

#[test]
fn every_parameter_is_named_in_the_readme() {
    let t = template();
    let readme = read("infra/README.md");
    for name in t["parameters"].as_object().unwrap().keys() {
        assert!(
            readme.contains(&format!("`{name}`")),
            "infra/README.md does not name the parameter `{name}`"
        );
    }
}

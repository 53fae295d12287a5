//! The Key Vault double against oracles we did not write (issue 11, PRODUCT.md §9).
//!
//! - The official Rust client, `azure_security_keyvault_secrets::SecretClient` with its challenge
//!   authentication and `azure_identity`'s client-secret credential against the sandbox
//!   authority, drives every operation the product uses (get, get by version, set) and the rest
//!   of the secrets API: list with paging, list versions, update properties, delete, get and list
//!   deleted, recover, purge. Each operation is its own test, asserting on what comes back.
//! - The REST specification (`tests/fixtures/specs/keyvault-secrets-paths.json`, an excerpt of
//!   `Azure/azure-rest-api-specs`): every api-version it defines is accepted, and every request
//!   the product's own Key Vault client sends during a rotation has a path and method the spec
//!   defines, with the query parameters it requires and no others.

use crate::common;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_security_keyvault_secrets::models::{
    DeletionRecoveryLevel, SecretAttributes, SecretClientGetSecretOptions,
    SecretClientListDeletedSecretPropertiesOptions, SecretClientListSecretPropertiesOptions,
    SecretClientListSecretPropertiesVersionsOptions, SecretClientUpdateSecretPropertiesOptions,
    SetSecretParameters, UpdateSecretPropertiesParameters,
};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use common::{Env, Handler};
use futures::TryStreamExt;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use time::OffsetDateTime;

/// A demo vault (it holds the seeded `*-prd-apikey` secrets).
const VAULT: &str = "kv-consumers-prd";

/// A sandbox and an official client of one of its vaults.
struct Kv {
    env: Env,
    base: String,
    client: SecretClient,
}

impl Kv {
    async fn start() -> Kv {
        let env = Env::start().await;
        let client = client(&env, None);
        let base = env.info.endpoints.key_vaults[VAULT].clone();
        Kv { env, base, client }
    }

    /// Sets `name` to `value` and answers the new version's id.
    async fn set(&self, name: &str, value: &str) -> String {
        let params = SetSecretParameters {
            value: Some(value.into()),
            ..Default::default()
        };
        let secret = self
            .client
            .set_secret(name, params.try_into().unwrap(), None)
            .await
            .unwrap()
            .into_model()
            .unwrap();
        assert_eq!(secret.value.as_deref(), Some(value));
        secret.resource_id().unwrap().version.unwrap()
    }
}

/// The official client for the demo vault, trusting the sandbox CA, authenticating as the
/// sandbox service principal; `api_version` overrides the client's default.
fn client(env: &Env, api_version: Option<&str>) -> SecretClient {
    let transport = Transport::new(Arc::new(env.tls_client()));
    let mut custom = CustomConfiguration::default();
    custom.authority_host = env.info.env["AZURE_AUTHORITY_HOST"].clone();
    let client_options = ClientOptions {
        transport: Some(transport),
        cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
        ..Default::default()
    };
    let credential = ClientSecretCredential::new(
        &env.info.env["AZURE_TENANT_ID"],
        env.info.env["SANDBOX_CLIENT_ID"].clone(),
        env.info.env["SANDBOX_CLIENT_SECRET"].clone().into(),
        Some(ClientSecretCredentialOptions {
            client_options: client_options.clone(),
        }),
    )
    .unwrap();
    let mut options = SecretClientOptions {
        client_options,
        // The vault listens on 127.0.0.1, not a subdomain of vault.azure.net.
        verify_challenge_resource: Some(false),
        ..Default::default()
    };
    if let Some(v) = api_version {
        options.api_version = v.to_string();
    }
    let base = &env.info.endpoints.key_vaults[VAULT];
    SecretClient::new(base, credential, Some(options)).unwrap()
}

/// Status, `error.code` as the client read it, and the error body of an HTTP error.
fn http_error(e: &azure_core::Error) -> (u16, Option<String>, Value) {
    match e.kind() {
        azure_core::error::ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let body = raw_response
                .as_ref()
                .map(|r| serde_json::from_slice(r.body()).unwrap_or_default())
                .unwrap_or_default();
            (u16::from(*status), error_code.clone(), body)
        }
        _ => panic!("expected an HTTP error, got {e}"),
    }
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).unwrap()
}

/// Get (latest), as the product reads a secret: the seeded value, its id and attributes.
#[tokio::test]
async fn get_latest_secret() {
    let kv = Kv::start().await;
    let secret = kv
        .client
        .get_secret("reference-prd-apikey", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(secret.value.as_deref().map(str::len), Some(32));
    let id = secret.resource_id().unwrap();
    assert_eq!(id.name, "reference-prd-apikey");
    assert_eq!(format!("{}/", id.vault_url), kv.base);
    let version = id.version.unwrap();
    assert!(
        version.len() == 32 && version.chars().all(|c| c.is_ascii_hexdigit()),
        "{version}"
    );
    let attributes = secret.attributes.unwrap();
    assert_eq!(attributes.enabled, Some(true));
    assert!(attributes.created.is_some() && attributes.updated.is_some());
    assert_eq!(
        attributes.recovery_level,
        Some(DeletionRecoveryLevel::RecoverablePurgeable)
    );
    assert_eq!(attributes.recoverable_days, Some(90));

    let err = kv
        .client
        .get_secret("no-such-secret", None)
        .await
        .unwrap_err();
    let (status, code, _) = http_error(&err);
    assert_eq!((status, code.as_deref()), (404, Some("SecretNotFound")));
}

/// Set, as the product writes: a new version with its content type, tags and attributes, the
/// previous version named (api-version 2025-07-01, the client's default).
#[tokio::test]
async fn set_secret_adds_a_version() {
    let kv = Kv::start().await;
    let before = kv
        .client
        .get_secret("orders-prd-apikey", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let params = SetSecretParameters {
        value: Some("rotated-by-sdk".into()),
        content_type: Some("text/plain".into()),
        tags: Some(HashMap::from([("rotatedBy".into(), "sdk".into())])),
        secret_attributes: Some(SecretAttributes {
            expires: Some(at(2_000_000_000)),
            not_before: Some(at(1_700_000_000)),
            ..Default::default()
        }),
    };
    let set = kv
        .client
        .set_secret("orders-prd-apikey", params.try_into().unwrap(), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(set.value.as_deref(), Some("rotated-by-sdk"));
    assert_eq!(set.content_type.as_deref(), Some("text/plain"));
    assert_eq!(set.tags.as_ref().unwrap()["rotatedBy"], "sdk");
    let attributes = set.attributes.as_ref().unwrap();
    assert_eq!(attributes.expires, Some(at(2_000_000_000)));
    assert_eq!(attributes.not_before, Some(at(1_700_000_000)));
    assert_eq!(attributes.enabled, Some(true));
    let old_version = before.resource_id().unwrap().version.unwrap();
    assert_eq!(set.previous_version.as_deref(), Some(old_version.as_str()));
    assert_ne!(set.resource_id().unwrap().version, Some(old_version));

    let read = kv
        .client
        .get_secret("orders-prd-apikey", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(read.value.as_deref(), Some("rotated-by-sdk"));
    assert_eq!(read.id, set.id);
}

/// Get by version: every version keeps its own value.
#[tokio::test]
async fn get_secret_by_version() {
    let kv = Kv::start().await;
    let first = kv.set("versioned-secret", "first").await;
    let second = kv.set("versioned-secret", "second").await;
    for (version, value) in [(&first, "first"), (&second, "second")] {
        let options = SecretClientGetSecretOptions {
            secret_version: Some(version.clone()),
            ..Default::default()
        };
        let secret = kv
            .client
            .get_secret("versioned-secret", Some(options))
            .await
            .unwrap()
            .into_model()
            .unwrap();
        assert_eq!(secret.value.as_deref(), Some(value));
        assert_eq!(
            secret.resource_id().unwrap().version.as_ref(),
            Some(version)
        );
    }
    let options = SecretClientGetSecretOptions {
        secret_version: Some("0123456789abcdef0123456789abcdef".into()),
        ..Default::default()
    };
    let err = kv
        .client
        .get_secret("versioned-secret", Some(options))
        .await
        .unwrap_err();
    assert_eq!(http_error(&err).0, 404);
}

/// List: more secrets than a page holds come back exactly once each, over pages of the default
/// size (25) or of `maxresults`, each page's nextLink an absolute URL with a `$skiptoken`.
#[tokio::test]
async fn list_secrets_pages_through_every_secret() {
    let kv = Kv::start().await;
    for i in 0..30 {
        kv.set(&format!("listed-{i:02}"), &format!("value-{i}"))
            .await;
    }
    let mut names = Vec::new();
    let mut pager = kv.client.list_secret_properties(None).unwrap();
    while let Some(item) = pager.try_next().await.unwrap() {
        let id = item.resource_id().unwrap();
        assert_eq!(id.version, None, "list items name no version: {id:?}");
        assert_eq!(item.attributes.unwrap().enabled, Some(true));
        names.push(id.name);
    }
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "no secret twice: {names:?}");
    for i in 0..30 {
        assert!(names.contains(&format!("listed-{i:02}")), "{names:?}");
    }
    assert!(names.contains(&"healthcheck-prd-apikey".to_string()));
    let total = names.len();
    assert!(total > 30);

    let mut pages = kv.client.list_secret_properties(None).unwrap().into_pages();
    let first = pages
        .try_next()
        .await
        .unwrap()
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(first.value.len(), 25);
    let next = first.next_link.unwrap();
    assert!(
        next.starts_with(&format!("{}secrets?", kv.base)) && next.contains("$skiptoken="),
        "{next}"
    );

    let options = SecretClientListSecretPropertiesOptions {
        maxresults: Some(7),
        ..Default::default()
    };
    let mut pages = kv
        .client
        .list_secret_properties(Some(options))
        .unwrap()
        .into_pages();
    let mut sizes = Vec::new();
    let mut paged = Vec::new();
    while let Some(page) = pages.try_next().await.unwrap() {
        let page = page.into_model().unwrap();
        sizes.push(page.value.len());
        paged.extend(
            page.value
                .into_iter()
                .map(|s| s.resource_id().unwrap().name),
        );
    }
    assert_eq!(sizes.len(), total.div_ceil(7), "{sizes:?}");
    assert!(sizes.iter().all(|&s| s <= 7), "{sizes:?}");
    paged.sort();
    names.sort();
    assert_eq!(paged, names);

    // The pages after the first were asked for with the skip token of the previous nextLink.
    let requests = kv.env.requests().await;
    let followed = requests
        .iter()
        .filter(|r| {
            r["service"] == "keyVault"
                && r["path"] == "/secrets"
                && r["query"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("skiptoken=")
        })
        .count();
    assert_eq!(followed, (total.div_ceil(25) - 1) + (total.div_ceil(7) - 1));
}

/// List versions: every version of one secret, paged, none with a value.
#[tokio::test]
async fn list_versions_pages_through_every_version() {
    let kv = Kv::start().await;
    let mut versions = BTreeSet::new();
    for i in 0..5 {
        versions.insert(kv.set("many-versions", &format!("v{i}")).await);
    }
    let options = SecretClientListSecretPropertiesVersionsOptions {
        maxresults: Some(2),
        ..Default::default()
    };
    let mut pages = kv
        .client
        .list_secret_properties_versions("many-versions", Some(options))
        .unwrap()
        .into_pages();
    let mut sizes = Vec::new();
    let mut listed = BTreeSet::new();
    while let Some(page) = pages.try_next().await.unwrap() {
        let page = page.into_model().unwrap();
        sizes.push(page.value.len());
        for item in page.value {
            let id = item.resource_id().unwrap();
            assert_eq!(id.name, "many-versions");
            listed.insert(id.version.unwrap());
        }
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(listed, versions);

    // A name that does not exist has no versions.
    let mut none = kv
        .client
        .list_secret_properties_versions("never-written", None)
        .unwrap();
    assert!(none.try_next().await.unwrap().is_none());
}

/// Update properties: content type, tags and attributes change, the value does not; a disabled
/// version's value is refused with 403 (Forbidden / SecretDisabled) until it is enabled again.
#[tokio::test]
async fn update_properties_changes_metadata_not_value() {
    let kv = Kv::start().await;
    let version = kv.set("updatable", "the-value").await;
    let params = UpdateSecretPropertiesParameters {
        content_type: Some("application/x-api-key".into()),
        tags: Some(HashMap::from([("owner".into(), "team-a".into())])),
        secret_attributes: Some(SecretAttributes {
            enabled: Some(false),
            expires: Some(at(2_100_000_000)),
            ..Default::default()
        }),
    };
    let options = SecretClientUpdateSecretPropertiesOptions {
        secret_version: Some(version.clone()),
        ..Default::default()
    };
    let updated = kv
        .client
        .update_secret_properties("updatable", params.try_into().unwrap(), Some(options))
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(updated.value, None, "an update answers no value");
    assert_eq!(
        updated.content_type.as_deref(),
        Some("application/x-api-key")
    );
    assert_eq!(updated.tags.as_ref().unwrap()["owner"], "team-a");
    let attributes = updated.attributes.clone().unwrap();
    assert_eq!(attributes.enabled, Some(false));
    assert_eq!(attributes.expires, Some(at(2_100_000_000)));
    assert_eq!(updated.resource_id().unwrap().version, Some(version));

    let err = kv.client.get_secret("updatable", None).await.unwrap_err();
    let (status, code, body) = http_error(&err);
    assert_eq!((status, code.as_deref()), (403, Some("Forbidden")));
    assert_eq!(body["error"]["innererror"]["code"], "SecretDisabled");

    // Without a version the latest one is updated; attributes not sent stay as they were.
    let params = UpdateSecretPropertiesParameters {
        secret_attributes: Some(SecretAttributes {
            enabled: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let enabled = kv
        .client
        .update_secret_properties("updatable", params.try_into().unwrap(), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(enabled.attributes.unwrap().expires, Some(at(2_100_000_000)));
    assert_eq!(enabled.tags.unwrap()["owner"], "team-a");
    let read = kv
        .client
        .get_secret("updatable", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(read.value.as_deref(), Some("the-value"));
    assert_eq!(read.content_type.as_deref(), Some("application/x-api-key"));
}

/// Delete: a DeletedSecret with its recovery id and dates (purge scheduled 90 days on); the
/// secret is gone from get and list, and its name cannot be set again (409 Conflict /
/// ObjectIsDeletedButRecoverable).
#[tokio::test]
async fn delete_soft_deletes() {
    let kv = Kv::start().await;
    let version = kv.set("to-delete", "doomed").await;
    let deleted = kv
        .client
        .delete_secret("to-delete", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(
        deleted.recovery_id.as_deref(),
        Some(format!("{}deletedsecrets/to-delete", kv.base).as_str())
    );
    assert_eq!(deleted.resource_id().unwrap().version, Some(version));
    assert_eq!(deleted.value, None);
    let (deleted_date, purge_date) = (
        deleted.deleted_date.unwrap(),
        deleted.scheduled_purge_date.unwrap(),
    );
    assert_eq!(purge_date - deleted_date, time::Duration::days(90));

    let err = kv.client.get_secret("to-delete", None).await.unwrap_err();
    let (status, code, _) = http_error(&err);
    assert_eq!((status, code.as_deref()), (404, Some("SecretNotFound")));

    let mut pager = kv.client.list_secret_properties(None).unwrap();
    while let Some(item) = pager.try_next().await.unwrap() {
        assert_ne!(item.resource_id().unwrap().name, "to-delete");
    }

    let params = SetSecretParameters {
        value: Some("again".into()),
        ..Default::default()
    };
    let err = kv
        .client
        .set_secret("To-Delete", params.try_into().unwrap(), None)
        .await
        .unwrap_err();
    let (status, code, body) = http_error(&err);
    assert_eq!((status, code.as_deref()), (409, Some("Conflict")));
    assert_eq!(
        body["error"]["innererror"]["code"],
        "ObjectIsDeletedButRecoverable"
    );

    // Deleting it again, or a name that never existed, is a 404.
    let err = kv
        .client
        .delete_secret("to-delete", None)
        .await
        .unwrap_err();
    assert_eq!(http_error(&err).0, 404);
}

/// Get deleted and list deleted: the deleted secrets with their recovery fields, paged.
#[tokio::test]
async fn get_and_list_deleted_secrets() {
    let kv = Kv::start().await;
    for name in ["gone-a", "gone-b", "gone-c"] {
        kv.set(name, "x").await;
        kv.client.delete_secret(name, None).await.unwrap();
    }
    let got = kv
        .client
        .get_deleted_secret("gone-b", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(
        got.recovery_id.as_deref(),
        Some(format!("{}deletedsecrets/gone-b", kv.base).as_str())
    );
    assert_eq!(got.resource_id().unwrap().name, "gone-b");
    assert!(got.deleted_date.is_some() && got.scheduled_purge_date.is_some());

    let options = SecretClientListDeletedSecretPropertiesOptions {
        maxresults: Some(1),
        ..Default::default()
    };
    let mut pages = kv
        .client
        .list_deleted_secret_properties(Some(options))
        .unwrap()
        .into_pages();
    let mut names = Vec::new();
    while let Some(page) = pages.try_next().await.unwrap() {
        let page = page.into_model().unwrap();
        assert_eq!(page.value.len(), 1);
        for item in page.value {
            assert!(item.deleted_date.is_some() && item.scheduled_purge_date.is_some());
            let name = item.id.unwrap().rsplit('/').next().unwrap().to_string();
            assert_eq!(
                item.recovery_id.unwrap(),
                format!("{}deletedsecrets/{name}", kv.base)
            );
            names.push(name);
        }
    }
    assert_eq!(names, ["gone-a", "gone-b", "gone-c"]);

    // A live secret is not a deleted one.
    let err = kv
        .client
        .get_deleted_secret("healthcheck-prd-apikey", None)
        .await
        .unwrap_err();
    let (status, code, _) = http_error(&err);
    assert_eq!((status, code.as_deref()), (404, Some("SecretNotFound")));
}

/// Recover: the secret is back with every version, and no longer among the deleted.
#[tokio::test]
async fn recover_restores_every_version() {
    let kv = Kv::start().await;
    let first = kv.set("recoverable", "one").await;
    let second = kv.set("recoverable", "two").await;
    kv.client.delete_secret("recoverable", None).await.unwrap();
    let recovered = kv
        .client
        .recover_deleted_secret("recoverable", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(recovered.resource_id().unwrap().version, Some(second));
    assert_eq!(recovered.value, None, "recover answers no value");

    let latest = kv
        .client
        .get_secret("recoverable", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(latest.value.as_deref(), Some("two"));
    let options = SecretClientGetSecretOptions {
        secret_version: Some(first),
        ..Default::default()
    };
    let old = kv
        .client
        .get_secret("recoverable", Some(options))
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(old.value.as_deref(), Some("one"));

    let err = kv
        .client
        .get_deleted_secret("recoverable", None)
        .await
        .unwrap_err();
    assert_eq!(http_error(&err).0, 404);
    // Recovering what is not deleted is a 404 too.
    let err = kv
        .client
        .recover_deleted_secret("recoverable", None)
        .await
        .unwrap_err();
    assert_eq!(http_error(&err).0, 404);
}

/// Purge: 204, the secret gone for good, its name free for a new secret without the old
/// versions.
#[tokio::test]
async fn purge_frees_the_name() {
    let kv = Kv::start().await;
    kv.set("purgeable", "old-1").await;
    kv.set("purgeable", "old-2").await;
    // Purging a live secret is refused: only deleted secrets can be purged.
    let err = kv
        .client
        .purge_deleted_secret("purgeable", None)
        .await
        .unwrap_err();
    assert_eq!(http_error(&err).0, 404);

    kv.client.delete_secret("purgeable", None).await.unwrap();
    let purged = kv
        .client
        .purge_deleted_secret("purgeable", None)
        .await
        .unwrap();
    assert_eq!(u16::from(purged.status()), 204);
    let err = kv
        .client
        .get_deleted_secret("purgeable", None)
        .await
        .unwrap_err();
    assert_eq!(http_error(&err).0, 404);

    let new_version = kv.set("purgeable", "fresh").await;
    let mut versions = Vec::new();
    let mut pager = kv
        .client
        .list_secret_properties_versions("purgeable", None)
        .unwrap();
    while let Some(item) = pager.try_next().await.unwrap() {
        versions.push(item.resource_id().unwrap().version.unwrap());
    }
    assert_eq!(versions, vec![new_version]);
}

/// The specification excerpt.
fn spec() -> Value {
    serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/specs/keyvault-secrets-paths.json"
        ))
        .unwrap(),
    )
    .unwrap()
}

fn spec_versions(spec: &Value) -> Vec<String> {
    spec["x-stable-api-versions"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Every api-version the specification defines is accepted (the official client set to each).
#[tokio::test]
async fn every_spec_api_version_is_accepted() {
    let env = Env::start().await;
    let versions = spec_versions(&spec());
    assert!(versions.contains(&"2025-07-01".to_string()));
    for version in versions {
        let secret = client(&env, Some(&version))
            .get_secret("healthcheck-prd-apikey", None)
            .await
            .unwrap_or_else(|e| panic!("api-version {version}: {e}"))
            .into_model()
            .unwrap();
        assert_eq!(secret.value.as_deref().map(str::len), Some(32));
    }
    let logged: BTreeSet<String> = env
        .requests()
        .await
        .iter()
        .filter(|r| r["service"] == "keyVault" && r["status"] == 200)
        .filter_map(|r| {
            url::form_urlencoded::parse(r["query"].as_str()?.as_bytes())
                .find(|(k, _)| k == "api-version")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(logged.len(), spec_versions(&spec()).len(), "{logged:?}");
}

/// The operation of the spec a request is, matched by method and path template: `None` when
/// the spec has no such path and method.
fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let paths = spec["paths"].as_object().unwrap();
    // Literal segments first: `/secrets/restore` is not the secret named "restore".
    let mut candidates: Vec<(&String, &Value)> = paths.iter().collect();
    candidates.sort_by_key(|(template, _)| template.matches('{').count());
    candidates.into_iter().find_map(|(template, item)| {
        let op = item.get(method.to_ascii_lowercase())?;
        let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        let matches = parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(part, segment)| {
                match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    None => part == segment,
                    Some(name) => {
                        let param = parameter(spec, op, name, "path");
                        if segment.is_empty() {
                            // Only a fragment the spec calls optional may be left empty.
                            param["description"]
                                .as_str()
                                .is_some_and(|d| d.contains("This URI fragment is optional"))
                        } else {
                            param["pattern"].as_str().is_none_or(|p| {
                                p == "^[0-9a-zA-Z-]+$"
                                    && segment
                                        .chars()
                                        .all(|c| c.is_ascii_alphanumeric() || c == '-')
                            })
                        }
                    }
                }
            });
        matches.then_some(op)
    })
}

/// The parameter `name` in `location` of an operation, `$ref`s resolved.
fn parameter<'a>(spec: &'a Value, op: &'a Value, name: &str, location: &str) -> &'a Value {
    parameters(spec, op)
        .into_iter()
        .find(|p| p["name"] == name && p["in"] == location)
        .unwrap_or(&Value::Null)
}

fn parameters<'a>(spec: &'a Value, op: &'a Value) -> Vec<&'a Value> {
    op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match p["$ref"].as_str() {
            Some(r) => &spec["parameters"][r.trim_start_matches("#/parameters/")],
            None => p,
        })
        .collect()
}

/// The matcher itself: the spec's templates and what they refuse.
#[test]
fn spec_matching_follows_the_templates() {
    let spec = spec();
    let id = |m: &str, p: &str| operation(&spec, m, p).map(|op| op["operationId"].clone());
    assert_eq!(id("GET", "/secrets/a-b/"), Some("GetSecret".into()));
    assert_eq!(id("GET", "/secrets/a-b/0123"), Some("GetSecret".into()));
    assert_eq!(
        id("GET", "/secrets/a-b/versions"),
        Some("GetSecretVersions".into())
    );
    assert_eq!(id("PUT", "/secrets/a-b"), Some("SetSecret".into()));
    assert_eq!(id("POST", "/secrets/restore"), Some("RestoreSecret".into()));
    assert_eq!(
        id("POST", "/deletedsecrets/x/recover"),
        Some("RecoverDeletedSecret".into())
    );
    assert_eq!(
        id("DELETE", "/deletedsecrets/x"),
        Some("PurgeDeletedSecret".into())
    );
    // Not in the spec: a name the pattern refuses, an empty required version, unknown paths.
    assert_eq!(id("PUT", "/secrets/a_b"), None);
    assert_eq!(id("PATCH", "/secrets/a-b/"), None);
    assert_eq!(id("GET", "/secrets/a-b"), None);
    assert_eq!(id("POST", "/secrets/a-b"), None);
    assert_eq!(id("GET", "/keys"), None);
}

/// Every request the product's own Key Vault client sends during a rotation (reads, the
/// challenge, writes) is an operation of the spec: path template and method, every required
/// query parameter present, none it does not define, an api-version the spec has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_products_requests_match_the_spec() {
    let spec = spec();
    let versions = spec_versions(&spec);
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");

    let requests = env.requests().await;
    let key_vault: Vec<&Value> = requests
        .iter()
        .filter(|r| r["service"] == "keyVault")
        .collect();
    let methods: BTreeSet<&str> = key_vault
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert!(
        methods.contains("GET") && methods.contains("PUT"),
        "a rotation reads and writes secrets: {key_vault:#?}"
    );
    for r in key_vault {
        let (method, path) = (r["method"].as_str().unwrap(), r["path"].as_str().unwrap());
        let op = operation(&spec, method, path)
            .unwrap_or_else(|| panic!("{method} {path} is not in the Key Vault secrets spec"));
        let query: HashMap<String, String> =
            url::form_urlencoded::parse(r["query"].as_str().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let defined: Vec<&Value> = parameters(&spec, op)
            .into_iter()
            .filter(|p| p["in"] == "query")
            .collect();
        for p in &defined {
            let name = p["name"].as_str().unwrap();
            if p["required"] == true {
                assert!(query.contains_key(name), "{method} {path}: no {name}");
            }
        }
        for name in query.keys() {
            assert!(
                defined.iter().any(|p| p["name"] == name.as_str()),
                "{method} {path}: {name} is not a parameter of {}",
                op["operationId"]
            );
        }
        assert!(
            versions.contains(&query["api-version"]),
            "{method} {path}: api-version {} is not in the spec",
            query["api-version"]
        );
    }
}

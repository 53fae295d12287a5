//! The little of Azure Blob Storage the run lock and the audit trail need: create a container
//! and an empty blob, acquire, renew and release a lease on it; create an append blob, append a
//! block at a position, read a blob (or a range of it), list a container's blobs. Hand-written REST on the shared client (no
//! storage SDK is in use), authenticated with Shared Key (a connection string, or Azurite's
//! development account) or with an Entra ID token (identity-based `AzureWebJobsStorage__*`).

use crate::azure::call::Call;
use crate::azure::http::{kind_for_status, transport_error};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use crate::settings::Settings;
use azure_core::credentials::TokenCredential;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::Method;
use sha2::Sha256;
use std::sync::Arc;

/// The Functions host's storage setting: a connection string, or the prefix of the
/// identity-based form (`AzureWebJobsStorage__blobServiceUri`, `AzureWebJobsStorage__accountName`).
pub const STORAGE_SETTING: &str = "AzureWebJobsStorage";
/// The REST API version sent as `x-ms-version`.
pub const API_VERSION: &str = "2021-12-02";
/// Token scope of Azure Storage.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// Azurite's well-known development account (`UseDevelopmentStorage=true`).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// The public, documented key of [`DEV_ACCOUNT`].
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// How requests to the account are authorised.
#[derive(Clone)]
pub enum StorageAuth {
    /// Shared Key: HMAC-SHA256 of the canonical request with the account key (base64).
    SharedKey(Secret),
    /// An Entra ID bearer token for [`STORAGE_SCOPE`].
    Token(Arc<dyn TokenCredential>),
}

/// A storage account's blob endpoint and how to authenticate to it. `Debug` leaves the key out.
#[derive(Clone)]
pub struct StorageAccount {
    /// The account name.
    pub name: String,
    /// The blob service endpoint (`https://<account>.blob.core.windows.net/`, or Azurite's
    /// path-style `http://127.0.0.1:10000/devstoreaccount1`).
    pub blob_endpoint: url::Url,
    auth: StorageAuth,
}

impl std::fmt::Debug for StorageAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match self.auth {
            StorageAuth::SharedKey(_) => "SharedKey",
            StorageAuth::Token(_) => "Token",
        };
        f.debug_struct("StorageAccount")
            .field("name", &self.name)
            .field("blob_endpoint", &self.blob_endpoint.as_str())
            .field("auth", &auth)
            .finish()
    }
}

/// Which identity the host storage's identity-based connection asks for, read exactly as the
/// Functions host reads `AzureWebJobsStorage__*` ("identity-based connections": `credential`,
/// `clientId` or `managedIdentityResourceId`, and `tenantId` + `clientId` + `clientSecret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageIdentity {
    /// Nothing said: the identity the rotator authenticates with everywhere else.
    Default,
    /// `__credential=managedidentity`: the system-assigned identity (`None`) or the user-assigned
    /// one `__clientId` / `__managedIdentityResourceId` names.
    ManagedIdentity(Option<UserAssigned>),
    /// `__tenantId`, `__clientId` and `__clientSecret`: a service principal (local development).
    ClientSecret {
        /// The Entra tenant.
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// The client secret.
        secret: Secret,
    },
}

/// A user-assigned managed identity, by client id or by resource id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAssigned {
    /// `__clientId`.
    ClientId(String),
    /// `__managedIdentityResourceId`.
    ResourceId(String),
}

impl UserAssigned {
    /// The SDK's name for it.
    pub fn to_sdk(&self) -> azure_identity::UserAssignedId {
        match self {
            UserAssigned::ClientId(id) => azure_identity::UserAssignedId::ClientId(id.clone()),
            UserAssigned::ResourceId(r) => azure_identity::UserAssignedId::ResourceId(r.clone()),
        }
    }
}

impl StorageIdentity {
    /// The identity the settings ask for; a value the host would not accept is an error naming
    /// the setting (the secret is never quoted).
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let get = |suffix: &str| {
            settings
                .get(&format!("{STORAGE_SETTING}__{suffix}"))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let client_id = get("clientId");
        let resource_id = get("managedIdentityResourceId");
        if let Some(id) = client_id {
            if uuid::Uuid::parse_str(id).is_err() {
                return Err(Error::config(format!(
                    "{STORAGE_SETTING}__clientId: not a client ID; expected the GUID of the user-assigned identity (or app registration)"
                )));
            }
        }
        match get("credential") {
            Some(c) if c.eq_ignore_ascii_case("managedidentity") => {
                let user_assigned = match (client_id, resource_id) {
                    (Some(_), Some(_)) => {
                        return Err(Error::config(format!(
                            "{STORAGE_SETTING}__clientId and {STORAGE_SETTING}__managedIdentityResourceId: set one of them, not both"
                        )))
                    }
                    (Some(id), None) => Some(UserAssigned::ClientId(id.into())),
                    (None, Some(r)) => Some(UserAssigned::ResourceId(r.into())),
                    (None, None) => None,
                };
                Ok(StorageIdentity::ManagedIdentity(user_assigned))
            }
            Some(_) => Err(Error::config(format!(
                "{STORAGE_SETTING}__credential: expected \"managedidentity\" (or leave it unset)"
            ))),
            None => match (get("tenantId"), client_id, get("clientSecret")) {
                (None, None, None) if resource_id.is_none() => Ok(StorageIdentity::Default),
                (Some(tenant), Some(client), Some(secret)) => Ok(StorageIdentity::ClientSecret {
                    tenant_id: tenant.to_string(),
                    client_id: client.to_string(),
                    secret: Secret::new(secret),
                }),
                _ => Err(Error::config(format!(
                    "{STORAGE_SETTING}__clientId / __managedIdentityResourceId: need {STORAGE_SETTING}__credential=managedidentity (a user-assigned identity), or {STORAGE_SETTING}__tenantId, __clientId and __clientSecret together (a service principal)"
                ))),
            },
        }
    }
}

impl StorageAccount {
    /// The account `AzureWebJobsStorage` names, or `None` when neither it nor its identity-based
    /// form is set. The identity form authenticates with the credential `credential` builds for
    /// the [`StorageIdentity`] the settings ask for (its error is reported only then).
    pub fn from_settings(
        settings: &Settings,
        credential: impl FnOnce(StorageIdentity) -> Result<Arc<dyn TokenCredential>>,
    ) -> Result<Option<Self>> {
        if let Some(cs) = settings.get(STORAGE_SETTING) {
            return Self::from_connection_string(cs).map(Some);
        }
        let service_uri = settings.get(&format!("{STORAGE_SETTING}__blobServiceUri"));
        let account_name = settings.get(&format!("{STORAGE_SETTING}__accountName"));
        if service_uri.is_none() && account_name.is_none() {
            return Ok(None);
        }
        let blob_endpoint = match (service_uri, account_name) {
            (Some(uri), _) => url::Url::parse(uri).map_err(|e| {
                Error::config(format!(
                    "{STORAGE_SETTING}__blobServiceUri: not a URL ({e}); expected https://<account>.blob.core.windows.net"
                ))
            })?,
            (None, Some(name)) => {
                let suffix = match settings.cloud.name.as_str() {
                    "china" => "core.chinacloudapi.cn",
                    "usgovernment" => "core.usgovcloudapi.net",
                    "public" => "core.windows.net",
                    _ => {
                        return Err(Error::config(format!(
                            "{STORAGE_SETTING}__accountName: a custom cloud needs {STORAGE_SETTING}__blobServiceUri instead"
                        )))
                    }
                };
                url::Url::parse(&format!("https://{name}.blob.{suffix}/")).map_err(|e| {
                    Error::config(format!(
                        "{STORAGE_SETTING}__accountName: not an account name ({e})"
                    ))
                })?
            }
            (None, None) => unreachable!("checked above"),
        };
        let name = account_name
            .map(str::to_string)
            .or_else(|| account_from_endpoint(&blob_endpoint))
            .ok_or_else(|| {
                Error::config(format!(
                    "{STORAGE_SETTING}__blobServiceUri: cannot tell the account name from the host; set {STORAGE_SETTING}__accountName too"
                ))
            })?;
        let identity = StorageIdentity::from_settings(settings)?;
        Ok(Some(Self {
            name,
            blob_endpoint,
            auth: StorageAuth::Token(credential(identity)?),
        }))
    }

    /// Parses `DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...[;BlobEndpoint=...]
    /// [;EndpointSuffix=...]` or `UseDevelopmentStorage=true`. Errors never repeat the key.
    pub fn from_connection_string(cs: &str) -> Result<Self> {
        let bad = |what: &str| {
            Error::config(format!(
                "{STORAGE_SETTING}: {what}; expected DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;EndpointSuffix=... or UseDevelopmentStorage=true"
            ))
        };
        let mut fields = std::collections::HashMap::new();
        for part in cs.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            // Keys end in '=' padding, so split at the first '=' only.
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad("not a connection string"))?;
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let get = |k: &str| fields.get(k).filter(|v| !v.is_empty()).cloned();
        if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            let endpoint = get("developmentstorageproxyuri")
                .map(|proxy| format!("{}/{DEV_ACCOUNT}", proxy.trim_end_matches('/')))
                .unwrap_or_else(|| DEV_BLOB_ENDPOINT.to_string());
            return Ok(Self {
                name: DEV_ACCOUNT.into(),
                blob_endpoint: url::Url::parse(&endpoint)
                    .map_err(|_| bad("DevelopmentStorageProxyUri is not a URL"))?,
                auth: StorageAuth::SharedKey(Secret::new(DEV_KEY)),
            });
        }
        let name = get("accountname").ok_or_else(|| bad("no AccountName"))?;
        let key = get("accountkey").ok_or_else(|| bad("no AccountKey"))?;
        if B64.decode(key.as_bytes()).is_err() {
            return Err(bad("AccountKey is not base64"));
        }
        let endpoint = match get("blobendpoint") {
            Some(e) => e,
            None => format!(
                "{}://{name}.blob.{}",
                get("defaultendpointsprotocol").unwrap_or_else(|| "https".into()),
                get("endpointsuffix").unwrap_or_else(|| "core.windows.net".into())
            ),
        };
        let blob_endpoint =
            url::Url::parse(&endpoint).map_err(|_| bad("the blob endpoint is not a URL"))?;
        Ok(Self {
            name,
            blob_endpoint,
            auth: StorageAuth::SharedKey(Secret::new(key)),
        })
    }

    /// The URL of `container` or `container/blob`.
    fn url(&self, path: &str) -> url::Url {
        let mut url = self.blob_endpoint.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/{path}"));
        url
    }
}

fn account_from_endpoint(endpoint: &url::Url) -> Option<String> {
    let host = endpoint.host_str()?;
    host.split_once(".blob.")
        .map(|(account, _)| account.to_string())
}

/// The result of asking for a lease: taken, or somebody else holds one (not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The lease is ours, with this id.
    Acquired(String),
    /// Another holder has an active lease.
    AlreadyLeased,
}

/// The most one Append Block may carry: 4 MiB (newer service versions take 100 MiB; the
/// version this client sends, and Azurite, take 4 MiB).
pub const MAX_APPEND_BLOCK: usize = 4 * 1024 * 1024;

/// The most blocks an append blob holds; an Append Block beyond it is refused with
/// `BlockCountExceedsLimit`.
pub const MAX_APPEND_BLOCKS: u64 = 50_000;

/// What an Append Block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Appended at `offset`; the blob now has `blocks` committed blocks.
    Appended {
        /// Where the block starts.
        offset: u64,
        /// The blob's committed blocks, this one included.
        blocks: u64,
    },
    /// The blob is no longer as long as the position said (`412
    /// AppendPositionConditionNotMet`): someone else appended first.
    Moved,
    /// The blob holds [`MAX_APPEND_BLOCKS`] blocks already (`409 BlockCountExceedsLimit`).
    Full,
}

/// A blob of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlob {
    /// Its name.
    pub name: String,
    /// Its length in bytes.
    pub length: u64,
}

/// The blobs of one page of List Blobs (`<EnumerationResults>`) and its `NextMarker`, if any.
fn parse_blob_list(body: &str) -> Result<(Vec<ListedBlob>, Option<String>)> {
    let tag = |within: &str, name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = within.find(&open)? + open.len();
        let end = within[start..].find(&format!("</{name}>"))? + start;
        Some(xml_unescape(&within[start..end]))
    };
    let bad = || {
        Error::new(
            ErrorKind::Unavailable,
            "blob storage answered a blob list that is not <EnumerationResults>",
        )
    };
    if !body.contains("<EnumerationResults") {
        return Err(bad());
    }
    let mut blobs = Vec::new();
    for part in body.split("<Blob>").skip(1) {
        let part = part.split("</Blob>").next().unwrap_or("");
        let name = tag(part, "Name").ok_or_else(bad)?;
        let length = tag(part, "Content-Length")
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(bad)?;
        blobs.push(ListedBlob { name, length });
    }
    let next = tag(body, "NextMarker").filter(|m| !m.is_empty());
    Ok((blobs, next))
}

/// The five predefined XML entities (blob names may hold `&`, `<`, ...).
fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Blob REST calls on one account, over the shared HTTP client.
#[derive(Clone, Debug)]
pub struct BlobClient {
    http: reqwest::Client,
    account: Arc<StorageAccount>,
}

impl BlobClient {
    /// A client for `account` sending through `http`.
    pub fn new(http: reqwest::Client, account: StorageAccount) -> Self {
        Self {
            http,
            account: Arc::new(account),
        }
    }

    /// The account.
    pub fn account(&self) -> &StorageAccount {
        &self.account
    }

    /// Creates `container` (private); an existing one is fine.
    pub async fn create_container(&self, call: &Call, container: &str) -> Result<()> {
        let r = self
            .send(
                call,
                Method::PUT,
                container,
                &[("restype", "container")],
                &[],
            )
            .await?;
        match r.status().as_u16() {
            201 => Ok(()),
            409 if error_code(&r) == Some("ContainerAlreadyExists") => Ok(()),
            _ => Err(parse_error(r).await),
        }
    }

    /// Creates an empty block blob unless one exists (a leased one included).
    pub async fn create_empty_blob_if_missing(
        &self,
        call: &Call,
        container: &str,
        blob: &str,
    ) -> Result<()> {
        let path = format!("{container}/{blob}");
        let headers = [("x-ms-blob-type", "BlockBlob"), ("if-none-match", "*")];
        let r = self.send(call, Method::PUT, &path, &[], &headers).await?;
        match r.status().as_u16() {
            // 409 BlobAlreadyExists; 412 when it exists and is leased (LeaseIdMissing) or the
            // condition failed: in every case the blob is there.
            201 | 409 | 412 => Ok(()),
            _ => Err(parse_error(r).await),
        }
    }

    /// Asks for a lease of `seconds` (15–60, or -1 for infinite) with the id `proposed`.
    /// A missing container or blob is a [`ErrorKind::NotFound`] error.
    pub async fn acquire_lease(
        &self,
        call: &Call,
        container: &str,
        blob: &str,
        seconds: i32,
        proposed: &str,
    ) -> Result<LeaseOutcome> {
        let seconds = seconds.to_string();
        let headers = [
            ("x-ms-lease-action", "acquire"),
            ("x-ms-lease-duration", seconds.as_str()),
            ("x-ms-proposed-lease-id", proposed),
        ];
        let r = self.lease(call, container, blob, &headers).await?;
        match r.status().as_u16() {
            200 | 201 => Ok(LeaseOutcome::Acquired(
                r.headers()
                    .get("x-ms-lease-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(proposed)
                    .to_string(),
            )),
            409 if error_code(&r) == Some("LeaseAlreadyPresent") => Ok(LeaseOutcome::AlreadyLeased),
            _ => Err(parse_error(r).await),
        }
    }

    /// Renews the lease `id` for another lease period.
    pub async fn renew_lease(
        &self,
        call: &Call,
        container: &str,
        blob: &str,
        id: &str,
    ) -> Result<()> {
        let headers = [("x-ms-lease-action", "renew"), ("x-ms-lease-id", id)];
        let r = self.lease(call, container, blob, &headers).await?;
        match r.status().as_u16() {
            200 => Ok(()),
            _ => Err(parse_error(r).await),
        }
    }

    /// Releases the lease `id`, so another caller may acquire at once.
    pub async fn release_lease(
        &self,
        call: &Call,
        container: &str,
        blob: &str,
        id: &str,
    ) -> Result<()> {
        let headers = [("x-ms-lease-action", "release"), ("x-ms-lease-id", id)];
        let r = self.lease(call, container, blob, &headers).await?;
        match r.status().as_u16() {
            200 => Ok(()),
            _ => Err(parse_error(r).await),
        }
    }

    /// Creates an empty append blob. With `overwrite` false it is made only when missing
    /// (`If-None-Match: *`): `Ok(false)` when one exists already. With `overwrite` true an
    /// existing blob is replaced (tests tamper with a trail this way; the product never does).
    /// A missing container is a [`ErrorKind::NotFound`] error.
    pub async fn create_append_blob(
        &self,
        call: &Call,
        container: &str,
        blob: &str,
        overwrite: bool,
    ) -> Result<bool> {
        let path = format!("{container}/{blob}");
        let mut headers = vec![("x-ms-blob-type", "AppendBlob")];
        if !overwrite {
            headers.push(("if-none-match", "*"));
        }
        let r = self.send(call, Method::PUT, &path, &[], &headers).await?;
        match r.status().as_u16() {
            201 => Ok(true),
            // 409 BlobAlreadyExists; 412 when the condition failed (a leased blob says so).
            409 if !overwrite && error_code(&r) == Some("BlobAlreadyExists") => Ok(false),
            412 if !overwrite => Ok(false),
            _ => Err(parse_error(r).await),
        }
    }

    /// Appends `body` (at most [`MAX_APPEND_BLOCK`] bytes) to the append blob as one block,
    /// only if the blob is `position` bytes long (`x-ms-blob-condition-appendpos`).
    pub async fn append_block(
        &self,
        call: &Call,
        container: &str,
        blob: &str,
        position: u64,
        body: Vec<u8>,
    ) -> Result<AppendOutcome> {
        let path = format!("{container}/{blob}");
        let position = position.to_string();
        let headers = [("x-ms-blob-condition-appendpos", position.as_str())];
        let r = self
            .send_body(
                call,
                Method::PUT,
                &path,
                &[("comp", "appendblock")],
                &headers,
                body,
            )
            .await?;
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        match (r.status().as_u16(), error_code(&r)) {
            (201, _) => Ok(AppendOutcome::Appended {
                offset: header("x-ms-blob-append-offset").unwrap_or_default(),
                blocks: header("x-ms-blob-committed-block-count").unwrap_or_default(),
            }),
            (412, Some("AppendPositionConditionNotMet")) => Ok(AppendOutcome::Moved),
            (409, Some("BlockCountExceedsLimit")) => Ok(AppendOutcome::Full),
            _ => Err(parse_error(r).await),
        }
    }

    /// The blob's content (`None` when it or its container does not exist), or the bytes
    /// `first..=last` of it (`x-ms-range`; `first` must be within the blob).
    pub async fn get_blob(
        &self,
        call: &Call,
        container: &str,
        blob: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Vec<u8>>> {
        let path = format!("{container}/{blob}");
        let range = range.map(|(first, last)| format!("bytes={first}-{last}"));
        let headers: Vec<(&str, &str)> = range
            .as_deref()
            .map(|r| ("x-ms-range", r))
            .into_iter()
            .collect();
        let r = self.send(call, Method::GET, &path, &[], &headers).await?;
        match r.status().as_u16() {
            200 | 206 => r
                .bytes()
                .await
                .map(|b| Some(b.to_vec()))
                .map_err(|e| transport_error("blob storage", &e)),
            404 => Ok(None),
            _ => Err(parse_error(r).await),
        }
    }

    /// The blobs of `container` whose names start with `prefix`, in name order, with their
    /// lengths (every page of List Blobs); `None` when the container does not exist.
    pub async fn list_blobs(
        &self,
        call: &Call,
        container: &str,
        prefix: &str,
    ) -> Result<Option<Vec<ListedBlob>>> {
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![
                ("restype", "container"),
                ("comp", "list"),
                ("prefix", prefix),
            ];
            if !marker.is_empty() {
                query.push(("marker", marker.as_str()));
            }
            let r = self.send(call, Method::GET, container, &query, &[]).await?;
            match r.status().as_u16() {
                200 => {}
                404 => return Ok(None),
                _ => return Err(parse_error(r).await),
            }
            let body = r
                .text()
                .await
                .map_err(|e| transport_error("blob storage", &e))?;
            let (page, next) = parse_blob_list(&body)?;
            out.extend(page);
            match next {
                Some(next) => marker = next,
                None => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(out))
    }

    async fn lease(
        &self,
        call: &Call,
        container: &str,
        blob: &str,
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response> {
        let path = format!("{container}/{blob}");
        self.send(call, Method::PUT, &path, &[("comp", "lease")], headers)
            .await
    }

    /// Sends a request with an empty body, signed or with a bearer token.
    async fn send(
        &self,
        call: &Call,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response> {
        self.send_body(call, method, path, query, headers, Vec::new())
            .await
    }

    /// Sends a request with `body` (framed with its `Content-Length`, which Shared Key signs),
    /// signed or with a bearer token.
    async fn send_body(
        &self,
        call: &Call,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response> {
        let mut url = self.account.url(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let date = http_date(time::OffsetDateTime::now_utc());
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        all.push(("x-ms-date".into(), date));
        all.push(("x-ms-version".into(), API_VERSION.into()));
        let length = body.len().to_string();
        let authorization = match &self.account.auth {
            StorageAuth::SharedKey(key) => {
                let mut signed = all.clone();
                signed.push(("content-length".into(), length.clone()));
                let to_sign = string_to_sign(method.as_str(), &self.account.name, &url, &signed);
                format!(
                    "SharedKey {}:{}",
                    self.account.name,
                    sign(key.expose(), &to_sign)?
                )
            }
            StorageAuth::Token(credential) => format!(
                "Bearer {}",
                crate::azure::credential::bearer(call, credential.as_ref(), STORAGE_SCOPE).await?
            ),
        };
        let mut request = self
            .http
            .request(method, url.clone())
            .header("authorization", authorization)
            .header("content-length", length)
            .body(body);
        for (k, v) in &all {
            request = request.header(k.as_str(), v.as_str());
        }
        request
            .send()
            .await
            .map_err(|e| transport_error("blob storage", &e))
    }
}

/// The Shared Key string to sign (Blob service, version 2015-02-21 and later); a body's length
/// is the `content-length` among `headers` (empty in the string when zero). `headers` are lower-case names; standard headers among them
/// (`if-none-match`, ...) go in their fixed slots, `x-ms-*` ones into the canonicalized headers.
pub fn string_to_sign(
    method: &str,
    account: &str,
    url: &url::Url,
    headers: &[(String, String)],
) -> String {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let mut out = String::new();
    out.push_str(method);
    out.push('\n');
    // Content-Length is empty when zero (versions from 2015-02-21).
    for name in [
        "content-encoding",
        "content-language",
        "content-length",
        "content-md5",
        "content-type",
        "date",
        "if-modified-since",
        "if-match",
        "if-none-match",
        "if-unmodified-since",
        "range",
    ] {
        let value = header(name);
        if !(name == "content-length" && value == "0") {
            out.push_str(value);
        }
        out.push('\n');
    }
    let mut ms: Vec<(&str, String)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| (k.as_str(), unfold(v)))
        .collect();
    ms.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in ms {
        out.push_str(&format!("{k}:{v}\n"));
    }
    out.push('/');
    out.push_str(account);
    out.push_str(url.path());
    let mut params: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in url.query_pairs() {
        params
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.into_owned());
    }
    for (k, mut values) in params {
        values.sort();
        out.push_str(&format!("\n{k}:{}", values.join(",")));
    }
    out
}

/// Trims a header value and replaces runs of whitespace by one space, as canonicalization asks.
fn unfold(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Base64 HMAC-SHA256 of `to_sign` with the base64 `account_key`.
pub fn sign(account_key: &str, to_sign: &str) -> Result<String> {
    let key = B64
        .decode(account_key.as_bytes())
        .map_err(|_| Error::config(format!("{STORAGE_SETTING}: AccountKey is not base64")))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(to_sign.as_bytes());
    Ok(B64.encode(mac.finalize().into_bytes()))
}

/// RFC 1123 date in GMT, as `x-ms-date` wants it.
fn http_date(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .expect("a valid date formats")
}

fn error_code(r: &reqwest::Response) -> Option<&str> {
    r.headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
}

/// Maps a storage error answer (`x-ms-error-code` and an XML `<Error><Code/><Message/>`) to the
/// domain error.
async fn parse_error(r: reqwest::Response) -> Error {
    let status = r.status().as_u16();
    let header_code = error_code(&r).map(str::to_string);
    let body = r.text().await.unwrap_or_default();
    parse_error_body(status, header_code, &body)
}

fn parse_error_body(status: u16, header_code: Option<String>, body: &str) -> Error {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].to_string())
    };
    let code = header_code.or_else(|| tag("Code"));
    let message = tag("Message")
        .and_then(|m| m.lines().next().map(str::to_string))
        .unwrap_or_default();
    let mut kind = kind_for_status(status);
    if status == 403 && code.as_deref() == Some("AuthenticationFailed") {
        kind = ErrorKind::Unauthenticated;
    }
    let mut error = Error::new(
        kind,
        format!(
            "blob storage answered {status} {}: {message}",
            code.as_deref().unwrap_or("")
        ),
    )
    .with_status(status);
    if let Some(code) = code {
        error = error.with_code(code);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// A lease request signed for Azurite: the canonical string is written out by hand from
    /// the "Authorize with Shared Key" rules, and the signature was computed independently with
    /// `printf '%s' "$sts" | openssl dgst -sha256 -mac HMAC -macopt hexkey:<key as hex> -binary | base64`.
    #[test]
    fn shared_key_signature_matches_the_documented_scheme() {
        let url = url::Url::parse(
            "http://127.0.0.1:10000/devstoreaccount1/apikey-rotator/run.lock?comp=lease",
        )
        .unwrap();
        let headers: Vec<(String, String)> = [
            ("x-ms-lease-action", "acquire"),
            ("x-ms-lease-duration", "60"),
            (
                "x-ms-proposed-lease-id",
                "3f0f6c2e-9f7a-4f5e-8d7c-2a1b0c9d8e7f",
            ),
            ("x-ms-date", "Tue, 02 Jun 2026 06:00:00 GMT"),
            ("x-ms-version", "2021-12-02"),
            ("content-length", "0"),
            ("if-none-match", "*"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sts = string_to_sign("PUT", DEV_ACCOUNT, &url, &headers);
        let expected = "PUT\n\n\n\n\n\n\n\n\n*\n\n\n\
            x-ms-date:Tue, 02 Jun 2026 06:00:00 GMT\n\
            x-ms-lease-action:acquire\n\
            x-ms-lease-duration:60\n\
            x-ms-proposed-lease-id:3f0f6c2e-9f7a-4f5e-8d7c-2a1b0c9d8e7f\n\
            x-ms-version:2021-12-02\n\
            /devstoreaccount1/devstoreaccount1/apikey-rotator/run.lock\n\
            comp:lease";
        assert_eq!(sts, expected);
        assert_eq!(sign(DEV_KEY, &sts).unwrap(), SIGNATURE);
    }

    const SIGNATURE: &str = "bvdJAXBAIvfFyn3g8RAR0Mi/7iglQWBmwWoKEcNdpsY=";

    #[test]
    fn query_parameters_are_sorted_and_lower_cased() {
        let url = url::Url::parse(
            "https://acct.blob.core.windows.net/c?restype=container&Comp=list&comp=b",
        )
        .unwrap();
        let sts = string_to_sign("GET", "acct", &url, &[]);
        assert!(
            sts.ends_with("/acct/c\ncomp:b,list\nrestype:container"),
            "{sts}"
        );
    }

    #[test]
    fn http_date_is_rfc1123() {
        let t = time::macros::datetime!(2026-06-02 06:00:00 UTC);
        assert_eq!(http_date(t), "Tue, 02 Jun 2026 06:00:00 GMT");
    }

    #[test]
    fn connection_strings() {
        let dev = StorageAccount::from_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(dev.name, DEV_ACCOUNT);
        assert_eq!(dev.blob_endpoint.as_str(), DEV_BLOB_ENDPOINT);

        let cs = "DefaultEndpointsProtocol=https;AccountName=stfunc;AccountKey=a2V5a2V5a2V5;EndpointSuffix=core.chinacloudapi.cn";
        let a = StorageAccount::from_connection_string(cs).unwrap();
        assert_eq!(a.name, "stfunc");
        assert_eq!(
            a.blob_endpoint.as_str(),
            "https://stfunc.blob.core.chinacloudapi.cn/"
        );
        assert_eq!(
            a.url("c/b").as_str(),
            "https://stfunc.blob.core.chinacloudapi.cn/c/b"
        );
        let explicit = format!("AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};BlobEndpoint=http://127.0.0.1:1234/{DEV_ACCOUNT};");
        let a = StorageAccount::from_connection_string(&explicit).unwrap();
        assert_eq!(
            a.url("c/b").as_str(),
            format!("http://127.0.0.1:1234/{DEV_ACCOUNT}/c/b")
        );
        // The key never shows, neither in Debug nor in errors.
        assert!(!format!("{a:?}").contains(DEV_KEY));
        for bad in [
            "AccountName=x".to_string(),
            "AccountName=x;AccountKey=not base64!".to_string(),
            format!("AccountKey={DEV_KEY}"),
            "garbage".to_string(),
        ] {
            let e = StorageAccount::from_connection_string(&bad).unwrap_err();
            assert!(e.to_string().contains(STORAGE_SETTING), "{e}");
            assert!(!e.to_string().contains("not base64!"), "{e}");
            assert!(!e.to_string().contains(DEV_KEY), "{e}");
        }
    }

    #[test]
    fn identity_based_settings_use_a_token() {
        let credential = || -> Result<Arc<dyn TokenCredential>> {
            Ok(Arc::new(crate::azure::credential::CachedCredential::new(
                Arc::new(NoToken),
            )))
        };
        let credential = || move |_: StorageIdentity| credential();
        assert!(StorageAccount::from_settings(&settings(&[]), credential())
            .unwrap()
            .is_none());
        let a = StorageAccount::from_settings(
            &settings(&[("AzureWebJobsStorage__accountName", "stfunc")]),
            credential(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            a.blob_endpoint.as_str(),
            "https://stfunc.blob.core.windows.net/"
        );
        assert!(matches!(a.auth, StorageAuth::Token(_)));
        let a = StorageAccount::from_settings(
            &settings(&[(
                "AzureWebJobsStorage__blobServiceUri",
                "https://stother.blob.core.usgovcloudapi.net",
            )]),
            credential(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.name, "stother");
        // The credential's own failure is the run's error for the identity form.
        let e = StorageAccount::from_settings(
            &settings(&[("AzureWebJobsStorage__accountName", "stfunc")]),
            |_| Err(Error::new(ErrorKind::Unauthenticated, "no credential")),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    }

    /// `__credential`, `__clientId`, `__managedIdentityResourceId`, `__tenantId` and
    /// `__clientSecret` as the host reads them; what it would refuse names the setting.
    #[test]
    fn storage_identity_settings() {
        use UserAssigned as UserAssignedId;
        let id = "0a1b2c3d-0000-4000-8000-000000000001";
        let read = |pairs: &[(&str, &str)]| StorageIdentity::from_settings(&settings(pairs));
        assert_eq!(read(&[]).unwrap(), StorageIdentity::Default);
        assert_eq!(
            read(&[("AzureWebJobsStorage__credential", "managedidentity")]).unwrap(),
            StorageIdentity::ManagedIdentity(None)
        );
        assert_eq!(
            read(&[
                ("AzureWebJobsStorage__credential", "ManagedIdentity"),
                ("AzureWebJobsStorage__clientId", id)
            ])
            .unwrap(),
            StorageIdentity::ManagedIdentity(Some(UserAssignedId::ClientId(id.into())))
        );
        assert!(matches!(
            read(&[
                ("AzureWebJobsStorage__credential", "managedidentity"),
                ("AzureWebJobsStorage__managedIdentityResourceId", "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u")
            ])
            .unwrap(),
            StorageIdentity::ManagedIdentity(Some(UserAssignedId::ResourceId(_)))
        ));
        let sp = read(&[
            ("AzureWebJobsStorage__tenantId", "t"),
            ("AzureWebJobsStorage__clientId", id),
            ("AzureWebJobsStorage__clientSecret", "s3cr3t-value"),
        ])
        .unwrap();
        assert!(matches!(sp, StorageIdentity::ClientSecret { .. }));
        assert!(!format!("{sp:?}").contains("s3cr3t-value"));
        for (bad, names) in [
            (
                vec![("AzureWebJobsStorage__credential", "connectionstring")],
                "__credential",
            ),
            (vec![("AzureWebJobsStorage__clientId", id)], "__clientId"),
            (
                vec![
                    ("AzureWebJobsStorage__credential", "managedidentity"),
                    ("AzureWebJobsStorage__clientId", "not-a-guid"),
                ],
                "__clientId",
            ),
            (
                vec![
                    ("AzureWebJobsStorage__tenantId", "t"),
                    ("AzureWebJobsStorage__clientId", id),
                    ("AzureWebJobsStorage__clientSecret", "s3cr3t-value"),
                    ("AzureWebJobsStorage__credential", "managedidentity"),
                    ("AzureWebJobsStorage__managedIdentityResourceId", "/x"),
                ],
                "not both",
            ),
        ] {
            let e = read(&bad).unwrap_err();
            assert!(e.to_string().contains(names), "{e}");
            assert!(!e.to_string().contains("s3cr3t-value"));
        }
    }

    #[derive(Debug)]
    struct NoToken;

    #[async_trait::async_trait]
    impl TokenCredential for NoToken {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "no token in unit tests",
            ))
        }
    }

    /// An Append Block's body length is signed in the Content-Length slot (and a zero length
    /// is an empty slot, as before).
    #[test]
    fn a_bodys_length_is_signed() {
        let url = url::Url::parse(
            "http://127.0.0.1:10000/devstoreaccount1/apikey-rotator-audit/audit-2026-12.jsonl?comp=appendblock",
        )
        .unwrap();
        let headers: Vec<(String, String)> = [
            ("x-ms-blob-condition-appendpos", "0"),
            ("x-ms-date", "Tue, 01 Dec 2026 06:00:00 GMT"),
            ("x-ms-version", "2021-12-02"),
            ("content-length", "42"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sts = string_to_sign("PUT", DEV_ACCOUNT, &url, &headers);
        assert!(sts.starts_with("PUT\n\n\n42\n\n\n"), "{sts:?}");
        assert!(sts.contains("x-ms-blob-condition-appendpos:0\n"), "{sts:?}");
        assert!(sts.ends_with("\ncomp:appendblock"), "{sts:?}");
    }

    /// A List Blobs page as the REST reference shows it (`EnumerationResults`, `Blob` with
    /// `Name` and `Properties/Content-Length`, `NextMarker`).
    #[test]
    fn blob_lists() {
        let page = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="apikey-rotator-audit"><Prefix>audit-</Prefix><Blobs><Blob><Name>audit-2026-11.jsonl</Name><Properties><Creation-Time>Sun, 01 Nov 2026 06:00:00 GMT</Creation-Time><Content-Length>1234</Content-Length><BlobType>AppendBlob</BlobType></Properties></Blob><Blob><Name>audit-a&amp;b.jsonl</Name><Properties><Content-Length>0</Content-Length></Properties></Blob></Blobs><NextMarker>page2</NextMarker></EnumerationResults>"#;
        let (blobs, next) = parse_blob_list(page).unwrap();
        assert_eq!(
            blobs,
            [
                ListedBlob {
                    name: "audit-2026-11.jsonl".into(),
                    length: 1234
                },
                ListedBlob {
                    name: "audit-a&b.jsonl".into(),
                    length: 0
                }
            ]
        );
        assert_eq!(next.as_deref(), Some("page2"));
        let last = "<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>";
        assert_eq!(parse_blob_list(last).unwrap(), (vec![], None));
        assert!(parse_blob_list("<html>").is_err());
    }

    #[test]
    fn error_bodies() {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>LeaseAlreadyPresent</Code><Message>There is already a lease present.\nRequestId:abc\nTime:2026-06-02T06:00:00Z</Message></Error>";
        let e = parse_error_body(409, None, body);
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.code(), "LeaseAlreadyPresent");
        assert!(e.to_string().contains("There is already a lease present."));
        assert!(!e.to_string().contains("RequestId"));
        let e = parse_error_body(403, Some("AuthenticationFailed".into()), "");
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    }
}

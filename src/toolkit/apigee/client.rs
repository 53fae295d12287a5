//! The Apigee X client: the [`Issuer`] over the management API.

use super::auth::ServiceAccountAuth;
use super::config::ApigeeXConfig;
use super::error::parse_error;
use crate::azure::http::transport_error;
use crate::azure::retry::{self, Call, Idempotency};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::ApiKey;
use crate::toolkit::issuer::{fingerprint, KeyMarks};
use crate::toolkit::{AssociationStatus, IssuedKey, Issuer, ProductAssociation};
use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

const SERVICE: &str = "Apigee";

// The rotator's marks: key attributes, every name starting with [`MARK_PREFIX`]; this block is
// the one place that names them. State lives on the keys, so it cannot drift from Apigee.

/// What every attribute the rotator writes on a key starts with.
pub const MARK_PREFIX: &str = "ApiKeyRotator";
/// The key attribute this rotator writes on the keys it creates: [`UNFINISHED`] from the
/// creation on, [`PRODUCTS_ATTACHED`] from the call that attaches its products on.
pub const STATE_ATTRIBUTE: &str = "ApiKeyRotatorState";
/// The key attribute holding [`IssuedKey::replaces`]: the fingerprint of the key it was
/// created to replace, written by `keys.create` with [`STATE_ATTRIBUTE`].
pub const REPLACES_ATTRIBUTE: &str = "ApiKeyRotatorReplaces";
/// The key attribute holding [`IssuedKey::pinned_at`] (RFC 3339), set by a rollback.
pub const PINNED_AT_ATTRIBUTE: &str = "ApiKeyRotatorPinnedAt";
/// The key attribute holding [`IssuedKey::withdrawn_at`] (RFC 3339), set by a rollback.
pub const WITHDRAWN_AT_ATTRIBUTE: &str = "ApiKeyRotatorWithdrawnAt";
/// The key attribute holding [`KeyMarks::noticed_at`] (RFC 3339): the key's
/// `renewal.upcoming` notice was delivered.
pub const NOTICED_AT_ATTRIBUTE: &str = "ApiKeyRotatorNoticeSentAt";
/// [`STATE_ATTRIBUTE`] of a key whose products are not attached yet: never handed out.
pub const UNFINISHED: &str = "unfinished";
/// [`STATE_ATTRIBUTE`] of a key whose products the rotator attached; it is complete once each
/// of their associations is approved.
pub const PRODUCTS_ATTACHED: &str = "productsAttached";

/// The Apigee X issuer for one organization and developer.
#[derive(Debug)]
pub struct ApigeeX {
    http: reqwest::Client,
    endpoint: url::Url,
    organization: String,
    developer_email: String,
    auth: ServiceAccountAuth,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppBody {
    #[serde(default)]
    credentials: Vec<KeyBody>,
}

/// `GoogleCloudApigeeV1Credential` / `GoogleCloudApigeeV1DeveloperAppKey`, the parts we use.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyBody {
    consumer_key: String,
    #[serde(default)]
    issued_at: Option<Value>,
    #[serde(default)]
    expires_at: Option<Value>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    api_products: Vec<Value>,
    #[serde(default)]
    attributes: Vec<Attribute>,
}

/// `GoogleCloudApigeeV1Attribute`.
#[derive(Deserialize, serde::Serialize, Clone, Debug, PartialEq, Eq)]
struct Attribute {
    name: String,
    #[serde(default)]
    value: String,
}

/// Milliseconds since the epoch, as Apigee X (string) or Edge (number) sends them; negative
/// means never.
fn millis(v: &Option<Value>) -> Result<Option<OffsetDateTime>> {
    let ms = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => s.parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| Error::unexpected(format!("{SERVICE}: malformed time {v:?}")))?;
    if ms < 0 {
        return Ok(None);
    }
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(Some)
        .map_err(|_| Error::unexpected(format!("{SERVICE}: time out of range: {ms}")))
}

impl KeyBody {
    /// The key's associations: `{apiproduct, status}` objects on reads; a plain name (which
    /// some key responses carry) says nothing about approval, so it counts as pending.
    fn associations(&self) -> Vec<ProductAssociation> {
        self.api_products
            .iter()
            .filter_map(|p| match p {
                Value::String(name) => Some(ProductAssociation {
                    product: name.clone(),
                    status: AssociationStatus::Pending,
                }),
                Value::Object(o) => {
                    let product = o.get("apiproduct").and_then(Value::as_str)?.to_string();
                    let status = match o.get("status").and_then(Value::as_str) {
                        Some("approved") => AssociationStatus::Approved,
                        Some("pending") => AssociationStatus::Pending,
                        // Revoked, or a state we do not know: never approved by us.
                        _ => AssociationStatus::Revoked,
                    };
                    Some(ProductAssociation { product, status })
                }
                _ => None,
            })
            .collect()
    }

    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }

    fn state(&self) -> Option<&str> {
        self.attribute(STATE_ATTRIBUTE)
    }

    /// A time mark; one that does not parse (edited by hand, say) is an error naming the
    /// attribute, never ignored: a pin silently lost would change the current key.
    fn time_mark(&self, name: &str) -> Result<Option<OffsetDateTime>> {
        self.attribute(name)
            .map(|v| {
                OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).map_err(
                    |_| {
                        Error::unexpected(format!(
                            "{SERVICE}: key attribute {name} is not an RFC 3339 time"
                        ))
                    },
                )
            })
            .transpose()
    }

    /// The attributes with the lifecycle marks set to `marks`, every other attribute kept
    /// (`keys.updateDeveloperAppKey` replaces them all with those of the request).
    fn attributes_with_marks(&self, marks: KeyMarks) -> Vec<Attribute> {
        let mut attributes: Vec<Attribute> = self
            .attributes
            .iter()
            .filter(|a| {
                a.name != PINNED_AT_ATTRIBUTE
                    && a.name != WITHDRAWN_AT_ATTRIBUTE
                    && a.name != NOTICED_AT_ATTRIBUTE
            })
            .cloned()
            .collect();
        for (name, at) in [
            (PINNED_AT_ATTRIBUTE, marks.pinned_at),
            (WITHDRAWN_AT_ATTRIBUTE, marks.withdrawn_at),
            (NOTICED_AT_ATTRIBUTE, marks.noticed_at),
        ] {
            if let Some(at) = at {
                attributes.push(Attribute {
                    name: name.into(),
                    value: crate::rfc3339::format(at, crate::rfc3339::Fraction::Millis),
                });
            }
        }
        attributes
    }

    fn status_of(&self, product: &str) -> Option<AssociationStatus> {
        self.associations()
            .into_iter()
            .find(|a| a.product == product)
            .map(|a| a.status)
    }

    /// The attributes with the rotator's mark set to `state`, every other attribute kept
    /// (`keys.updateDeveloperAppKey` replaces them all with those of the request).
    fn attributes_with_state(&self, state: &str) -> Vec<Attribute> {
        let mut attributes: Vec<Attribute> = self
            .attributes
            .iter()
            .filter(|a| a.name != STATE_ATTRIBUTE)
            .cloned()
            .collect();
        attributes.push(Attribute {
            name: STATE_ATTRIBUTE.into(),
            value: state.into(),
        });
        attributes
    }

    fn into_issued_key(self) -> Result<IssuedKey> {
        Ok(IssuedKey {
            issued_at: millis(&self.issued_at)?,
            expires_at: millis(&self.expires_at)?,
            approved: self.status.as_deref() == Some("approved"),
            api_products: self.associations(),
            unfinished: self.state() == Some(UNFINISHED),
            made_by_rotator: self.state().is_some(),
            revoked: self.status.as_deref() == Some("revoked"),
            replaces: self
                .attribute(REPLACES_ATTRIBUTE)
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            pinned_at: self.time_mark(PINNED_AT_ATTRIBUTE)?,
            withdrawn_at: self.time_mark(WITHDRAWN_AT_ATTRIBUTE)?,
            key: ApiKey::new(self.consumer_key),
        })
    }
}

/// Replaces any occurrence of the key in an error's text with its redacted form.
fn scrub(err: Error, key: &ApiKey) -> Error {
    if key.expose().is_empty() || !err.to_string().contains(key.expose()) {
        return err;
    }
    let mut out = Error::new(
        err.kind(),
        err.message().replace(key.expose(), &key.redacted()),
    )
    .set_temporary(err.is_temporary());
    if let Some(s) = err.status() {
        out = out.with_status(s);
    }
    if err.code() != err.kind().code() {
        out = out.with_code(err.code().to_string());
    }
    out
}

impl ApigeeX {
    /// An issuer for `config`, on the shared client.
    pub fn new(config: &ApigeeXConfig, http: reqwest::Client) -> Result<Self> {
        Ok(Self {
            auth: ServiceAccountAuth::new(&config.service_account_key, http.clone())?,
            http,
            endpoint: config.endpoint(),
            organization: config.organization.clone(),
            developer_email: config.developer_email.clone(),
        })
    }

    /// `{endpoint}/v1/organizations/{org}/developers/{email}/apps/{app}/{extra...}`, every
    /// segment percent-encoded.
    fn app_url(&self, app_name: &str, extra: &[&str]) -> Result<url::Url> {
        let mut url = self.endpoint.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|_| Error::config("COMPANYDETAILS: issuer.endpoint: not a base URL"))?;
            segs.pop_if_empty().extend([
                "v1",
                "organizations",
                &self.organization,
                "developers",
                &self.developer_email,
                "apps",
                app_name,
            ]);
            segs.extend(extra);
        }
        Ok(url)
    }

    /// Sends one authenticated request under the shared retry policy (as `idempotency`
    /// allows); returns the body of a 2xx answer. A 401 drops the cached token and is tried
    /// once more with a fresh one: a refused token means the request was not applied, so
    /// repeating it cannot double-apply anything. The body holds the app's keys in full, so it
    /// is wiped from memory when dropped.
    async fn call(
        &self,
        call: &Call,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
        octet_stream: bool,
        idempotency: Idempotency,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = retry::send(call, SERVICE, idempotency, || async {
                let token = self.auth.token(call).await?;
                let mut req = self
                    .http
                    .request(method.clone(), url.clone())
                    .bearer_auth(token.expose())
                    .header(reqwest::header::ACCEPT, "application/json");
                if let Some(b) = body {
                    req = req.json(b);
                } else if octet_stream {
                    req = req
                        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                        .body(Vec::new());
                }
                Ok(req)
            })
            .await?;
            let status = resp.status().as_u16();
            let hint = retry::retry_after(resp.headers(), std::time::SystemTime::now());
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| transport_error(SERVICE, &e.without_url()))?;
            if (200..300).contains(&status) {
                return Ok(zeroize::Zeroizing::new(bytes.to_vec()));
            }
            if status == 401 {
                self.auth.invalidate().await;
                if attempt == 1 {
                    continue;
                }
            }
            return Err(parse_error(status, &bytes).with_retry_after(hint));
        }
    }

    /// The app's key `key` as Apigee holds it now, if it exists.
    async fn find_key(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<Option<KeyBody>> {
        let url = self.app_url(app_name, &[])?;
        let body = self
            .call(call, Method::GET, url, None, false, Idempotency::Idempotent)
            .await?;
        let app: AppBody = parse_json(&body)?;
        Ok(app
            .credentials
            .into_iter()
            .find(|c| c.consumer_key == key.expose()))
    }

    /// `POST .../keys`, which is not idempotent: sent with [`retry::send_checked`], which
    /// after an unknown outcome reads the app again and takes a key that exists as created, so
    /// a lost answer never makes two keys. The inner result is the created key's body, which
    /// may be unreadable although the key exists.
    async fn post_key(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        request: &Value,
    ) -> Result<Result<KeyBody>> {
        let url = self.app_url(app_name, &["keys"])?;
        let create = || async {
            self.call(
                call,
                Method::POST,
                url.clone(),
                Some(request),
                false,
                Idempotency::NotIdempotent,
            )
            .await
            .map(|body| parse_json(&body))
        };
        let created = || async { Ok(self.find_key(call, app_name, key).await?.map(Ok)) };
        retry::send_checked(
            call,
            &format!("the key creation for {app_name}"),
            create,
            created,
        )
        .await
    }

    /// `keys.get`: the key as Apigee holds it now.
    async fn get_key(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<KeyBody> {
        let url = self.app_url(app_name, &["keys", key.expose()])?;
        let body = self
            .call(call, Method::GET, url, None, false, Idempotency::Idempotent)
            .await?;
        parse_json(&body)
    }

    /// `keys.updateDeveloperAppKey` with a body: adds `products` (none: adds nothing) and
    /// replaces the key's attributes with `attributes`.
    async fn update_key(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        products: &[&str],
        attributes: &[Attribute],
    ) -> Result<KeyBody> {
        let url = self.app_url(app_name, &["keys", key.expose()])?;
        let mut request = json!({ "attributes": attributes });
        if !products.is_empty() {
            request["apiProducts"] = json!(products);
        }
        let body = self
            .call(
                call,
                Method::POST,
                url,
                Some(&request),
                false,
                // Adds the same products and sets the same attributes when repeated.
                Idempotency::Idempotent,
            )
            .await?;
        parse_json(&body)
    }

    /// `keys.apiproducts.updateDeveloperAppKeyApiProduct?action=approve`: empty body,
    /// `Content-Type: application/octet-stream`, an empty JSON object back.
    async fn approve_product(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        product: &str,
    ) -> Result<()> {
        let mut url = self.app_url(app_name, &["keys", key.expose(), "apiproducts", product])?;
        url.query_pairs_mut().append_pair("action", "approve");
        self.call(call, Method::POST, url, None, true, Idempotency::Idempotent)
            .await
            .map(|_| ())
    }

    /// `keys.updateDeveloperAppKey?action=approve|revoke`: empty body, `Content-Type:
    /// application/octet-stream`, `204 No Content`; then `keys.get` for the key as stored.
    async fn key_action(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        action: &str,
    ) -> Result<IssuedKey> {
        let mut url = self.app_url(app_name, &["keys", key.expose()])?;
        url.query_pairs_mut().append_pair("action", action);
        // Setting the same status again is harmless: safe to repeat.
        self.call(call, Method::POST, url, None, true, Idempotency::Idempotent)
            .await?;
        self.get_key(call, app_name, key).await?.into_issued_key()
    }

    /// `keys.delete`.
    async fn remove_key(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<()> {
        let url = self.app_url(app_name, &["keys", key.expose()])?;
        self.call(
            call,
            Method::DELETE,
            url,
            None,
            false,
            Idempotency::Idempotent,
        )
        .await
        .map(|_| ())
    }

    /// Takes a key from `state` (as Apigee holds it) to complete: attaches those of
    /// `api_products` it lacks (setting the mark to [`PRODUCTS_ATTACHED`] in the same call),
    /// then approves each association that is pending. Steps already done are skipped.
    async fn finish(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        mut state: KeyBody,
        api_products: &[String],
    ) -> Result<IssuedKey> {
        if state.status.as_deref() != Some("approved") {
            return Err(Error::unexpected(format!(
                "{SERVICE}: the new key is {}, not approved",
                state.status.as_deref().unwrap_or("without a status")
            )));
        }
        let missing: Vec<&str> = api_products
            .iter()
            .map(String::as_str)
            .filter(|p| state.status_of(p).is_none())
            .collect();
        if !missing.is_empty() || state.state() == Some(UNFINISHED) {
            let attributes = state.attributes_with_state(PRODUCTS_ATTACHED);
            state = self
                .update_key(call, app_name, key, &missing, &attributes)
                .await?;
        }
        let mut credential = state.into_issued_key()?;
        for product in api_products {
            let association = credential
                .api_products
                .iter_mut()
                .find(|a| a.product == *product);
            match association.as_ref().map(|a| a.status) {
                Some(AssociationStatus::Approved) => {}
                Some(AssociationStatus::Revoked) => {
                    return Err(Error::unexpected(format!(
                        "{SERVICE}: the new key's association with API product {product} is revoked"
                    )))
                }
                Some(AssociationStatus::Pending) => {
                    self.approve_product(call, app_name, key, product).await?;
                    // The approval answers an empty object: its success is the new state.
                    if let Some(a) = association {
                        a.status = AssociationStatus::Approved;
                    }
                }
                None => {
                    return Err(Error::unexpected(format!(
                        "{SERVICE}: the new key has no association with API product {product} after it was added"
                    )))
                }
            }
        }
        if credential.unfinished || !credential.approved {
            return Err(Error::unexpected(format!(
                "{SERVICE}: the new key was not stored as finished"
            )));
        }
        Ok(credential)
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::unexpected(format!("{SERVICE}: malformed response ({e})")))
}

impl ApigeeX {
    /// The app's credentials as Apigee holds them (one `GET` of the app).
    async fn credentials(&self, call: &Call, app_name: &str) -> Result<Vec<KeyBody>> {
        let url = self.app_url(app_name, &[])?;
        let body = self
            .call(call, Method::GET, url, None, false, Idempotency::Idempotent)
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    let mut nf = Error::new(
                        ErrorKind::NotFound,
                        format!("API manager does not know app '{app_name}'"),
                    )
                    .with_context("organization", self.organization.clone())
                    .with_context("developer", self.developer_email.clone());
                    if let Some(s) = e.status() {
                        nf = nf.with_status(s);
                    }
                    nf
                } else {
                    e.with_context("app", app_name.to_string())
                }
            })?;
        let app: AppBody = parse_json(&body)?;
        Ok(app.credentials)
    }
}

#[async_trait]
impl Issuer for ApigeeX {
    async fn list_keys(&self, call: &Call, app_name: &str) -> Result<Vec<IssuedKey>> {
        self.credentials(call, app_name)
            .await?
            .into_iter()
            .map(KeyBody::into_issued_key)
            .collect()
    }

    async fn create_key(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        lifetime: Option<time::Duration>,
        api_products: &[String],
        replaces: Option<&ApiKey>,
    ) -> Result<IssuedKey> {
        // keys.create: every key starts approved and without products (products sent here
        // would be ignored), so no key-level approval is needed. The marks go in with the key.
        let mut attributes = vec![json!({"name": STATE_ATTRIBUTE, "value": UNFINISHED})];
        if let Some(old) = replaces {
            attributes.push(json!({"name": REPLACES_ATTRIBUTE, "value": fingerprint(old)}));
        }
        let mut request = json!({
            "consumerKey": key.expose(),
            "consumerSecret": crate::toolkit::random_alphanumeric(32),
            "attributes": attributes,
        });
        // Without expiresInSeconds Apigee's default applies: -1, never expires.
        if let Some(lifetime) = lifetime {
            request["expiresInSeconds"] = json!(lifetime.whole_seconds().to_string());
        }
        let created = self
            .post_key(call, app_name, key, &request)
            .await
            .map_err(|e| scrub(e, key).with_context("app", app_name.to_string()))?;
        let finished = match created {
            Ok(created) => {
                self.finish(call, app_name, key, created, api_products)
                    .await
            }
            Err(e) => Err(e),
        };
        match finished {
            Ok(c) => Ok(c),
            Err(e) => {
                // A half-made key is never current (it is marked unfinished), but it should not
                // linger either: remove it now; when that fails, the next run finishes or
                // removes it.
                let cleanup = self.remove_key(call, app_name, key).await;
                let mut e = scrub(e, key).with_context("app", app_name.to_string());
                if let Err(d) = cleanup {
                    e = e.with_context(
                        "cleanup",
                        format!(
                            "the new key {} could not be deleted (the next run finishes or removes it): {}",
                            key,
                            scrub(d, key)
                        ),
                    );
                }
                Err(e)
            }
        }
    }

    async fn finish_key(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        api_products: &[String],
    ) -> Result<IssuedKey> {
        let done = async {
            let state = self.get_key(call, app_name, key).await?;
            self.finish(call, app_name, key, state, api_products).await
        };
        done.await
            .map_err(|e| scrub(e, key).with_context("app", app_name.to_string()))
    }

    async fn delete_key(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<()> {
        self.remove_key(call, app_name, key)
            .await
            .map_err(|e| scrub(e, key).with_context("app", app_name.to_string()))
    }

    async fn revoke_key(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<IssuedKey> {
        self.key_action(call, app_name, key, "revoke")
            .await
            .map_err(|e| scrub(e, key).with_context("app", app_name.to_string()))
    }

    async fn reactivate_key(&self, call: &Call, app_name: &str, key: &ApiKey) -> Result<IssuedKey> {
        self.key_action(call, app_name, key, "approve")
            .await
            .map_err(|e| scrub(e, key).with_context("app", app_name.to_string()))
    }

    async fn set_marks(
        &self,
        call: &Call,
        app_name: &str,
        key: &ApiKey,
        marks: KeyMarks,
    ) -> Result<IssuedKey> {
        let done = async {
            let state = self.get_key(call, app_name, key).await?;
            let attributes = state.attributes_with_marks(marks);
            if attributes == state.attributes {
                return state.into_issued_key();
            }
            self.update_key(call, app_name, key, &[], &attributes)
                .await?
                .into_issued_key()
        };
        done.await
            .map_err(|e| scrub(e, key).with_context("app", app_name.to_string()))
    }

    async fn list_keys_with_notices(
        &self,
        call: &Call,
        app_name: &str,
    ) -> Result<Vec<(IssuedKey, Option<OffsetDateTime>)>> {
        self.credentials(call, app_name)
            .await?
            .into_iter()
            .map(|c| {
                let noticed = c.time_mark(NOTICED_AT_ATTRIBUTE)?;
                Ok((c.into_issued_key()?, noticed))
            })
            .collect()
    }
}

// The client end to end, against an in-test Apigee (`tests.rs` beside this file).
#[cfg(test)]
#[path = "tests.rs"]
mod tests;

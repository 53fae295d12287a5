//! End to end: `key_source` -> `Toolkit` -> `ApigeeX` against a small in-test Apigee and token
//! endpoint over plain http on loopback.

use super::*;
use crate::settings::Settings;
use crate::toolkit::apigee::auth;
use crate::toolkit::sealed::tests::{details_json, test_keys, UUID};
use crate::toolkit::{key_source, KeyRequest};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const ORG: &str = "contoso-prd";
const DEV: &str = "integrations@contoso.com";
const EMAIL: &str = "rotator@contoso.iam.gserviceaccount.com";
const OLD_KEY: &str = "OLDKEYOLDKEYOLDKEYOLDKEYOLD00001";
const ACCESS_TOKEN: &str = "ya29.test-token";

#[derive(Default)]
struct Fake {
    token_uri: String,
    token_calls: usize,
    apps: HashMap<String, Vec<Value>>,
    requests: Vec<String>,
    reject_products: bool,
    /// Answer the next API call 401, as Google does for a revoked token.
    revoke_token_once: bool,
    /// Create this many keys, then answer 503 as if the answer were lost on the way.
    lose_create_answers: usize,
    /// Answer this many key creations 503 without creating anything.
    refuse_creates: usize,
}

type Shared = Arc<Mutex<Fake>>;

fn call() -> crate::azure::retry::Call {
    crate::azure::retry::Call::new(
        std::sync::Arc::new(crate::azure::retry::RetryPolicy::default()),
        None,
    )
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn google_error(status: StatusCode, message: &str, code: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": code}});
    (status, axum::Json(body)).into_response()
}

async fn token(axum::extract::State(fake): axum::extract::State<Shared>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let token_uri = fake.lock().unwrap().token_uri.clone();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let header = jsonwebtoken::decode_header(&assertion).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[token_uri]);
    validation.set_issuer(&[EMAIL]);
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(test_keys().1.as_bytes()).unwrap();
    let claims = match jsonwebtoken::decode::<Value>(&assertion, &key, &validation) {
        Ok(d) => d.claims,
        Err(_) => return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
            ),
        )
            .into_response(),
    };
    assert_eq!(header.kid.as_deref(), Some("kid-1"));
    assert_eq!(claims["scope"], auth::CLOUD_PLATFORM_SCOPE);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    fake.lock().unwrap().token_calls += 1;
    axum::Json(json!({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

async fn apigee(
    axum::extract::State(fake): axum::extract::State<Shared>,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut fake = fake.lock().unwrap();
    fake.requests.push(format!("{method} {uri}"));
    let revoked = std::mem::take(&mut fake.revoke_token_once);
    if revoked
        || headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {ACCESS_TOKEN}"))
    {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials.",
            "UNAUTHENTICATED",
        );
    }
    let segs: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let prefix = ["v1", "organizations", ORG, "developers", DEV, "apps"];
    if segs.len() < 7 || segs[..6] != prefix {
        return google_error(StatusCode::NOT_FOUND, "no such path", "NOT_FOUND");
    }
    let app = segs[6].to_string();
    let reject_products = fake.reject_products;
    let Some(creds) = fake.apps.get_mut(&app) else {
        return google_error(
            StatusCode::NOT_FOUND,
            &format!("DeveloperApp {app} not found"),
            "NOT_FOUND",
        );
    };
    match (method.as_str(), &segs[7..]) {
        ("GET", []) => axum::Json(json!({"name": app, "credentials": creds})).into_response(),
        ("POST", ["keys"]) => {
            let req: Value = serde_json::from_slice(&body).unwrap();
            let secs: i64 = req["expiresInSeconds"]
                .as_str()
                .expect("int64 as a string")
                .parse()
                .unwrap();
            assert!(
                req.get("apiProducts").is_none(),
                "products must not be sent on create"
            );
            assert_eq!(req["consumerSecret"].as_str().unwrap().len(), 32);
            assert_eq!(
                req["attributes"][0],
                json!({"name": STATE_ATTRIBUTE, "value": UNFINISHED}),
                "the key is marked unfinished from its creation on"
            );
            // ... and with the fingerprint of the key it replaces, in the same call.
            let replaces = &req["attributes"][1];
            assert_eq!(replaces["name"], REPLACES_ATTRIBUTE, "{req}");
            let fp = replaces["value"].as_str().unwrap();
            assert!(
                fp.len() == 16 && fp.chars().all(|c| c.is_ascii_hexdigit()),
                "{fp}"
            );
            assert_eq!(req["attributes"].as_array().unwrap().len(), 2);
            let now = now_ms();
            let cred = json!({
                "consumerKey": req["consumerKey"], "consumerSecret": req["consumerSecret"],
                "issuedAt": now.to_string(), "expiresAt": (now + secs * 1000).to_string(),
                "status": "approved", "apiProducts": [], "attributes": req["attributes"],
            });
            if fake.refuse_creates > 0 {
                fake.refuse_creates -= 1;
                return google_error(StatusCode::SERVICE_UNAVAILABLE, "busy", "UNAVAILABLE");
            }
            let creds = fake.apps.get_mut(&app).unwrap();
            creds.push(cred.clone());
            if fake.lose_create_answers > 0 {
                fake.lose_create_answers -= 1;
                return google_error(StatusCode::BAD_GATEWAY, "upstream reset", "UNAVAILABLE");
            }
            (StatusCode::CREATED, axum::Json(cred)).into_response()
        }
        ("POST", ["keys", key, "apiproducts", product]) => {
            let Some(cred) = creds.iter_mut().find(|c| c["consumerKey"] == *key) else {
                return google_error(StatusCode::NOT_FOUND, "key not found", "NOT_FOUND");
            };
            assert_eq!(uri.query(), Some("action=approve"));
            assert_eq!(headers["content-type"], "application/octet-stream");
            assert!(body.is_empty());
            let Some(assoc) = cred["apiProducts"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|a| a["apiproduct"] == *product)
            else {
                return google_error(StatusCode::NOT_FOUND, "not associated", "NOT_FOUND");
            };
            assoc["status"] = "approved".into();
            axum::Json(json!({})).into_response()
        }
        (m, ["keys", key]) => {
            let Some(i) = creds.iter().position(|c| c["consumerKey"] == *key) else {
                return google_error(StatusCode::NOT_FOUND, "key not found", "NOT_FOUND");
            };
            match (m, uri.query()) {
                ("GET", None) => axum::Json(creds[i].clone()).into_response(),
                ("POST", Some(q)) => panic!("no key-level action is needed, got ?{q}"),
                ("POST", None) => {
                    let req: Value = serde_json::from_slice(&body).unwrap();
                    if let Some(products) = req.get("apiProducts") {
                        if reject_products {
                            return google_error(
                                StatusCode::BAD_REQUEST,
                                &format!("Invalid consumer key {key} for given app"),
                                "INVALID_ARGUMENT",
                            );
                        }
                        if creds[i].get("apiProducts").is_none() {
                            creds[i]["apiProducts"] = json!([]);
                        }
                        for p in products.as_array().unwrap() {
                            // p1 needs an administrator's approval (approvalType: manual).
                            let status = if p == "p1" { "pending" } else { "approved" };
                            creds[i]["apiProducts"]
                                .as_array_mut()
                                .unwrap()
                                .push(json!({"apiproduct": p, "status": status}));
                        }
                    }
                    // The attributes are replaced by those of the request.
                    creds[i]["attributes"] = req.get("attributes").cloned().unwrap_or(json!([]));
                    axum::Json(creds[i].clone()).into_response()
                }
                ("DELETE", None) => axum::Json(creds.remove(i)).into_response(),
                _ => google_error(StatusCode::BAD_REQUEST, "unsupported", "INVALID_ARGUMENT"),
            }
        }
        _ => google_error(StatusCode::NOT_FOUND, "no such path", "NOT_FOUND"),
    }
}

async fn start() -> (Shared, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let day = 86_400_000;
    let now = now_ms();
    let mut fake = Fake {
        token_uri: format!("{base}/oauth2/v4/token"),
        ..Fake::default()
    };
    fake.apps.insert(
        "app1".into(),
        vec![
            json!({
                "consumerKey": OLD_KEY, "consumerSecret": "s1",
                "issuedAt": (now - 80 * day).to_string(), "expiresAt": (now + 10 * day).to_string(),
                "status": "approved",
                "apiProducts": [{"apiproduct": "p1", "status": "approved"}, {"apiproduct": "p2", "status": "pending"},
                                {"apiproduct": "p3", "status": "revoked"}],
            }),
            json!({
                "consumerKey": "REVOKEDNEVEREXPIRES0000000000001", "consumerSecret": "s2",
                "issuedAt": (now - 300 * day).to_string(), "expiresAt": "-1", "status": "revoked",
                "apiProducts": [{"apiproduct": "p9", "status": "approved"}],
            }),
        ],
    );
    let shared: Shared = Arc::new(Mutex::new(fake));
    let router = Router::new()
        .route("/oauth2/v4/token", post(token))
        .fallback(apigee)
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (shared, base)
}

fn settings_for(base: &str) -> Settings {
    let mut details = details_json(json!({}));
    details["issuer"]["endpoint"] = format!("{base}/").into();
    details["issuer"]["serviceAccountKey"]["token_uri"] = format!("{base}/oauth2/v4/token").into();
    let sealed = crate::toolkit::sealed::seal(UUID, details.to_string().as_bytes()).unwrap();
    Settings::from_map(
        [("COMPANYDETAILS", sealed.as_str()), ("TOOLKITUUID", UUID)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn key_of(c: &Value) -> String {
    c["consumerKey"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn renews_through_apigee_and_converges() {
    let (fake, base) = start().await;
    let source = key_source(&settings_for(&base), reqwest::Client::new()).unwrap();

    let first = source
        .current_key(&call(), "app1", KeyRequest::default())
        .await
        .unwrap();
    assert!(first.renewed, "{}", first.message);
    assert_ne!(first.api_key.expose(), OLD_KEY);
    assert_eq!(first.api_key.expose().len(), 32);
    assert!(!first.message.contains(first.api_key.expose()));
    let lifetime = first.expires_at.unwrap() - first.issued_at.unwrap();
    assert!(
        (lifetime - time::Duration::days(90)).abs() < time::Duration::seconds(2),
        "{lifetime}"
    );

    {
        let f = fake.lock().unwrap();
        assert_eq!(
            f.token_calls, 1,
            "the JWT assertion went to the key's token_uri"
        );
        let creds = &f.apps["app1"];
        assert_eq!(creds.len(), 3, "the old keys are left alone");
        let new = creds
            .iter()
            .find(|c| key_of(c) == first.api_key.expose())
            .unwrap();
        assert_eq!(
            new["apiProducts"],
            json!([{"apiproduct": "p1", "status": "approved"}]),
            "the approved products only: not the pending (p2) or revoked (p3) association"
        );
        assert_eq!(new["status"], "approved");
        // The attributes the creation set are kept when the products are attached.
        let replaces = crate::toolkit::fingerprint(&ApiKey::new(OLD_KEY));
        assert_eq!(
            new["attributes"],
            json!([
                {"name": REPLACES_ATTRIBUTE, "value": replaces},
                {"name": STATE_ATTRIBUTE, "value": PRODUCTS_ATTACHED}
            ])
        );
        let key = first.api_key.expose();
        let prefix = format!("/v1/organizations/{ORG}/developers/{DEV}/apps/app1/keys");
        let renewal: Vec<String> = f
            .requests
            .iter()
            .filter(|r| !r.starts_with("GET "))
            .map(|r| r.replace(key, "{key}").replace(&prefix, "..."))
            .collect();
        assert_eq!(
            renewal,
            [
                "POST ...",
                "POST .../{key}",
                "POST .../{key}/apiproducts/p1?action=approve",
            ],
            "create, products (and the mark), approve the pending association"
        );
    }

    let second = source
        .current_key(&call(), "app1", KeyRequest::default())
        .await
        .unwrap();
    assert!(!second.renewed, "{}", second.message);
    assert_eq!(second.api_key, first.api_key);
    assert_eq!(fake.lock().unwrap().token_calls, 1, "the token is cached");
    assert_eq!(fake.lock().unwrap().apps["app1"].len(), 3);

    fake.lock().unwrap().revoke_token_once = true;
    let third = source
        .current_key(&call(), "app1", KeyRequest::default())
        .await
        .unwrap();
    assert_eq!(third.api_key, first.api_key);
    assert_eq!(
        fake.lock().unwrap().token_calls,
        2,
        "a refused token is replaced once"
    );
}

#[tokio::test]
async fn unknown_app_is_not_found() {
    let (_fake, base) = start().await;
    let source = key_source(&settings_for(&base), reqwest::Client::new()).unwrap();
    let e = source
        .current_key(&call(), "ghost", KeyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.message()
            .starts_with("API manager does not know app 'ghost'"),
        "{e}"
    );
}

#[tokio::test]
async fn a_failed_renewal_leaves_no_half_made_key_and_no_key_in_the_error() {
    let (fake, base) = start().await;
    fake.lock().unwrap().reject_products = true;
    let source = key_source(&settings_for(&base), reqwest::Client::new()).unwrap();
    let force = KeyRequest {
        force: true,
        dry_run: false,
    };
    let e = source
        .current_key(&call(), "app1", force)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unexpected);

    let f = fake.lock().unwrap();
    let created = f
        .requests
        .iter()
        .filter_map(|r| r.strip_prefix("POST /v1/organizations/"))
        .filter_map(|r| r.split("/keys/").nth(1))
        .map(str::to_string)
        .next()
        .expect("a key was created");
    let text = format!("{e} {e:?}");
    assert!(!text.contains(&created), "{text}");
    assert!(
        text.contains(&format!("****{}", &created[created.len() - 4..])),
        "{text}"
    );
    assert!(
        f.requests.iter().any(|r| r.starts_with("DELETE ")),
        "{:?}",
        f.requests
    );
    assert_eq!(f.apps["app1"].len(), 2, "the half-made key was deleted");
}

#[tokio::test]
async fn a_refused_assertion_is_an_authentication_error() {
    let (_fake, base) = start().await;
    let mut settings = settings_for(&base);
    // Another key than the one the token endpoint trusts: the signature check fails.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .unwrap()
        .serialize_pem();
    let mut details = details_json(json!({}));
    details["issuer"]["endpoint"] = format!("{base}/").into();
    details["issuer"]["serviceAccountKey"]["token_uri"] = format!("{base}/oauth2/v4/token").into();
    details["issuer"]["serviceAccountKey"]["private_key"] = other.into();
    settings.company_details = Some(crate::secret::Secret::new(
        crate::toolkit::sealed::seal(UUID, details.to_string().as_bytes()).unwrap(),
    ));
    let source = key_source(&settings, reqwest::Client::new()).unwrap();
    let e = source
        .current_key(&call(), "app1", KeyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    assert_eq!(e.code(), "invalid_grant");
    assert!(!e.to_string().contains("PRIVATE KEY"));
}

/// `apigee-x.app-describe.gcloud-sdk-test-canned-response.json` from the reference pack.
const GCLOUD_CANNED_APP: &str = r#"{
        "appId": "c3b20cec-c3f8-42e9-8a89-83f55c24149c",
        "attributes": [{
            "name": "DisplayName",
            "value": "Hungry Bird 0.1"
        }, {
            "name": "Notes",
            "value": "Test app for gcloud commands..."
        }],
        "createdAt": "1591645866735",
        "credentials": [{
            "apiProducts": [{
                "apiproduct": "gcloud-test2",
                "status": "pending"
            }, {
                "apiproduct": "gcloud-test1",
                "status": "approved"
            }],
            "consumerKey": "vJ5hNFx8Tq3sSIBWKZnkT8y1LVz9BbSR",
            "consumerSecret": "UTJehpjnbiLIcrSL",
            "expiresAt": "-1",
            "issuedAt": "1591645866792",
            "status": "approved"
        }],
        "developerId": "659525a4-212b-4f46-ad6f-02d9d33ed69b",
        "lastModifiedAt": "1591645866735",
        "name": "hungrybird01",
        "status": "approved"
}"#;

#[test]
fn times_are_int64_strings_or_edge_numbers() {
    let body: AppBody = serde_json::from_str(GCLOUD_CANNED_APP).unwrap();
    let c = body
        .credentials
        .into_iter()
        .next()
        .unwrap()
        .into_issued_key()
        .unwrap();
    assert_eq!(c.expires_at, None);
    assert_eq!(c.issued_at.unwrap().unix_timestamp(), 1_591_645_866);
    assert!(c.approved);
    assert_eq!(
        c.approved_products().collect::<Vec<_>>(),
        ["gcloud-test1"],
        "gcloud-test2 is pending"
    );
    assert_eq!(c.api_products.len(), 2);
    assert!(!c.unfinished);
    assert_eq!(
        millis(&Some(json!(1518459781278_i64)))
            .unwrap()
            .unwrap()
            .unix_timestamp(),
        1_518_459_781
    );
    assert!(millis(&Some(json!("soon"))).is_err());
}

fn creates(f: &Fake) -> usize {
    f.requests
        .iter()
        .filter(|r| r.starts_with("POST ") && r.ends_with("/apps/app1/keys"))
        .count()
}

/// A key creation whose answer is lost (the key exists) is not repeated: the app is read
/// again and the existing key is finished and used, so there is exactly one new key.
#[tokio::test]
async fn a_lost_creation_answer_never_makes_two_keys() {
    let (fake, base) = start().await;
    fake.lock().unwrap().lose_create_answers = 1;
    let source = key_source(&settings_for(&base), reqwest::Client::new()).unwrap();
    let grant = source
        .current_key(&call(), "app1", KeyRequest::default())
        .await
        .unwrap();
    assert!(grant.renewed, "{}", grant.message);
    let f = fake.lock().unwrap();
    assert_eq!(creates(&f), 1, "{:?}", f.requests);
    assert_eq!(f.apps["app1"].len(), 3, "one new key");
    let new = f.apps["app1"]
        .iter()
        .find(|c| key_of(c) == grant.api_key.expose())
        .unwrap();
    assert_eq!(
        new["apiProducts"],
        json!([{"apiproduct": "p1", "status": "approved"}]),
        "products added and approved"
    );
}

/// A creation refused before it was applied (the key does not exist) is made again, once.
#[tokio::test]
async fn a_refused_creation_is_made_again() {
    let (fake, base) = start().await;
    fake.lock().unwrap().refuse_creates = 1;
    let source = key_source(&settings_for(&base), reqwest::Client::new()).unwrap();
    let grant = source
        .current_key(&call(), "app1", KeyRequest::default())
        .await
        .unwrap();
    assert!(grant.renewed, "{}", grant.message);
    let f = fake.lock().unwrap();
    assert_eq!(creates(&f), 2, "{:?}", f.requests);
    assert_eq!(f.apps["app1"].len(), 3, "still one new key");
}

/// A key an earlier run created and left without products (the mark says `unfinished`) is
/// finished by the next call: read, products added, the pending association approved, the mark
/// set to `complete`; then it is the key handed out, and no other key is created.
#[tokio::test]
async fn an_unfinished_key_is_finished_on_the_next_call() {
    let (fake, base) = start().await;
    const HALF: &str = "HALFMADEHALFMADEHALFMADEHALF0001";
    let day = 86_400_000;
    fake.lock().unwrap().apps.get_mut("app1").unwrap().push(json!({
        "consumerKey": HALF, "consumerSecret": "s3",
        "issuedAt": (now_ms() - 60_000).to_string(), "expiresAt": (now_ms() + 90 * day).to_string(),
        "status": "approved",
        "attributes": [{"name": STATE_ATTRIBUTE, "value": UNFINISHED}, {"name": "Notes", "value": "kept"}],
    }));
    let source = key_source(&settings_for(&base), reqwest::Client::new()).unwrap();
    let grant = source
        .current_key(&call(), "app1", KeyRequest::default())
        .await
        .unwrap();
    assert_eq!(grant.api_key.expose(), HALF);
    assert!(grant.renewed, "{}", grant.message);
    let f = fake.lock().unwrap();
    assert_eq!(creates(&f), 0, "{:?}", f.requests);
    let half = f.apps["app1"].iter().find(|c| key_of(c) == HALF).unwrap();
    assert_eq!(
        half["apiProducts"],
        json!([{"apiproduct": "p1", "status": "approved"}])
    );
    assert_eq!(
        half["attributes"],
        json!([{"name": "Notes", "value": "kept"}, {"name": STATE_ATTRIBUTE, "value": PRODUCTS_ATTACHED}]),
        "other attributes are kept"
    );
    assert!(f
        .requests
        .iter()
        .any(|r| r.starts_with("GET ") && r.ends_with(&format!("/keys/{HALF}"))));
}

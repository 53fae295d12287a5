//! Apigee X's double in the sandbox, as the tests see it: its service name, its demo apps and
//! products, its state (`admin/state`'s `apigee`), which of its requests only read, and
//! where a fault breaks each step of a renewal (`tests/fixtures/reference/apigee/`).

use super::issuer::{IssuerDouble, Mark, Step, StoredKey};
use super::Env;
use apikey_rotator::toolkit::{sealed, Issuer};
use serde_json::{json, Value};
use std::sync::Arc;

/// The key attribute the rotator marks its keys with.
pub const STATE_ATTRIBUTE: &str = "ApiKeyRotatorState";

/// Apigee X (`apigee` in the sandbox).
pub struct Apigee;

/// A token request to the Google OAuth endpoint the double serves (a POST that only reads).
pub fn is_token_call(r: &Value) -> bool {
    r["service"] == "apigee" && r["path"].as_str().is_some_and(|p| p.ends_with("/token"))
}

fn collect_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("consumerKey", Value::String(s)) => out.push(s.clone()),
                    _ => collect_keys(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_keys(v, out)),
        _ => {}
    }
}

impl IssuerDouble for Apigee {
    fn service(&self) -> &'static str {
        "apigee"
    }

    fn issuer(&self, env: &Env) -> Arc<dyn Issuer> {
        let details = sealed::open(
            &env.info.env["TOOLKITUUID"],
            &env.info.env["COMPANYDETAILS"],
        )
        .expect("the sandbox's company details open");
        details
            .issuer
            .config()
            .connect(env.tls_client())
            .expect("the registry builds the issuer")
    }

    fn app_with_auto_product(&self) -> (&'static str, &'static str) {
        ("APIKeyRotator_TestApp2_Sandbox", "orders-product")
    }

    fn app_with_manual_product(&self) -> (&'static str, &'static str) {
        ("APIKeyRotator_TestApp1_Sandbox", "healthcheck-product")
    }

    fn stored_keys(&self, state: &Value, app: &str) -> Vec<StoredKey> {
        let Some(credentials) = state["apigee"]["apps"][app]["credentials"].as_array() else {
            return Vec::new();
        };
        credentials
            .iter()
            .map(|c| {
                let mark = c["attributes"]
                    .as_array()
                    .and_then(|a| a.iter().find(|a| a["name"] == STATE_ATTRIBUTE))
                    .map(|a| a["value"].as_str().unwrap_or_default());
                StoredKey {
                    key: c["consumerKey"].as_str().unwrap().to_string(),
                    approved: c["status"] == "approved",
                    products: c["apiProducts"]
                        .as_array()
                        .map(|p| {
                            p.iter()
                                .map(|a| {
                                    let s = |f: &str| a[f].as_str().unwrap().to_string();
                                    (s("apiproduct"), s("status"))
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    revoked: c["status"] == "revoked",
                    attributes: c["attributes"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|a| {
                                    let s = |f: &str| a[f].as_str().unwrap_or("").to_string();
                                    (s("name"), s("value"))
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    mark: match mark {
                        None => Mark::None,
                        Some("unfinished") => Mark::Unfinished,
                        Some("productsAttached") => Mark::ProductsAttached,
                        Some(other) => panic!("unknown {STATE_ATTRIBUTE} {other}"),
                    },
                }
            })
            .collect()
    }

    fn all_keys(&self, state: &Value) -> Vec<String> {
        let mut keys = Vec::new();
        collect_keys(&state["apigee"], &mut keys);
        keys
    }

    fn only_reads(&self, request: &Value) -> bool {
        is_token_call(request)
    }

    fn fault(&self, step: Step, status: u16) -> Value {
        // Paths: `.../apps/{app}` (GET: list), `.../apps/{app}/keys` (POST: keys.create),
        // `.../keys/{key}` (POST: keys.updateDeveloperAppKey, which attaches the products;
        // DELETE: keys.delete), `.../keys/{key}/apiproducts/{product}?action=approve`.
        let (method, path) = match step {
            Step::List => ("GET", "/apps/"),
            Step::Create => ("POST", "/keys"),
            Step::AttachProducts => ("POST", "/keys/"),
            Step::Approve => ("POST", "/apiproducts/"),
            Step::Delete => ("DELETE", "/keys/"),
            // `keys.updateDeveloperAppKey?action=revoke` (the key's own status).
            Step::Revoke => ("POST", "?action=revoke"),
        };
        json!({"service": "apigee", "method": method, "match": path, "status": status})
    }
}

//! ToolkitApp's limits (issue 13): forced renewals at most once per interval per app (429 with
//! `Retry-After`), `Cache-Control: no-store` on every answer, each key handed out logged with
//! who asked, and the optional Entra allow-list read from the principal headers App Service
//! Authentication forwards.

use crate::common;

use common::{Env, Handler};
use serde_json::{json, Value};

const APP: &str = "ApiKeyRotator_TestApp3_Sandbox";

async fn ask(
    handler: &Handler,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = handler
        .client
        .post(format!("{}/api/ToolkitApp", handler.base))
        .json(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap())
}

/// A second forced renewal within the interval is a 429 with Retry-After, creating nothing;
/// every answer, key or error, says no-store; the log names the caller and shows the key's
/// last 4 only.
#[tokio::test(flavor = "multi_thread")]
async fn forced_renewals_are_limited_and_nothing_is_cached() {
    let env = Env::start().await;
    let handler = Handler::start(&env.settings(&[])).await;
    let force = json!({"appName": APP, "force": true});
    let key_header = [("x-functions-key", "the-function-key-of-ops")];
    let (status, headers, first) = ask(&handler, &force, &key_header).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["renewed"], true, "{first}");
    assert_eq!(headers["cache-control"], "no-store");
    let (status, headers, refused) = ask(&handler, &force, &key_header).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["error"]["code"], "TooManyRequests");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("TOOLKIT_FORCE_MIN_INTERVAL_MINUTES"));
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&wait), "{wait}");
    assert_eq!(headers["cache-control"], "no-store");
    let keys = env.all_keys().await;
    let output = handler.output();
    let key = first["apiKey"].as_str().unwrap();
    assert!(output.contains("ToolkitApp handed out a key"), "{output}");
    assert!(output.contains("function key sha256:"), "{output}");
    assert!(
        !output.contains("the-function-key-of-ops"),
        "the function key itself is never logged"
    );
    assert!(output.contains(&key[key.len() - 4..]));
    handler.assert_no_key_leaked(&keys, &[&refused.to_string()]);
    // A plain (unforced) call still answers the current key.
    let (status, _, current) = ask(&handler, &json!({"appName": APP}), &key_header).await;
    assert_eq!((status, current["apiKey"].as_str()), (200, Some(key)));
}

/// With TOOLKIT_ALLOWED_PRINCIPALS set: no principal is 401, a principal not listed for the
/// app is 403, a listed one gets the key.
#[tokio::test(flavor = "multi_thread")]
async fn the_allow_list_reads_the_forwarded_principal() {
    let env = Env::start().await;
    let allowed = json!({ APP: ["0b5c6d7e-0000-4000-8000-00000000c1a0"] }).to_string();
    let handler =
        Handler::start(&env.settings(&[("TOOLKIT_ALLOWED_PRINCIPALS", allowed.as_str())])).await;
    let body = json!({"appName": APP});
    let (status, headers, e) = ask(&handler, &body, &[]).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (401, Some("Unauthenticated")),
        "{e}"
    );
    assert_eq!(headers["cache-control"], "no-store");
    let other = [(
        "x-ms-client-principal-id",
        "ffffffff-0000-4000-8000-000000000000",
    )];
    let (status, _, e) = ask(&handler, &body, &other).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (403, Some("Forbidden")),
        "{e}"
    );
    let listed = [
        (
            "x-ms-client-principal-id",
            "0b5c6d7e-0000-4000-8000-00000000c1a0",
        ),
        ("x-ms-client-principal-name", "rotation-ci@contoso.com"),
    ];
    let (status, _, ok) = ask(&handler, &body, &listed).await;
    assert_eq!(status, 200, "{ok}");
    assert!(handler
        .output()
        .contains("principal rotation-ci@contoso.com (0b5c6d7e-0000-4000-8000-00000000c1a0)"));
}

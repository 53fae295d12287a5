//! The ways a deployment can be wired: a service principal instead of the managed identity,
//! and a ToolkitApp in another function app (`TOOLKIT_APP_URL` with `x-functions-key`).

use crate::common;

use common::{Env, Handler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_principal_works_where_there_is_no_managed_identity() {
    let env = Env::start().await;
    let secret = env.info.env["SANDBOX_CLIENT_SECRET"].clone();
    let settings = env.service_principal_settings(&[]);
    let handler = Handler::start(&settings).await;
    let (status, report) = handler.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["summary"]["updated"], 13, "{report:#}");
    let requests = env.requests().await;
    assert!(
        requests.iter().any(|r| r["service"] == "authority"),
        "tokens come from Entra ID"
    );
    assert!(
        !requests.iter().any(|r| r["service"] == "identity"),
        "no managed identity was asked"
    );
    handler.assert_no_key_leaked(&env.all_keys().await, &[&report.to_string()]);
    assert!(
        !handler.output().contains(&secret),
        "the client secret must not be logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_toolkit_app_provides_the_keys() {
    let env = Env::start().await;
    let toolkit = Handler::start(&env.settings(&[])).await;
    // The rotating app holds no sealed details at all: only the toolkit's URL and key.
    let rotator = Handler::start(&env.settings(&[
        ("COMPANYDETAILS", ""),
        ("TOOLKITUUID", ""),
        (
            "TOOLKIT_APP_URL",
            &format!("{}/api/ToolkitApp", toolkit.base),
        ),
        ("TOOLKIT_APP_KEY", "function-key-for-tests"),
    ]))
    .await;
    let (status, report) = rotator.rotate("").await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["summary"]["renewed"], 1, "{report:#}");
    assert_eq!(report["summary"]["updated"], 13, "{report:#}");
    // The toolkit's own log shows it answered once per app.
    let answered = toolkit
        .output()
        .matches("ToolkitApp handed out a key")
        .count();
    assert_eq!(answered, 3, "{}", toolkit.output());
    let keys = env.all_keys().await;
    toolkit.assert_no_key_leaked(&keys, &[]);
    rotator.assert_no_key_leaked(&keys, &[&report.to_string()]);
}

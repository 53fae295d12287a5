//! Every double refuses what the real front ends refuse: a `POST`, `PUT` or `PATCH` without
//! `Content-Length` or chunked encoding gets `411 Length Required` with that front end's body,
//! before authentication. Sent over a raw TLS socket, since every HTTP client library frames
//! bodies itself; then the same request with `Content-Length: 0` reaches the service.

use crate::common;

use base64::Engine;
use common::Env;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

/// The sandbox CA's certificates, from its PEM file.
fn roots(env: &Env) -> rustls::RootCertStore {
    let pem = std::fs::read_to_string(&env.info.ca_cert_file).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for block in pem.split("-----BEGIN CERTIFICATE-----").skip(1) {
        let b64: String = block
            .split("-----END CERTIFICATE-----")
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        roots.add(der.into()).unwrap();
    }
    roots
}

/// Sends `head` (a request without a body) to `url`'s host and port, over TLS for `https`, and
/// returns the whole answer as text (the connection is closed by the request's own header).
fn raw(roots: &rustls::RootCertStore, url: &str, head: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap()
    );
    let socket = TcpStream::connect(&addr).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut out = Vec::new();
    if url.scheme() == "https" {
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let name =
            rustls::pki_types::ServerName::try_from(url.host_str().unwrap().to_string()).unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, socket);
        tls.write_all(head.as_bytes()).unwrap();
        // The server may close without close_notify: what arrived before that is the answer.
        let _ = tls.read_to_end(&mut out);
    } else {
        let mut socket = socket;
        socket.write_all(head.as_bytes()).unwrap();
        let _ = socket.read_to_end(&mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every double's base URL and a path on it that takes a body-carrying method.
fn doubles(env: &Env) -> Vec<(&'static str, String, &'static str, &'static str)> {
    let e = &env.info.endpoints;
    let vault = e.key_vaults.values().next().unwrap().clone();
    let store = e.app_configurations.values().next().unwrap()["endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let app_api = e.application_apis.values().next().unwrap().clone();
    vec![
        ("identity", e.identity.clone(), "/msi/token", "POST"),
        ("authority", e.authority.clone(), "/tenant/oauth2/v2.0/token", "POST"),
        ("keyVault", vault, "/secrets/s?api-version=7.6", "PUT"),
        ("appConfiguration", store, "/kv/k?api-version=2023-11-01", "PUT"),
        (
            "resourceManager",
            e.resource_manager.clone(),
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/x/config/appsettings/list?api-version=2024-04-01",
            "POST",
        ),
        (
            "apigee",
            e.apigee.clone(),
            "/v1/organizations/o/developers/d/apps/a/keys/k?action=approve",
            "POST",
        ),
        ("applicationApi", app_api, "", "PATCH"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_double_answers_411_to_an_unframed_body_before_auth() {
    let env = Env::start().await;
    let roots = roots(&env);
    let targets = doubles(&env);
    let answers = tokio::task::spawn_blocking({
        let roots = roots.clone();
        let targets = targets.clone();
        move || {
            targets
                .iter()
                .map(|(service, base, path, method)| {
                    let url = format!("{}{}", base.trim_end_matches('/'), path);
                    let parsed = url::Url::parse(&url).unwrap();
                    let target = match parsed.query() {
                        Some(q) => format!("{}?{q}", parsed.path()),
                        None => parsed.path().to_string(),
                    };
                    let host = format!(
                        "{}:{}",
                        parsed.host_str().unwrap(),
                        parsed.port_or_known_default().unwrap()
                    );
                    let bare = format!(
                        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                    );
                    let framed = format!(
                        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    (
                        *service,
                        raw(&roots, &url, &bare),
                        raw(&roots, &url, &framed),
                    )
                })
                .collect::<Vec<_>>()
        }
    })
    .await
    .unwrap();
    for (service, bare, framed) in &answers {
        let status = bare.lines().next().unwrap_or_default();
        assert!(
            status.starts_with("HTTP/1.1 411"),
            "{service}: an unframed body must get 411, got {status:?}"
        );
        if *service == "apigee" {
            assert!(
                bare.contains("requests require a <code>Content-length</code> header"),
                "{service}: Google's front-end page expected:\n{bare}"
            );
        } else {
            assert!(
                bare.contains(
                    "HTTP Error 411. The request must be chunked or have a content length."
                ),
                "{service}: HTTP.sys's page expected:\n{bare}"
            );
            assert!(bare
                .to_ascii_lowercase()
                .contains("server: microsoft-httpapi/2.0"));
        }
        let framed_status = framed.lines().next().unwrap_or_default();
        assert!(
            !framed_status.starts_with("HTTP/1.1 411") && framed_status.starts_with("HTTP/1.1 "),
            "{service}: with Content-Length: 0 the service itself answers, got {framed_status:?}"
        );
    }
    // The refusals are in the request log like any answer.
    let log = env.requests().await;
    for (service, _, _, _) in &targets {
        assert!(
            log.iter()
                .any(|r| r["service"] == *service && r["status"] == 411),
            "{service}: no 411 in the request log"
        );
    }
}

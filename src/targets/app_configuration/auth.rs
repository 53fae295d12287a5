//! The two ways to authenticate to App Configuration: an Entra ID bearer token for the audience
//! derived from the endpoint's domain, or HMAC-SHA256 signing with a connection string's
//! access key (NOTES §2).

use crate::error::{Error, Result};
use crate::secret::Secret;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The token scope for a store at `endpoint`, as the SDKs derive it from the host.
pub fn audience(endpoint: &url::Url) -> &'static str {
    let host = endpoint.host_str().unwrap_or("").to_ascii_lowercase();
    if host.ends_with(".appconfig.azure.us") || host.ends_with(".azconfig.azure.us") {
        "https://appconfig.azure.us/.default"
    } else if host.ends_with(".appconfig.azure.cn") || host.ends_with(".azconfig.azure.cn") {
        "https://appconfig.azure.cn/.default"
    } else if host.ends_with(".appconfig.azure.com") {
        "https://appconfig.azure.com/.default"
    } else {
        // *.azconfig.io, and any other host (the loopback sandbox).
        "https://azconfig.io/.default"
    }
}

/// An access key from a connection string `Endpoint=...;Id=...;Secret=...`.
#[derive(Clone)]
pub struct AccessKey {
    /// The store's endpoint as the connection string gives it.
    pub endpoint: url::Url,
    /// The credential id (`Id`).
    pub id: String,
    /// The decoded `Secret`.
    secret: Secret,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("endpoint", &self.endpoint.as_str())
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AccessKey {
    /// Parses a connection string; the message never repeats the secret.
    pub fn parse(connection_string: &str) -> Result<Self> {
        let (mut endpoint, mut id, mut secret) = (None, None, None);
        for part in connection_string
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Error::config("the connection string is not Endpoint=...;Id=...;Secret=...")
            })?;
            match k.to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(v.to_string()),
                "id" => id = Some(v.to_string()),
                "secret" => secret = Some(v.to_string()),
                _ => {}
            }
        }
        let missing = |what: &str| {
            Error::config(format!(
                "the connection string has no {what}; expected Endpoint=...;Id=...;Secret=..."
            ))
        };
        let endpoint = endpoint.ok_or_else(|| missing("Endpoint"))?;
        let endpoint = url::Url::parse(&endpoint).map_err(|e| {
            Error::config(format!(
                "the connection string's Endpoint is not a URL ({e})"
            ))
        })?;
        let id = id.filter(|i| !i.is_empty()).ok_or_else(|| missing("Id"))?;
        let secret = secret.ok_or_else(|| missing("Secret"))?;
        // The secret is base64; anything else would only fail at the first request.
        B64.decode(secret.as_bytes())
            .map_err(|_| Error::config("the connection string's Secret is not base64"))?;
        Ok(Self {
            endpoint,
            id,
            secret: Secret::new(secret),
        })
    }

    /// The headers that sign a request: `x-ms-date`, `x-ms-content-sha256` and
    /// `Authorization`, for `method` on `url` with `body`, at `date` (RFC 1123).
    pub fn sign(
        &self,
        method: &str,
        url: &url::Url,
        body: &[u8],
        date: &str,
    ) -> Vec<(&'static str, String)> {
        let hash = content_hash(body);
        let host = host_header(url);
        let to_sign = string_to_sign(method, &path_and_query(url), date, &host, &hash);
        let key = B64
            .decode(self.secret.expose().as_bytes())
            .unwrap_or_default();
        let signature = hmac_base64(&key, &to_sign);
        vec![
            ("x-ms-date", date.to_string()),
            ("x-ms-content-sha256", hash),
            (
                "authorization",
                format!(
                    "HMAC-SHA256 Credential={}&SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
                    self.id
                ),
            ),
        ]
    }
}

/// base64(SHA-256(body)).
pub fn content_hash(body: &[u8]) -> String {
    B64.encode(Sha256::digest(body))
}

/// The `Host` header for `url`: the host, with the port when it is not the scheme's default.
pub fn host_header(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The path and query exactly as sent.
pub fn path_and_query(url: &url::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// `METHOD\npath_and_query\nx-ms-date;host;x-ms-content-sha256`.
pub fn string_to_sign(
    method: &str,
    path_and_query: &str,
    date: &str,
    host: &str,
    hash: &str,
) -> String {
    format!(
        "{}\n{path_and_query}\n{date};{host};{hash}",
        method.to_ascii_uppercase()
    )
}

/// base64(HMAC-SHA256(key, message)).
pub fn hmac_base64(key: &[u8], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// Now as an RFC 1123 date (`Tue, 27 Aug 2019 16:52:32 GMT`), the form `x-ms-date` takes.
pub fn rfc1123_now() -> String {
    rfc1123(time::OffsetDateTime::now_utc())
}

/// `t` as an RFC 1123 date in GMT.
pub fn rfc1123(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// Parses an RFC 1123 date in GMT.
pub fn parse_rfc1123(s: &str) -> Option<time::OffsetDateTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), &format)
        .ok()
        .map(|t| t.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_follow_the_domain() {
        for (endpoint, scope) in [
            ("https://appcs1.azconfig.io", "https://azconfig.io/.default"),
            (
                "https://appcs1.appconfig.azure.com",
                "https://appconfig.azure.com/.default",
            ),
            (
                "https://appcs1.azconfig.azure.us",
                "https://appconfig.azure.us/.default",
            ),
            (
                "https://appcs1.appconfig.azure.us",
                "https://appconfig.azure.us/.default",
            ),
            (
                "https://appcs1.azconfig.azure.cn",
                "https://appconfig.azure.cn/.default",
            ),
            (
                "https://appcs1.appconfig.azure.cn",
                "https://appconfig.azure.cn/.default",
            ),
            ("https://127.0.0.1:8443", "https://azconfig.io/.default"),
        ] {
            assert_eq!(audience(&endpoint.parse().unwrap()), scope, "{endpoint}");
        }
    }

    #[test]
    fn connection_strings() {
        let k =
            AccessKey::parse("Endpoint=https://appcs1.azconfig.io;Id=abc-l0-s0:x;Secret=c2VjcmV0")
                .unwrap();
        assert_eq!(k.endpoint.as_str(), "https://appcs1.azconfig.io/");
        assert_eq!(k.id, "abc-l0-s0:x");
        assert!(!format!("{k:?}").contains("c2VjcmV0"));
        for bad in [
            "",
            "Endpoint=https://x.azconfig.io;Id=a",
            "Id=a;Secret=c2VjcmV0",
            "Endpoint=x;Id=a;Secret=c2VjcmV0",
            "Endpoint=https://x;Id=a;Secret=not base64!",
        ] {
            let e = AccessKey::parse(bad).unwrap_err();
            assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        }
    }

    #[test]
    fn empty_body_hash_is_the_documented_one() {
        assert_eq!(
            content_hash(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn rfc1123_round_trips() {
        let t = time::macros::datetime!(2019-08-27 16:52:32 UTC);
        assert_eq!(rfc1123(t), "Tue, 27 Aug 2019 16:52:32 GMT");
        assert_eq!(parse_rfc1123("Tue, 27 Aug 2019 16:52:32 GMT"), Some(t));
        assert_eq!(parse_rfc1123("2019-08-27"), None);
    }

    /// The signature equals an HMAC computed independently (RustCrypto's `hmac` used directly on
    /// the documented string-to-sign), and the host carries a non-default port.
    #[test]
    fn signature_matches_an_independent_computation() {
        let secret = B64.encode(b"0123456789abcdef0123456789abcdef");
        let k = AccessKey::parse(&format!(
            "Endpoint=https://127.0.0.1:8443;Id=my-id;Secret={secret}"
        ))
        .unwrap();
        let url: url::Url = "https://127.0.0.1:8443/kv/a%2Fb?label=prd&api-version=2023-11-01"
            .parse()
            .unwrap();
        let body = br#"{"value":"v"}"#;
        let date = "Tue, 27 Aug 2019 16:52:32 GMT";
        let headers = k.sign("put", &url, body, date);

        let expected_hash = B64.encode(sha2::Sha256::digest(body));
        let expected_to_sign = format!(
            "PUT\n/kv/a%2Fb?label=prd&api-version=2023-11-01\n{date};127.0.0.1:8443;{expected_hash}"
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        mac.update(expected_to_sign.as_bytes());
        let expected_sig = B64.encode(mac.finalize().into_bytes());
        assert_eq!(
            headers,
            vec![
                ("x-ms-date", date.to_string()),
                ("x-ms-content-sha256", expected_hash),
                ("authorization", format!("HMAC-SHA256 Credential=my-id&SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={expected_sig}")),
            ]
        );
        // The default port is left out of the host.
        assert_eq!(
            host_header(&"https://x.azconfig.io:443/kv".parse().unwrap()),
            "x.azconfig.io"
        );
    }

    /// A fixed vector (RFC 4231 test case 2) pins the HMAC itself.
    #[test]
    fn hmac_known_vector() {
        assert_eq!(
            hmac_base64(b"Jefe", "what do ya want for nothing?"),
            B64.encode([
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
                0x64, 0xec, 0x38, 0x43
            ])
        );
    }
}

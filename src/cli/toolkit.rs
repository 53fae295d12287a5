//! `apikey-rotator toolkit`: the standalone (on-premises) toolkit. It serves `POST /getkey`
//! with `{"appName": "..."}` over HTTPS on `localhost:<port>` (default 3000), answered exactly as
//! ToolkitApp answers (`functions::standalone_router`), from the same sealed company details
//! (`COMPANYDETAILS` or `--company-details FILE`) opened with `--uuid` (`TOOLKITUUID`).
//!
//! TLS: a self-signed certificate for `localhost`, `127.0.0.1` and `::1`, made on the first
//! start and kept in the instance's state folder (the key readable by its owner only), or the
//! one given with `--cert`/`--key`. It listens on loopback only: `/getkey` hands out full keys to
//! whoever can connect, and nothing in front of it signs callers in.
//!
//! The seed's start-up failures keep the seed's words ("Port already in use!", "Incorrect
//! Toolkit UUID has been provided"), each with its cause and what to do, exit 2, and never
//! quote the UUID or a key.

use crate::functions::{self, ServerLimits};
use crate::rotation::Rotator;
use crate::settings::{Settings, COMPANY_DETAILS, TOOLKIT_APP_URL, TOOLKIT_UUID};
use crate::toolkit::sealed::INCORRECT_UUID;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The default port, as the seed's toolkit had it.
pub const DEFAULT_PORT: u16 = 3000;
/// The certificate's file name in the instance's state folder.
pub const CERT_FILE: &str = "toolkit-cert.pem";
/// The private key's file name in the instance's state folder.
pub const KEY_FILE: &str = "toolkit-key.pem";
/// How long a generated certificate is valid.
const CERT_DAYS: i64 = 3650;

/// `apikey-rotator toolkit`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ToolkitArgs {
    /// The Toolkit UUID that opens the sealed company details (TOOLKITUUID). Prefer the
    /// environment variable on shared machines: a command line is visible to other users.
    #[arg(long, env = TOOLKIT_UUID, hide_env_values = true, value_name = "UUID")]
    pub uuid: String,
    /// Port on localhost (0: any free port, printed at start).
    #[arg(long, env = "TOOLKITPORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// The instance's name: each instance keeps its certificate in its own state folder.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub instance: String,
    /// Where instances keep their state (DIR/<instance>/). Default: the user's data folder,
    /// e.g. ~/.local/share/apikey-rotator/toolkit on Linux, %LOCALAPPDATA%\apikey-rotator\toolkit
    /// on Windows.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Serve this certificate chain (PEM) instead of the generated one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Read the sealed company details (the COMPANYDETAILS value) from this file instead of
    /// the COMPANYDETAILS environment variable.
    #[arg(long, value_name = "FILE")]
    pub company_details: Option<PathBuf>,
}

/// A start-up failure: what the user reads, already worded (no UUID, no key).
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs the toolkit until ctrl-c or SIGTERM; exit 0 once the requests in flight are answered,
/// 2 when it cannot start.
pub async fn run(args: ToolkitArgs) -> ExitCode {
    match start(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

async fn start(args: ToolkitArgs) -> Result<(), StartError> {
    let toolkit = listen(std::env::vars().collect(), &args).await?;
    let port = toolkit.port;
    eprintln!(
        "Toolkit listening on https://localhost:{port}{} (instance {})",
        functions::STANDALONE_ROUTE,
        args.instance
    );
    eprintln!(
        "Certificate: {} (SHA-256 {}); trust it, e.g. curl --cacert {} ...",
        toolkit.cert_file.display(),
        toolkit.fingerprint,
        toolkit.cert_file.display()
    );
    tracing::info!(
        port,
        instance = %args.instance,
        certificate = %toolkit.cert_file.display(),
        fingerprint = %toolkit.fingerprint,
        "toolkit listening"
    );
    toolkit.serve(functions::shutdown_signal()).await;
    tracing::info!("toolkit stopped");
    Ok(())
}

/// A standalone toolkit that listens and is ready to serve: what `apikey-rotator toolkit` runs,
/// and what the demo starts for its on-premises part.
pub struct Listening {
    /// The port it listens on (the one asked for, or the free one picked for port 0).
    pub port: u16,
    /// The certificate it serves (PEM): what its callers trust.
    pub cert_file: PathBuf,
    /// The certificate's SHA-256 fingerprint.
    pub fingerprint: String,
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    rotator: Rotator,
}

/// Everything `apikey-rotator toolkit` does before it serves, with `env` as the process
/// environment: the settings (`--uuid`, `--company-details`), the toolkit they open, the
/// certificate, the listener on loopback. Each failure is the message the command prints.
pub async fn listen(
    env: BTreeMap<String, String>,
    args: &ToolkitArgs,
) -> Result<Listening, StartError> {
    let env = environment(env, args)?;
    let rotator = rotator(env)?;
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => load_tls(cert, key)?,
        _ => {
            let folder = instance_folder(args.state_dir.as_deref(), &args.instance)?;
            kept_certificate(&folder)?
        }
    };
    let listener = bind(args.port).await?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(args.port);
    Ok(Listening {
        port,
        cert_file: tls.cert_file,
        fingerprint: tls.fingerprint,
        listener,
        config: tls.config,
        rotator,
    })
}

impl Listening {
    /// Serves `POST /getkey` until `shutdown`, then lets the requests in flight finish.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let limits = ServerLimits::default();
        let app = functions::standalone_router(Arc::new(self.rotator), limits);
        functions::serve_tls_on(self.listener, self.config, app, limits, shutdown).await;
    }
}

/// The settings the toolkit runs with: the process environment, `--uuid` as TOOLKITUUID and
/// `--company-details` as COMPANYDETAILS. Settings that only make sense in a function app are
/// refused rather than ignored.
fn environment(
    mut env: BTreeMap<String, String>,
    args: &ToolkitArgs,
) -> Result<BTreeMap<String, String>, StartError> {
    for (name, why) in [
        (
            TOOLKIT_APP_URL,
            "the standalone toolkit talks to the API manager itself; unset it",
        ),
        (
            functions::ALLOWED_PRINCIPALS_SETTING,
            "no App Service Authentication signs callers in here, so principals cannot be checked; unset it (the toolkit listens on localhost only)",
        ),
    ] {
        if env.get(name).is_some_and(|v| !v.trim().is_empty()) {
            return Err(StartError(format!("Error: {name} is set: {why}")));
        }
    }
    env.insert(TOOLKIT_UUID.to_string(), args.uuid.clone());
    if let Some(file) = &args.company_details {
        let text = std::fs::read_to_string(file)
            .map_err(|e| StartError(format!("Error: --company-details {}: {e}", file.display())))?;
        env.insert(COMPANY_DETAILS.to_string(), text);
    }
    Ok(env)
}

fn incorrect_uuid(detail: &str) -> StartError {
    StartError(format!(
        "Error: Incorrect Toolkit UUID has been provided\n\
         Possible cause: the UUID given with --uuid (or TOOLKITUUID) {detail}.\n\
         Solution: use the Toolkit UUID that came with the company details (the one that sealed them)."
    ))
}

/// The rotator over `env`, once its toolkit is known to open: the seed's message when the UUID
/// does not open the sealed details.
fn rotator(env: BTreeMap<String, String>) -> Result<Rotator, StartError> {
    let settings = Settings::from_map(env);
    if let Some(p) = settings
        .check_for_toolkit()
        .into_iter()
        .find(|p| p.setting == TOOLKIT_UUID || p.setting == COMPANY_DETAILS)
    {
        return Err(if p.setting == TOOLKIT_UUID {
            incorrect_uuid("is not a UUID (expected the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
        } else {
            StartError(format!(
                "Error: {COMPANY_DETAILS}: missing; give the sealed company details with --company-details FILE or the {COMPANY_DETAILS} environment variable"
            ))
        });
    }
    let rotator = Rotator::new(settings);
    match rotator.key_source() {
        Ok(_) => Ok(rotator),
        Err(e) if e.message() == INCORRECT_UUID => Err(incorrect_uuid(
            "is not the one that sealed these company details",
        )),
        Err(e) => Err(StartError(format!("Error: the toolkit cannot start: {e}"))),
    }
}

/// The listener on loopback, or the seed's message when the port is taken.
async fn bind(port: u16) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| bind_error(&e, port))
}

fn bind_error(e: &std::io::Error, port: u16) -> StartError {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => StartError(format!(
            "Error: Port already in use!\n\
             Possible cause: the toolkit (or another program) is already running on port {port}.\n\
             Solution: to run the toolkit on a different port, run it again with the port you want: apikey-rotator toolkit --uuid <toolkit uuid> --port <port-number>"
        )),
        _ => StartError(format!("Error: cannot listen on localhost:{port}: {e}")),
    }
}

/// `<state-dir>/<instance>`, `<state-dir>` defaulting to the user's data folder.
fn instance_folder(state_dir: Option<&Path>, instance: &str) -> Result<PathBuf, StartError> {
    let valid = !instance.is_empty()
        && instance.len() <= 64
        && instance != "."
        && instance != ".."
        && instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(StartError(format!(
            "Error: --instance \"{instance}\": expected 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    let base = match state_dir {
        Some(dir) => dir.to_path_buf(),
        None => default_state_dir(&|name| std::env::var_os(name)).ok_or_else(|| {
            StartError(
                "Error: no data folder is known for this user (HOME / LOCALAPPDATA unset); give one with --state-dir DIR".into(),
            )
        })?,
    };
    Ok(base.join(instance))
}

/// The user's data folder for toolkit state, from the environment `var` reads.
fn default_state_dir(var: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let non_empty = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let data = if cfg!(windows) {
        non_empty("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        non_empty("HOME").map(|h| h.join("Library").join("Application Support"))
    } else {
        non_empty("XDG_DATA_HOME").or_else(|| non_empty("HOME").map(|h| h.join(".local/share")))
    }?;
    Some(data.join("apikey-rotator").join("toolkit"))
}

/// The server's TLS configuration and where its certificate is.
struct Tls {
    config: Arc<rustls::ServerConfig>,
    cert_file: PathBuf,
    fingerprint: String,
}

/// Loads a PEM certificate chain and key.
fn load_tls(cert_file: &Path, key_file: &Path) -> Result<Tls, StartError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect())
        .map_err(|e| StartError(format!("Error: {}: {e}", cert_file.display())))?;
    let Some(leaf) = chain.first() else {
        return Err(StartError(format!(
            "Error: {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            cert_file.display()
        )));
    };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| StartError(format!("Error: {}: {e}", key_file.display())))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            StartError(format!(
                "Error: {} and {} do not make a TLS identity: {e}",
                cert_file.display(),
                key_file.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        cert_file: cert_file.to_path_buf(),
        fingerprint,
    })
}

/// SHA-256 of the certificate's DER, as `openssl x509 -fingerprint -sha256` shows it.
fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let hex = crate::secret::sha256_hex(cert.as_ref()).to_ascii_uppercase();
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// The instance's certificate: the kept one, or a new one made and kept now.
fn kept_certificate(folder: &Path) -> Result<Tls, StartError> {
    let (cert_file, key_file) = (folder.join(CERT_FILE), folder.join(KEY_FILE));
    match (cert_file.exists(), key_file.exists()) {
        (true, true) => return load_tls(&cert_file, &key_file),
        (false, false) => {}
        (has_cert, _) => {
            let (found, missing) = if has_cert {
                (&cert_file, &key_file)
            } else {
                (&key_file, &cert_file)
            };
            return Err(StartError(format!(
                "Error: {} exists but {} does not; delete it to have a new certificate made, or give --cert and --key",
                found.display(),
                missing.display()
            )));
        }
    }
    let io = |what: &Path, e: std::io::Error| {
        StartError(format!("Error: cannot write {}: {e}", what.display()))
    };
    create_private_dir(folder).map_err(|e| io(folder, e))?;
    let (cert_pem, key_pem) = generate_certificate()
        .map_err(|e| StartError(format!("Error: cannot make a certificate: {e}")))?;
    // The key first: a certificate never exists without its key.
    write_new(&key_file, key_pem.as_bytes(), true).map_err(|e| io(&key_file, e))?;
    write_new(&cert_file, cert_pem.as_bytes(), false).map_err(|e| io(&cert_file, e))?;
    tracing::info!(certificate = %cert_file.display(), "made a self-signed certificate for the toolkit");
    load_tls(&cert_file, &key_file)
}

/// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`: (certificate PEM, key
/// PEM). Not a CA: TLS clients accept it as its own trust anchor.
fn generate_certificate() -> Result<(String, String), rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "apikey-rotator toolkit");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(CERT_DAYS);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn create_private_dir(folder: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(folder)
}

/// Writes a file that must not exist yet; `private`: readable by its owner only (mode 0600).
fn write_new(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

    fn args(extra: &[&str]) -> ToolkitArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: ToolkitArgs,
        }
        let mut argv = vec!["toolkit", "--uuid", UUID];
        argv.extend_from_slice(extra);
        Wrap::try_parse_from(argv).unwrap().args
    }

    /// Port 3000 unless told; the instance is "default".
    #[test]
    fn defaults_are_the_seeds() {
        let a = args(&[]);
        assert_eq!((a.port, a.instance.as_str()), (3000, "default"));
        assert_eq!(args(&["--port", "3001"]).port, 3001);
    }

    /// A taken port gets the seed's words and how to pick another; other errors say what
    /// happened.
    #[test]
    fn port_in_use_says_how_to_pick_another() {
        let e = bind_error(&std::io::Error::from(std::io::ErrorKind::AddrInUse), 3000).0;
        assert!(e.starts_with("Error: Port already in use!\n"), "{e}");
        assert!(
            e.contains("port 3000") && e.contains("--port <port-number>"),
            "{e}"
        );
        let e = bind_error(
            &std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            80,
        )
        .0;
        assert!(e.contains("cannot listen on localhost:80"), "{e}");
    }

    /// Sealed details that the UUID does not open, or a UUID that is not one, get the seed's
    /// message, which never quotes the UUID.
    #[test]
    fn a_wrong_uuid_gets_the_seeds_message() {
        let other = "0b5c6d7e-0000-4000-8000-00000000c1a0";
        let sealed = crate::toolkit::sealed::seal(other, b"{}").unwrap();
        let env = environment(
            [(COMPANY_DETAILS.to_string(), sealed)]
                .into_iter()
                .collect(),
            &args(&[]),
        )
        .unwrap();
        let e = rotator(env).err().unwrap().0;
        assert!(
            e.starts_with("Error: Incorrect Toolkit UUID has been provided\n"),
            "{e}"
        );
        assert!(!e.contains(UUID) && !e.contains(other), "{e}");
        let mut a = args(&[]);
        a.uuid = "not-a-uuid-secret".into();
        let env = environment(
            [(COMPANY_DETAILS.to_string(), "v1.x".to_string())]
                .into_iter()
                .collect(),
            &a,
        )
        .unwrap();
        let e = rotator(env).err().unwrap().0;
        assert!(
            e.contains("Incorrect Toolkit UUID") && e.contains("not a UUID"),
            "{e}"
        );
        assert!(!e.contains("not-a-uuid-secret"), "{e}");
        let e = rotator(environment(BTreeMap::new(), &args(&[])).unwrap())
            .err()
            .unwrap()
            .0;
        assert!(
            e.contains("COMPANYDETAILS: missing") && e.contains("--company-details"),
            "{e}"
        );
    }

    /// Function-app settings that would change who answers or who may ask are refused.
    #[test]
    fn function_app_only_settings_are_refused() {
        for name in [TOOLKIT_APP_URL, functions::ALLOWED_PRINCIPALS_SETTING] {
            let env = [(name.to_string(), "x".to_string())].into_iter().collect();
            let e = environment(env, &args(&[])).unwrap_err().0;
            assert!(e.contains(name) && e.contains("unset it"), "{e}");
        }
    }

    /// Instance names stay inside the state folder; the data folder follows the platform.
    #[test]
    fn state_folders() {
        let base = Path::new("/srv/state");
        assert_eq!(
            instance_folder(Some(base), "blue-1").unwrap(),
            base.join("blue-1")
        );
        for bad in ["", "..", "a/b", "a\\b", "x y"] {
            assert!(instance_folder(Some(base), bad).is_err(), "{bad:?}");
        }
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        if cfg!(all(unix, not(target_os = "macos"))) {
            assert_eq!(
                default_state_dir(&env(&[("HOME", "/home/u")])).unwrap(),
                Path::new("/home/u/.local/share/apikey-rotator/toolkit")
            );
            assert_eq!(
                default_state_dir(&env(&[("HOME", "/home/u"), ("XDG_DATA_HOME", "/d")])).unwrap(),
                Path::new("/d/apikey-rotator/toolkit")
            );
        }
        assert_eq!(default_state_dir(&env(&[])), None);
    }

    /// The first start makes a certificate and a key only its owner reads; the next start keeps
    /// them; half a pair is refused rather than replaced.
    #[test]
    fn the_certificate_is_made_once_and_kept() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let folder = instance_folder(Some(dir.path()), "default").unwrap();
        let first = kept_certificate(&folder).unwrap();
        let second = kept_certificate(&folder).unwrap();
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.cert_file, folder.join(CERT_FILE));
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&folder.join(KEY_FILE)), 0o600);
            assert_eq!(mode(&folder), 0o700);
        }
        std::fs::remove_file(folder.join(KEY_FILE)).unwrap();
        let e = kept_certificate(&folder).err().unwrap().0;
        assert!(e.contains("exists but") && e.contains(KEY_FILE), "{e}");
        let other = tempfile::tempdir().unwrap();
        let theirs = kept_certificate(other.path()).unwrap();
        let e = load_tls(&folder.join(CERT_FILE), &other.path().join(KEY_FILE))
            .err()
            .unwrap()
            .0;
        assert!(e.contains("do not make a TLS identity"), "{e}");
        assert_ne!(theirs.fingerprint, first.fingerprint);
    }
}

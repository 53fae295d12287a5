//! Azurite's blob service for the run-lock tests: installed once per machine under
//! `$HOME/.cache/apikey-rotator` (unless `azurite-blob` is on PATH), one instance per test on a
//! free port, in memory, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The Azurite version the tests install: the newest whose `engines` accept Node.js 20, the
/// Node.js that Debian 12 and this project's machines have (3.36 and later need Node.js 21+).
/// `.ci/run` installs the same version into the same folder.
pub const AZURITE_VERSION: &str = "3.35.0";
/// Azurite's development account and its public key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running `azurite-blob`.
pub struct Azurite {
    child: Child,
    /// Its blob port on 127.0.0.1.
    pub port: u16,
}

impl Azurite {
    /// Installs Azurite if needed, starts it, and waits until it accepts connections.
    pub fn start() -> Azurite {
        let bin = azurite_blob();
        let port = super::free_port();
        let child = Command::new(&bin)
            .args([
                "--silent",
                "--inMemoryPersistence",
                "--blobHost",
                "127.0.0.1",
            ])
            .args(["--blobPort", &port.to_string()])
            .args(["--skipApiVersionCheck", "--loose"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let azurite = Azurite { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Azurite did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        azurite
    }

    /// The blob endpoint (path-style, with the account).
    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// A connection string for `AzureWebJobsStorage`.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={};",
            self.blob_endpoint()
        )
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `azurite-blob` from PATH, or from the cache folder after a one-time `npm install` there.
pub fn azurite_blob() -> PathBuf {
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("azurite-blob"))
            .find(|p| p.is_file())
    }) {
        return found;
    }
    // One folder per version, so changing the version installs it instead of using the old one.
    let prefix = PathBuf::from(std::env::var("HOME").expect("HOME is set"))
        .join(format!(".cache/apikey-rotator/azurite-{AZURITE_VERSION}"));
    let bin = prefix.join("node_modules/.bin/azurite-blob");
    if bin.is_file() {
        return bin;
    }
    std::fs::create_dir_all(&prefix).unwrap();
    // Test binaries run concurrently: a directory created atomically is the install lock.
    let lock = prefix.join(".azurite-install.lock");
    let _held = DirLock::take(&lock);
    if !bin.is_file() {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("azurite@{AZURITE_VERSION}"))
            .status()
            .expect("npm runs (Node.js is needed for the run-lock tests)");
        assert!(
            status.success(),
            "npm install azurite@{AZURITE_VERSION} failed"
        );
    }
    assert!(
        bin.is_file(),
        "{} is missing after npm install",
        bin.display()
    );
    bin
}

/// A lock held while a directory exists: test binaries run side by side, and creating a
/// directory is atomic. A lock left by a killed run is taken over after ten minutes.
pub struct DirLock(PathBuf);

impl DirLock {
    /// Waits (ten minutes at most) until the lock at `path` is ours.
    pub fn take(path: &Path) -> DirLock {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => return DirLock(path.to_path_buf()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A lock left by a killed test run is stale after ten minutes.
                    let stale = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| {
                            SystemTime::now().duration_since(t).unwrap_or_default()
                                > Duration::from_secs(600)
                        });
                    if stale {
                        let _ = std::fs::remove_dir(path);
                    }
                    assert!(
                        Instant::now() < deadline,
                        "waited too long for {}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

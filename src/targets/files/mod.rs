//! Files on the host that hold keys (on premises: host-managed keys): Java `.properties`,
//! `.env`, JSON (a JSON Pointer to a string), YAML (a dotted path to a one-line scalar) and
//! plain files holding only the key.
//!
//! One container per file, whatever number of entries name it: the file is read once and
//! written at most once per run. A write edits only the bytes of the values it changes (every
//! other byte, comment and line ending is kept), and is atomic: a temporary file in the same
//! folder with the file's permissions (and owner, when the rotator may set it), fsync, rename.
//! Just before the rename the file is compared with what was read: a file someone else changed
//! meanwhile is left as they made it (`Conflict`). Files must resolve (symlinks followed) inside
//! one of the folders of the `FILES_ALLOWED_ROOTS` setting; without it every file is refused.

mod error;
mod formats;
mod mapping;

pub use mapping::{FileGroup, FileKeyMapping, PLAIN_ENTRY};

use super::{
    Container, Entry, Kind, PlannedContainer, Remedies, Stored, TargetContext, TargetType, Write,
};
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::walk::{Walked, Walker};
use crate::mapping::AppsMapping;
use crate::secret::ApiKey;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The setting naming the folders files may be in (comma-separated absolute paths).
pub const ALLOWED_ROOTS_SETTING: &str = "FILES_ALLOWED_ROOTS";

/// The report's type of a file.
pub const TYPE: TargetType = TargetType::new("FILE", "file", "key", false).with_remedies(Remedies {
    forbidden: Some("let the rotator's user read and write the file and its folder, and list the folder in FILES_ALLOWED_ROOTS"),
    not_found: Some("check path in the mapping's files section: the rotator does not create files"),
    unauthenticated: None,
});

/// A file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The file holds only the key.
    Plain,
    /// `NAME=value` lines.
    Env,
    /// Java `.properties`.
    Properties,
    /// A JSON document; keys are JSON Pointers to strings.
    Json,
    /// A YAML document; keys are dotted paths of mapping keys to one-line scalars.
    Yaml,
}

impl Format {
    /// Every format, in the mapping's order.
    pub const ALL: [Format; 5] = [
        Format::Plain,
        Format::Env,
        Format::Properties,
        Format::Json,
        Format::Yaml,
    ];

    /// Its name in the mapping.
    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Env => "env",
            Format::Properties => "properties",
            Format::Json => "json",
            Format::Yaml => "yaml",
        }
    }

    /// The value at `key` in `text` (`None` when missing).
    fn find(self, text: &str, key: &str) -> std::result::Result<Option<String>, String> {
        let found = match self {
            Format::Plain => formats::plain::find(text)?,
            Format::Env => formats::env::find(text, key)?,
            Format::Properties => formats::properties::find(text, key)?,
            Format::Json => formats::json::find(text, key)?,
            Format::Yaml => formats::yaml::find(text, key)?,
        };
        Ok(found.map(|f| f.value))
    }

    /// `text` with `key` set to `value`.
    fn set(self, text: &str, key: &str, value: &str) -> std::result::Result<String, String> {
        match self {
            Format::Plain => formats::plain::set(text, value),
            Format::Env => formats::env::set(text, key, value),
            Format::Properties => formats::properties::set(text, key, value),
            Format::Json => formats::json::set(text, key, value),
            Format::Yaml => formats::yaml::set(text, key, value),
        }
    }
}

/// The files kind: the `files` section, one container per file.
pub struct FilesKind;

/// The kind, for the registry.
pub static KIND: FilesKind = FilesKind;

impl Kind for FilesKind {
    fn sections(&self) -> &'static [&'static str] {
        &["files"]
    }

    fn types(&self) -> &'static [TargetType] {
        &[TYPE]
    }

    fn read(
        &self,
        _: &str,
        entry: &serde_json::Value,
        path: &str,
        walker: &mut Walker,
    ) -> Option<Walked> {
        mapping::read(walker, entry, path)
    }

    fn schema(&self) -> &'static str {
        include_str!("schema.json")
    }

    fn plan(
        &self,
        mapping: &AppsMapping,
        context: &TargetContext,
    ) -> Result<Vec<PlannedContainer>> {
        let roots = allowed_roots(context.settings.get(ALLOWED_ROOTS_SETTING));
        Ok(by_file(mapping.groups::<FileGroup>())
            .into_iter()
            .map(|(g, entries, refused)| {
                // A file named with two formats is refused whole (its entries fail), the
                // other files and kinds go on.
                let roots = match refused {
                    Some(why) => Err(why),
                    None => roots.clone(),
                };
                PlannedContainer {
                    container: Arc::new(FileContainer::new(&g.path, g.format, g.backup, roots)),
                    entries,
                }
            })
            .collect())
    }
}

/// The mapping's file groups merged per file (one container each), with the reason to refuse
/// the file when two groups give it different formats.
fn by_file<'a>(
    groups: impl IntoIterator<Item = &'a FileGroup>,
) -> Vec<(FileGroup, Vec<Entry>, Option<String>)> {
    let mut files: Vec<(FileGroup, Vec<Entry>, Option<String>)> = Vec::new();
    for group in groups {
        let entries = group.keys.iter().map(|k| Entry {
            name: k.key.clone(),
            apim_app_name: k.apim_app_name.clone(),
        });
        match files.iter_mut().find(|(g, _, _)| g.path == group.path) {
            Some((g, e, refused)) => {
                if g.format != group.format {
                    *refused = Some(format!(
                        "the mapping names file {} twice, as {} and as {}; name it with one format",
                        g.path.display(),
                        g.format.name(),
                        group.format.name()
                    ));
                }
                g.backup |= group.backup;
                e.extend(entries);
            }
            None => files.push((group.clone(), entries.collect(), None)),
        }
    }
    files
}

/// The allowed folders of the setting's value: `Err` with the reason when unset or malformed.
fn allowed_roots(value: Option<&str>) -> std::result::Result<Vec<PathBuf>, String> {
    let Some(value) = value else {
        return Err(format!(
            "the app setting {ALLOWED_ROOTS_SETTING} is not set: list the folders (absolute, comma-separated) where the rotator may write files"
        ));
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let p = Path::new(s);
            if !p.is_absolute() {
                return Err(format!(
                    "the app setting {ALLOWED_ROOTS_SETTING}: \"{s}\" is not an absolute path"
                ));
            }
            p.canonicalize()
                .map_err(|e| format!("the app setting {ALLOWED_ROOTS_SETTING}: folder {s}: {e}"))
        })
        .collect()
}

/// What the rotator saw when it read the file.
struct Snapshot {
    bytes: Vec<u8>,
    values: HashMap<String, Option<String>>,
}

/// One file; its entries are the keys in it.
pub struct FileContainer(Arc<HostFile>);

/// What a [`FileContainer`] knows of its file; shared with the blocking threads that read and
/// write it (file I/O blocks, and must not hold up the run's other requests on a runtime
/// thread).
struct HostFile {
    path: PathBuf,
    label: String,
    format: Format,
    backup: bool,
    roots: std::result::Result<Vec<PathBuf>, String>,
    seen: Mutex<Option<Snapshot>>,
}

impl FileContainer {
    /// The file at `path` (absolute) in `format`, writable only inside `roots`.
    pub fn new(
        path: &Path,
        format: Format,
        backup: bool,
        roots: std::result::Result<Vec<PathBuf>, String>,
    ) -> Self {
        Self(Arc::new(HostFile {
            path: path.to_path_buf(),
            label: path.display().to_string(),
            format,
            backup,
            roots,
            seen: Mutex::new(None),
        }))
    }

    /// Runs `f` on the file on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&HostFile) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let file = self.0.clone();
        tokio::task::spawn_blocking(move || f(&file))
            .await
            .unwrap_or_else(|e| {
                Err(Error::unexpected(format!(
                    "file {}: the file task failed: {e}",
                    self.0.path.display()
                )))
            })
    }
}

impl HostFile {
    /// The file's real path (symlinks resolved), checked to be a regular file inside the
    /// allowed folders.
    fn resolve(&self) -> Result<PathBuf> {
        let roots = self.roots.as_ref().map_err(|m| Error::config(m.clone()))?;
        let real = self
            .path
            .canonicalize()
            .map_err(|e| error::io_error(&self.path, "opening", &e))?;
        if !roots.iter().any(|r| real.starts_with(r)) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "file {}: resolves to {}, outside the folders of {ALLOWED_ROOTS_SETTING}; the rotator does not write there",
                    self.path.display(),
                    real.display()
                ),
            )
            .with_code("OutsideAllowedRoots"));
        }
        let meta =
            std::fs::metadata(&real).map_err(|e| error::io_error(&self.path, "opening", &e))?;
        if !meta.is_file() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("file {}: is not a regular file", self.path.display()),
            ));
        }
        Ok(real)
    }

    fn load(&self, real: &Path) -> Result<(Vec<u8>, String)> {
        let bytes = std::fs::read(real).map_err(|e| error::io_error(&self.path, "reading", &e))?;
        let text = String::from_utf8(bytes.clone())
            .map_err(|_| error::content_error(&self.path, "is not UTF-8 text"))?;
        Ok((bytes, text))
    }

    fn values(&self, text: &str, names: &[String]) -> Result<HashMap<String, Option<String>>> {
        names
            .iter()
            .map(|n| {
                let v = self
                    .format
                    .find(text, n)
                    .map_err(|p| error::content_error(&self.path, &p))?;
                Ok((n.clone(), v))
            })
            .collect()
    }

    fn read_all(&self, names: &[String]) -> Result<Vec<Stored>> {
        let real = self.resolve()?;
        let (bytes, text) = self.load(&real)?;
        let values = self.values(&text, names)?;
        let stored = names
            .iter()
            .map(|n| match &values[n] {
                Some(v) if !v.is_empty() => Stored::Value(ApiKey::new(v.clone())),
                _ => Stored::Missing,
            })
            .collect();
        tracing::debug!(file = %self.label, format = self.format.name(), keys = names.len(), "read file");
        *self.seen.lock().unwrap() = Some(Snapshot { bytes, values });
        Ok(stored)
    }

    fn write_all(&self, writes: &[Write]) -> Result<()> {
        let real = self.resolve()?;
        // Writers of one file in this process (two runs, or two entries' containers) take
        // turns, so one's rename never lands between another's last check and its rename;
        // writers in other processes are caught by the checks below.
        let turn = writer_turn(&real);
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let meta =
            std::fs::metadata(&real).map_err(|e| error::io_error(&self.path, "opening", &e))?;
        if meta.permissions().readonly() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("file {}: is not writable (read-only)", self.path.display()),
            ));
        }
        let (bytes, text) = self.load(&real)?;
        let names: Vec<String> = writes.iter().map(|w| w.name.clone()).collect();
        // Someone else may have changed the file since the rotator read it: their change is
        // kept only when none of the entries written here changed (others' entries are theirs).
        if let Some(seen) = self.seen.lock().unwrap().as_ref() {
            if seen.bytes != bytes {
                let now = self.values(&text, &names)?;
                if names.iter().any(|n| seen.values.get(n) != now.get(n)) {
                    return Err(error::changed_meanwhile(&self.path));
                }
            }
        }
        let mut new = text.clone();
        for w in writes {
            new = self
                .format
                .set(&new, &w.name, w.key.expose())
                .map_err(|p| error::content_error(&self.path, &p))?;
        }
        if new == text {
            return Ok(());
        }
        let dir = real.parent().unwrap_or(Path::new("/"));
        let tmp = write_temporary(dir, &real, new.as_bytes(), &meta).map_err(|e| {
            error::io_error(&self.path, "writing a temporary file in its folder", &e)
        })?;
        let finish = || -> Result<()> {
            // The last moment before the rename: anything changed since our read wins.
            let on_disk =
                std::fs::read(&real).map_err(|e| error::io_error(&self.path, "re-reading", &e))?;
            if on_disk != bytes {
                return Err(error::changed_meanwhile(&self.path));
            }
            if self.backup {
                let mut bak = real.clone().into_os_string();
                bak.push(".bak");
                let bak = PathBuf::from(bak);
                let t = write_temporary(dir, &bak, &bytes, &meta)
                    .map_err(|e| error::io_error(&self.path, "writing its backup", &e))?;
                std::fs::rename(&t, &bak).map_err(|e| {
                    let _ = std::fs::remove_file(&t);
                    error::io_error(&self.path, "writing its backup", &e)
                })?;
            }
            std::fs::rename(&tmp, &real)
                .map_err(|e| error::io_error(&self.path, "replacing", &e))?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        let result = finish();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return result;
        }
        tracing::info!(file = %self.label, keys = ?names, backup = self.backup, "rewrote file");
        let values = self.values(&new, &names)?;
        *self.seen.lock().unwrap() = Some(Snapshot {
            bytes: new.into_bytes(),
            values,
        });
        Ok(())
    }
}

/// The lock that writers of the file at `real` (its resolved path) in this process share.
fn writer_turn(real: &Path) -> Arc<Mutex<()>> {
    static TURNS: std::sync::OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> =
        std::sync::OnceLock::new();
    let mut turns = TURNS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    turns.entry(real.to_path_buf()).or_default().clone()
}

/// Writes `bytes` to a new temporary file next to `target` in `dir`, with `meta`'s permissions
/// (and owner, where the process may set it), synced to disk; returns its path.
fn write_temporary(
    dir: &Path,
    target: &Path,
    bytes: &[u8],
    meta: &std::fs::Metadata,
) -> std::io::Result<PathBuf> {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.apikey-rotator-{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.set_permissions(meta.permissions())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            // Only root may give a file away; otherwise the file is the rotator's own already.
            let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
        }
        f.write_all(bytes)?;
        f.sync_all()
    };
    match write() {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[async_trait::async_trait]
impl Container for FileContainer {
    fn target_type(&self) -> TargetType {
        TYPE
    }

    fn label(&self) -> &str {
        &self.0.label
    }

    async fn read(&self, names: &[String]) -> Vec<Result<Stored>> {
        let owned = names.to_vec();
        match self.blocking(move |f| f.read_all(&owned)).await {
            Ok(stored) => stored.into_iter().map(Ok).collect(),
            Err(e) => names.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn write(&self, writes: &[Write]) -> Vec<Result<()>> {
        let owned = writes.to_vec();
        match self.blocking(move |f| f.write_all(&owned)).await {
            Ok(()) => writes.iter().map(|_| Ok(())).collect(),
            Err(e) => {
                tracing::warn!(file = %self.0.label, error = %e, "file not rewritten");
                writes.iter().map(|_| Err(e.clone())).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn container(dir: &Path, file: &str, format: Format, backup: bool) -> FileContainer {
        let roots = allowed_roots(Some(&dir.display().to_string()));
        FileContainer::new(&dir.join(file), format, backup, roots)
    }

    fn write(name: &str, key: &str) -> Write {
        Write {
            name: name.into(),
            apim_app_name: "App1".into(),
            key: ApiKey::new(key),
            expires_at: None,
        }
    }

    const ENV: &str = "# keys\r\nORDERS_KEY=old-orders-key-1\r\nOTHER=\"x\"\r\n";

    #[tokio::test]
    async fn rewrites_the_file_once_keeping_permissions_and_other_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        std::fs::write(&path, ENV).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let c = container(dir.path(), "app.env", Format::Env, true);
        let names = ["ORDERS_KEY".to_string(), "NEW_KEY".to_string()];
        let got = c.read(&names).await;
        assert!(got[0]
            .as_ref()
            .unwrap()
            .holds(&ApiKey::new("old-orders-key-1")));
        assert_eq!(got[1].as_ref().unwrap(), &Stored::Missing);
        let results = c
            .write(&[
                write("ORDERS_KEY", "new-orders-key-2"),
                write("NEW_KEY", "k3"),
            ])
            .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# keys\r\nORDERS_KEY=new-orders-key-2\r\nOTHER=\"x\"\r\nNEW_KEY=k3\r\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let mut bak = path.clone().into_os_string();
        bak.push(".bak");
        assert_eq!(std::fs::read_to_string(bak).unwrap(), ENV);
        // Nothing is left behind but the file and its backup.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[tokio::test]
    async fn a_file_changed_after_the_read_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.properties");
        std::fs::write(&path, "k=old\n").unwrap();
        let c = container(dir.path(), "app.properties", Format::Properties, false);
        assert!(c.read(&["k".into()]).await[0].is_ok());
        std::fs::write(&path, "k=theirs\n").unwrap();
        let got = c.write(&[write("k", "mine")]).await;
        let err = got[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains("app.properties"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "k=theirs\n");
        // A change to another entry is theirs to keep, and ours is applied on top of it.
        let c = container(dir.path(), "app.properties", Format::Properties, false);
        assert!(c.read(&["k".into()]).await[0].is_ok());
        std::fs::write(&path, "k=theirs\nother=1\n").unwrap();
        assert!(c.write(&[write("k", "mine")]).await[0].is_ok());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "k=mine\nother=1\n");
    }

    #[tokio::test]
    async fn bad_input_is_an_error_naming_the_file_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = "do-not-leak-this-key-123456";
        std::fs::write(outside.path().join("target.env"), "K=v\n").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("target.env"),
            dir.path().join("link.env"),
        )
        .unwrap();
        std::fs::write(dir.path().join("dup.env"), "K=a\nK=b\n").unwrap();
        std::fs::write(dir.path().join("bad.env"), "K=a\nnot a line\n").unwrap();
        std::fs::write(dir.path().join("ro.env"), "K=a\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("ro.env"),
            std::fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        let cases = [
            ("missing.env", ErrorKind::NotFound, "does not exist"),
            (
                "link.env",
                ErrorKind::PermissionDenied,
                "outside the folders of FILES_ALLOWED_ROOTS",
            ),
            ("dup.env", ErrorKind::InvalidInput, "at lines 1 and 2"),
            (
                "bad.env",
                ErrorKind::InvalidInput,
                "line 2: expected NAME=value",
            ),
            ("ro.env", ErrorKind::PermissionDenied, "not writable"),
        ];
        for (file, kind, words) in cases {
            let c = container(dir.path(), file, Format::Env, true);
            let before = std::fs::read(dir.path().join(file)).ok();
            let err = c.write(&[write("K", secret)]).await.remove(0).unwrap_err();
            assert_eq!(err.kind(), kind, "{file}: {err}");
            let text = format!("{err} {err:?}");
            assert!(
                text.contains(file) && text.contains(words),
                "{file}: {text}"
            );
            assert!(!text.contains(secret), "{file}: the key leaked");
            assert_eq!(std::fs::read(dir.path().join(file)).ok(), before, "{file}");
        }
        assert_eq!(
            std::fs::read_to_string(outside.path().join("target.env")).unwrap(),
            "K=v\n"
        );
        // Without the setting, every file is refused.
        let c = FileContainer::new(
            &dir.path().join("dup.env"),
            Format::Env,
            false,
            allowed_roots(None),
        );
        let err = c.read(&["K".into()]).await.remove(0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigInvalid);
        assert!(err.to_string().contains(ALLOWED_ROOTS_SETTING), "{err}");
    }

    #[test]
    fn entries_of_one_file_share_its_container_and_two_formats_refuse_it() {
        let group = |path: &str, format, key: &str| FileGroup {
            path: PathBuf::from(path),
            format,
            backup: false,
            keys: vec![FileKeyMapping {
                key: key.into(),
                apim_app_name: "App1".into(),
            }],
        };
        let groups = [
            group("/k/a.env", Format::Env, "A"),
            group("/k/b.yaml", Format::Yaml, "x.y"),
            group("/k/a.env", Format::Env, "B"),
            group("/k/b.yaml", Format::Properties, "z"),
        ];
        let files = by_file(&groups);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].1.len(), 2);
        assert_eq!(files[0].2, None);
        assert!(files[1]
            .2
            .as_deref()
            .unwrap()
            .contains("as yaml and as properties"));
    }

    #[tokio::test]
    async fn an_unchanged_file_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        std::fs::write(&path, "same\n").unwrap();
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        let c = container(dir.path(), "key.txt", Format::Plain, true);
        assert!(c.write(&[write(PLAIN_ENTRY, "same")]).await[0].is_ok());
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no backup, no temporary"
        );
    }
}

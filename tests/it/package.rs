//! The deployable zip that `scripts/package.sh` writes (`dist/apikey-rotator.zip`): what
//! `az functionapp deployment source config-zip` needs at the zip root, the executable's exec
//! bit (a Unix "made-by" entry with mode 0755, so it survives on Dedicated/Premium Linux plans,
//! where the host does not chmod it), and an executable that runs on the Azure Functions Linux
//! images: x86-64 glibc, stripped, needing no glibc symbol version newer than 2.28.
//!
//! Without `dist/apikey-rotator.zip` the check of the real package is skipped (and says so on
//! stderr); `.ci/run` packages first, so in CI it always runs. `APIKEY_ROTATOR_ZIP` points it at
//! another zip. The checks themselves are tested below against zips built in memory.

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

const EXECUTABLE: &str = "apikey-rotator";
/// Every file the zip must hold at its root, besides the executable.
const CONFIG_FILES: [&str; 7] = [
    "host.json",
    "ToolkitApp/function.json",
    "ApiKeyRotator/function.json",
    "RotatorTimer/function.json",
    "KeyStatus/function.json",
    "KeyRollback/function.json",
    "Dashboard/function.json",
];
/// Text only the sandbox (the `sandbox` feature) puts in the executable, with the source file
/// it comes from: the deployable build (`--no-default-features`) must hold none of it.
const SANDBOX_MARKERS: [(&str, &str); 3] = [
    // Every injected fault's message (sandbox/src/double.rs).
    ("fault injected by the sandbox", "sandbox/src/double.rs"),
    // The sandbox CA's common name (sandbox/src/tls.rs).
    ("apikey-rotator sandbox CA", "sandbox/src/tls.rs"),
    // The `demo` command's help (src/cli/mod.rs, gated on the feature).
    (
        "Start the sandbox and the handler and run ApiKeyRotator twice",
        "src/cli/mod.rs",
    ),
];
/// The newest glibc the binary may need (Debian 10's; every Functions Linux image has it).
const MAX_GLIBC: (u32, u32) = (2, 28);

fn zip_path() -> PathBuf {
    match std::env::var_os("APIKEY_ROTATOR_ZIP") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dist/apikey-rotator.zip"),
    }
}

/// The real package, when it exists.
#[test]
fn deployable_zip_has_the_layout_the_exec_bit_and_an_old_enough_glibc() {
    let path = zip_path();
    if !path.exists() {
        // Written past the test harness's capture so the reason shows in a passing run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED deployable_zip_has_the_layout_the_exec_bit_and_an_old_enough_glibc: {} does not exist; \
             run scripts/package.sh (as .ci/run does) to build it and have it checked",
            path.display()
        );
        return;
    }
    let bytes = std::fs::read(&path).unwrap();
    let mut problems = check_layout(&bytes);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut zip = zip::ZipArchive::new(Cursor::new(&bytes)).unwrap();
    for name in CONFIG_FILES {
        if let Ok(mut f) = zip.by_name(name) {
            let mut packaged = Vec::new();
            f.read_to_end(&mut packaged).unwrap();
            if std::fs::read(root.join(name)).unwrap() != packaged {
                problems.push(format!(
                    "{name} differs from the repository's: the zip is stale, run scripts/package.sh"
                ));
            }
        }
    }
    if let Ok(mut f) = zip.by_name(EXECUTABLE) {
        let mut elf = Vec::new();
        f.read_to_end(&mut elf).unwrap();
        problems.extend(check_elf(&elf));
    }
    assert!(
        problems.is_empty(),
        "{}:\n  {}",
        path.display(),
        problems.join("\n  ")
    );
}

/// Problems with the zip's entries: missing files, a wrapper folder, unsafe paths, the
/// executable's mode, and host.json's executable path.
fn check_layout(bytes: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut zip = match zip::ZipArchive::new(Cursor::new(bytes)) {
        Ok(z) => z,
        Err(e) => return vec![format!("not a zip: {e}")],
    };
    let names: Vec<String> = match zip.file_names().collect::<Result<Vec<_>, _>>() {
        Ok(names) => names.into_iter().map(|n| n.into_owned()).collect(),
        Err(e) => return vec![format!("unreadable file name in the zip: {e}")],
    };
    for name in &names {
        if name.starts_with('/') || name.split(['/', '\\']).any(|part| part == "..") {
            problems.push(format!("unsafe path in the zip: {name}"));
        }
    }
    for wanted in CONFIG_FILES.iter().chain([&EXECUTABLE]) {
        if names.iter().any(|n| n == wanted) {
            continue;
        }
        match names.iter().find(|n| n.ends_with(&format!("/{wanted}"))) {
            Some(nested) => problems.push(format!(
                "{wanted} is not at the zip root but at {nested} (a wrapper folder: zip the folder's contents, not the folder)"
            )),
            None => problems.push(format!("{wanted} is missing from the zip")),
        }
    }

    if let Ok(f) = zip.by_name(EXECUTABLE) {
        if f.system() != zip::System::Unix {
            problems.push(format!(
                "{EXECUTABLE} was not stored with a Unix \"made-by\" ({:?}): its mode is lost on extraction",
                f.system()
            ));
        }
        match f.unix_mode() {
            Some(mode) if mode & 0o170000 != 0o100000 => problems.push(format!(
                "{EXECUTABLE} is not a regular file (mode {mode:o})"
            )),
            Some(mode) if mode & 0o111 != 0o111 => problems.push(format!(
                "{EXECUTABLE} has no exec bit for everyone (mode {:o}, want 755)",
                mode & 0o7777
            )),
            Some(_) => {}
            None => problems.push(format!("{EXECUTABLE} has no Unix mode in the zip")),
        }
    }

    if let Ok(mut f) = zip.by_name("host.json") {
        let mut text = String::new();
        let host: Option<serde_json::Value> = f
            .read_to_string(&mut text)
            .ok()
            .and_then(|_| serde_json::from_str(&text).ok());
        let path = host
            .as_ref()
            .and_then(|h| h.pointer("/customHandler/description/defaultExecutablePath"))
            .and_then(|p| p.as_str());
        if path != Some(EXECUTABLE) {
            problems.push(format!(
                "host.json's customHandler.description.defaultExecutablePath is {path:?}, want {EXECUTABLE:?}"
            ));
        }
    }
    problems
}

/// Problems with the executable: not x86-64 ELF, not stripped, needing a glibc newer than
/// [`MAX_GLIBC`], or carrying sandbox code.
fn check_elf(data: &[u8]) -> Vec<String> {
    use object::Object;
    let mut problems = check_no_sandbox(data);
    let file = match object::File::parse(data) {
        Ok(f) => f,
        Err(e) => return vec![format!("{EXECUTABLE} is not an executable object: {e}")],
    };
    if file.format() != object::BinaryFormat::Elf
        || file.architecture() != object::Architecture::X86_64
    {
        problems.push(format!(
            "{EXECUTABLE} is {:?} {:?}, want ELF x86_64",
            file.format(),
            file.architecture()
        ));
        return problems;
    }
    if file.kind() != object::ObjectKind::Executable && file.kind() != object::ObjectKind::Dynamic {
        problems.push(format!(
            "{EXECUTABLE} is a {:?}, not an executable",
            file.kind()
        ));
    }
    if file.section_by_name(".symtab").is_some() {
        problems.push(format!("{EXECUTABLE} is not stripped (it has a .symtab)"));
    }
    match glibc_versions(data) {
        Ok(versions) if versions.is_empty() => problems.push(format!(
            "{EXECUTABLE} needs no GLIBC symbol versions: not a glibc build (musl or static?)"
        )),
        Ok(versions) => {
            if let Some(too_new) = too_new(&versions) {
                problems.push(format!(
                    "{EXECUTABLE} needs {too_new}, newer than GLIBC_{}.{} (all: {})",
                    MAX_GLIBC.0,
                    MAX_GLIBC.1,
                    versions.join(", ")
                ));
            }
        }
        Err(e) => problems.push(format!("{EXECUTABLE}: unreadable version needs: {e}")),
    }
    problems
}

/// The sandbox's text found in the executable (it was built with the `sandbox` feature).
fn check_no_sandbox(data: &[u8]) -> Vec<String> {
    SANDBOX_MARKERS
        .iter()
        .filter(|(marker, _)| data.windows(marker.len()).any(|w| w == marker.as_bytes()))
        .map(|(marker, _)| {
            format!(
                "{EXECUTABLE} carries sandbox code (\"{marker}\"): build it with --no-default-features"
            )
        })
        .collect()
}

/// The `GLIBC_x.y[.z]` versions the ELF's `.gnu.version_r` needs, sorted, deduplicated.
fn glibc_versions(data: &[u8]) -> Result<Vec<String>, object::Error> {
    let elf = object::read::elf::ElfFile64::<object::Endianness>::parse(data)?;
    let endian = elf.endian();
    let sections = elf.elf_section_table();
    let mut versions = Vec::new();
    if let Some((mut needs, link)) = sections.gnu_verneed(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        while let Some((_need, mut aux)) = needs.next()? {
            while let Some(aux) = aux.next()? {
                let name = String::from_utf8_lossy(aux.name(endian, strings)?).into_owned();
                if parse_glibc(&name).is_some() {
                    versions.push(name);
                }
            }
        }
    }
    versions.sort_by_key(|v| parse_glibc(v));
    versions.dedup();
    Ok(versions)
}

/// `GLIBC_2.28` → `[2, 28]`; `GLIBC_PRIVATE` and other names → `None`.
fn parse_glibc(name: &str) -> Option<Vec<u32>> {
    name.strip_prefix("GLIBC_")?
        .split('.')
        .map(|p| p.parse().ok())
        .collect()
}

/// The newest version in `versions` when it is newer than [`MAX_GLIBC`].
fn too_new(versions: &[String]) -> Option<&str> {
    let max = [MAX_GLIBC.0, MAX_GLIBC.1];
    versions
        .iter()
        .filter_map(|v| parse_glibc(v).map(|p| (p, v)))
        .filter(|(p, _)| p.as_slice() > max.as_slice())
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v.as_str())
}

// ---- the checks, against zips and binaries built here ------------------------------------

struct Entry<'a> {
    name: &'a str,
    mode: u32,
    system: zip::System,
}

fn entry(name: &str) -> Entry<'_> {
    let mode = if name.ends_with(EXECUTABLE) {
        0o755
    } else {
        0o644
    };
    Entry {
        name,
        mode,
        system: zip::System::Unix,
    }
}

const HOST_JSON: &str = r#"{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"apikey-rotator"}}}"#;

fn build_zip(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for e in entries {
        let options = zip::write::SimpleFileOptions::default()
            .system(e.system)
            .unix_permissions(e.mode);
        w.start_file(e.name, options).unwrap();
        let body: &[u8] = if e.name.ends_with("host.json") {
            HOST_JSON.as_bytes()
        } else {
            b"{}"
        };
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn good_entries() -> Vec<Entry<'static>> {
    CONFIG_FILES
        .iter()
        .chain([&EXECUTABLE])
        .map(|n| entry(n))
        .collect()
}

#[test]
fn a_well_formed_zip_passes_the_layout_check() {
    assert_eq!(
        check_layout(&build_zip(&good_entries())),
        Vec::<String>::new()
    );
}

#[test]
fn a_missing_exec_bit_fails() {
    let mut entries = good_entries();
    entries.last_mut().unwrap().mode = 0o644;
    let problems = check_layout(&build_zip(&entries));
    assert!(
        problems.iter().any(|p| p.contains("no exec bit")),
        "{problems:?}"
    );
}

#[test]
fn an_executable_without_unix_made_by_fails() {
    // What zipping on Windows produces: the mode, and with it the exec bit, is lost.
    let mut entries = good_entries();
    entries.last_mut().unwrap().system = zip::System::Dos;
    let problems = check_layout(&build_zip(&entries));
    assert!(
        problems.iter().any(|p| p.contains("made-by")),
        "{problems:?}"
    );
}

#[test]
fn a_missing_file_fails() {
    let entries: Vec<_> = good_entries()
        .into_iter()
        .filter(|e| e.name != "RotatorTimer/function.json")
        .collect();
    let problems = check_layout(&build_zip(&entries));
    assert_eq!(
        problems,
        vec!["RotatorTimer/function.json is missing from the zip".to_string()]
    );
}

#[test]
fn a_wrapper_folder_fails() {
    let names: Vec<String> = CONFIG_FILES
        .iter()
        .chain([&EXECUTABLE])
        .map(|n| format!("apikey-rotator-0.1.0/{n}"))
        .collect();
    let entries: Vec<_> = names.iter().map(|n| entry(n)).collect();
    let problems = check_layout(&build_zip(&entries));
    assert_eq!(problems.len(), CONFIG_FILES.len() + 1, "{problems:?}");
    assert!(
        problems.iter().all(|p| p.contains("wrapper folder")),
        "{problems:?}"
    );
}

#[test]
fn glibc_versions_compare_by_component() {
    let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        too_new(&v(&["GLIBC_2.2.5", "GLIBC_2.3", "GLIBC_2.28"])),
        None
    );
    assert_eq!(
        too_new(&v(&[
            "GLIBC_2.2.5",
            "GLIBC_2.29",
            "GLIBC_2.34",
            "GLIBC_2.9"
        ])),
        Some("GLIBC_2.34")
    );
    assert_eq!(too_new(&v(&["GLIBC_2.28.1"])), Some("GLIBC_2.28.1"));
    assert_eq!(parse_glibc("GLIBC_PRIVATE"), None);
}

/// The markers are the sandbox's own text (so a renamed marker cannot make the check pass
/// vacuously), and an executable holding any of them is flagged.
#[test]
fn an_executable_with_sandbox_code_fails() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (marker, file) in SANDBOX_MARKERS {
        let source = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            source.contains(marker),
            "{file} no longer says \"{marker}\""
        );
        let mut elf = b"\x7fELF....".to_vec();
        elf.extend_from_slice(marker.as_bytes());
        let problems = check_no_sandbox(&elf);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("--no-default-features"));
    }
    assert!(check_no_sandbox(b"\x7fELF apikey-rotator serve rotate validate").is_empty());
}

#[test]
fn the_elf_check_reads_the_version_needs_of_a_real_binary() {
    // This test binary is linked against the build machine's glibc: the check finds its
    // version needs, and flags it exactly when they go past 2.28 (glibc 2.34+ machines:
    // __libc_start_main@GLIBC_2.34).
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let versions = glibc_versions(&me).unwrap();
    assert!(
        versions.iter().any(|v| v.starts_with("GLIBC_2.")),
        "{versions:?}"
    );
    let problems = check_elf(&me);
    assert_eq!(
        too_new(&versions).is_some(),
        problems.iter().any(|p| p.contains("newer than GLIBC_2.28")),
        "{versions:?} {problems:?}"
    );
    assert!(check_elf(b"#!/bin/sh\n")[0].contains("not an executable object"));
}

// ---- the release workflow: the zip and the CLI binaries, without a Rust toolchain --------

/// `.github/workflows/release.yml` (no YAML crate in the tree: its key lines, and the shape
/// given by indentation: top-level keys, jobs, steps).
fn release_workflow() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".github/workflows/release.yml"),
    )
    .expect("release.yml")
}

/// The keys at `indent` spaces under the top-level key `section` (`jobs:` → job names).
fn keys_under(yaml: &str, section: &str, indent: usize) -> Vec<String> {
    let mut inside = false;
    let mut keys = Vec::new();
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            inside = line.trim_end() == format!("{section}:");
            continue;
        }
        let spaces = line.len() - line.trim_start().len();
        if inside
            && spaces == indent
            && line.trim_end().ends_with(':')
            && !line.trim().starts_with('-')
        {
            keys.push(line.trim().trim_end_matches(':').to_string());
        }
    }
    keys
}

/// The lines of one job (from `  <job>:` to the next job).
fn job<'a>(yaml: &'a str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in yaml.lines() {
        let spaces = line.len() - line.trim_start().len();
        if spaces == 2 && line.trim_end().ends_with(':') && !line.trim().starts_with('-') {
            inside = line.trim() == format!("{name}:");
            continue;
        }
        if inside {
            out.push(line);
        }
    }
    out
}

#[test]
fn the_release_workflow_runs_on_version_tags_and_builds_every_platform() {
    let y = release_workflow();
    assert!(!y.contains('\t'), "YAML has no tabs");
    let top: Vec<&str> = y
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('#') && l.contains(':'))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(top, ["name", "on", "permissions", "env", "jobs"]);
    assert!(
        y.contains("on:\n  push:\n    tags: [\"v*\"]\n"),
        "on a v* tag"
    );
    assert!(
        y.contains("permissions:\n  contents: read\n"),
        "read-only by default"
    );
    assert_eq!(
        keys_under(&y, "jobs", 2),
        ["linux", "macos", "windows", "publish"]
    );
    let linux = job(&y, "linux").join("\n");
    assert!(linux.contains("runs-on: ubuntu-latest"));
    assert!(
        linux.contains("run: scripts/package.sh"),
        "the zip, as CI builds it"
    );
    assert!(
        linux.contains("cargo test --locked --test it package::"),
        "checked before release"
    );
    assert!(linux.contains("for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do"));
    assert!(linux.contains(
        "cargo zigbuild --release --locked --bin apikey-rotator --target \"$target.2.28\""
    ));
    assert!(linux.contains("cp dist/apikey-rotator.zip out/"));
    let macos = job(&y, "macos").join("\n");
    assert!(macos.contains("runs-on: macos-latest"));
    assert!(macos.contains("target: [x86_64-apple-darwin, aarch64-apple-darwin]"));
    let windows = job(&y, "windows").join("\n");
    assert!(windows.contains("runs-on: windows-latest"));
    assert!(windows.contains("target=x86_64-pc-windows-msvc"));
    assert!(windows.contains("apikey-rotator.exe"));
    // The zip name is the one package.sh writes and the docs give as packageUri.
    let package = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/package.sh"),
    )
    .unwrap();
    assert!(package.contains("out=${PACKAGE_OUT:-dist/apikey-rotator.zip}"));
}

#[test]
fn the_release_is_published_with_checksums_and_a_deploy_to_azure_button() {
    let y = release_workflow();
    let publish = job(&y, "publish").join("\n");
    assert!(publish.contains("needs: [linux, macos, windows]"));
    // Only the publishing job may write, and only contents.
    assert!(publish.contains("permissions:\n      contents: write"));
    for other in ["linux", "macos", "windows"] {
        assert!(
            !job(&y, other).join("\n").contains("contents: write"),
            "{other}"
        );
    }
    assert!(publish.contains("sha256sum -- * > SHA256SUMS"));
    // The button opens this tag's template from raw.githubusercontent.com (which serves the
    // CORS header the portal needs), URL-encoded, built from the repository and the tag.
    assert!(publish.contains("REPO: ${{ github.repository }}"));
    assert!(publish.contains("TAG: ${{ github.ref_name }}"));
    assert!(publish.contains(
        "template=\"https://raw.githubusercontent.com/${REPO}/${TAG}/infra/azuredeploy.json\""
    ));
    assert!(publish.contains("encoded=$(jq -rn --arg u \"$template\" '$u|@uri')"));
    assert!(publish.contains(
        "[![Deploy to Azure](https://aka.ms/deploytoazurebutton)](https://portal.azure.com/#create/Microsoft.Template/uri/${encoded})"
    ));
    // The package URL the notes give is the template's packageUri parameter.
    assert!(publish.contains(
        "package=\"https://github.com/${REPO}/releases/download/${TAG}/apikey-rotator.zip\""
    ));
    assert!(publish.contains("packageUri=${package}"));
    let template = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("infra/azuredeploy.json"),
    )
    .unwrap();
    assert!(template.contains("\"packageUri\""));
    assert!(publish.contains(
        "gh release create \"$TAG\" out/* --repo \"${{ github.repository }}\" --title \"$TAG\" --notes-file notes.md --verify-tag"
    ));
}

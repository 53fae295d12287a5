//! The repository is a Functions project Core Tools can start (`scripts/local-build.sh && func
//! start`), checked against the conventions Core Tools and the host read (the reference files
//! in `tests/fixtures/reference/functions/`: `host.docs-*.json`, `local.settings.docs.json`,
//! `zip-deploy-layout.txt`): host.json version 2.0 whose custom handler's
//! `defaultExecutablePath` is a relative path that the build step produces and the zip holds;
//! a folder with a `function.json` per function, whose bindings the real handler serves;
//! `.funcignore` keeps the sources out of a publish; `local.settings.json` and the copied
//! executable are git-ignored; `local.settings.sample.json` is in Core Tools' format with
//! values the rotator accepts.

use crate::common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The folders at the root holding a `function.json`, sorted.
fn function_folders() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("function.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn executable_path() -> String {
    json("host.json")["customHandler"]["description"]["defaultExecutablePath"]
        .as_str()
        .expect("customHandler.description.defaultExecutablePath")
        .to_string()
}

#[test]
fn host_json_is_version_2_with_a_custom_handler_at_a_relative_path() {
    let host = json("host.json");
    assert_eq!(host["version"], "2.0");
    // The keys of the reference custom-handler host.json files are the ones used here.
    let reference = common::reference("functions/host.docs-extensionBundle-v4.json");
    let reference: Value = serde_json::from_slice(&reference).unwrap();
    assert_eq!(host["extensionBundle"], reference["extensionBundle"]);
    let description = &host["customHandler"]["description"];
    let path = executable_path();
    assert!(
        !path.is_empty()
            && !path.starts_with('/')
            && !path.contains('\\')
            && !path.split('/').any(|p| p == ".." || p == "."),
        "defaultExecutablePath must be relative to the app root: {path:?}"
    );
    // The working directory, when given, is relative to the root too.
    let wd = description["workingDirectory"].as_str().unwrap_or("");
    assert!(!wd.starts_with('/') && !wd.contains(".."), "{wd:?}");
    // The handler is started as `apikey-rotator serve`.
    assert_eq!(description["arguments"], serde_json::json!(["serve"]));
    assert_eq!(
        host["customHandler"]["enableForwardingHttpRequest"], true,
        "HTTP requests reach the handler as they are (PRODUCT.md §3)"
    );
}

#[test]
fn the_executable_is_where_the_build_step_and_the_zip_put_it() {
    let path = executable_path();
    // The binary cargo builds has that name...
    let cargo = read("Cargo.toml");
    assert!(
        cargo.contains(&format!("[[bin]]\nname = \"{path}\"")),
        "Cargo.toml builds no binary named {path}"
    );
    // ...the local build step copies it there (next to host.json)...
    let local = read("scripts/local-build.sh");
    assert!(local.contains("exe=apikey-rotator\n"), "{local}");
    assert!(local.contains("cp \"$target_dir/release/$exe\" \"./$exe\""));
    assert_eq!(path, "apikey-rotator");
    let mode = std::fs::metadata(root().join("scripts/local-build.sh"))
        .unwrap()
        .permissions();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            mode.mode() & 0o111 != 0,
            "scripts/local-build.sh is executable"
        );
    }
    #[cfg(not(unix))]
    let _ = mode;
    // ...and the deployable zip holds it at its root under the same name.
    let package = read("scripts/package.sh");
    assert!(
        package.contains(&format!("add(z, \"{path}\", binary, 0o755)")),
        "scripts/package.sh stores the executable under another name"
    );
    // The layout the docs give: host.json and the handler at the root.
    let layout = String::from_utf8(common::reference("functions/zip-deploy-layout.txt")).unwrap();
    assert!(layout.contains("| host.json") && layout.contains("|   function.json"));
}

#[test]
fn every_function_folder_is_packaged_and_declares_one_trigger() {
    let folders = function_folders();
    assert_eq!(
        folders,
        [
            "ApiKeyRotator",
            "Dashboard",
            "KeyRollback",
            "KeyStatus",
            "RotatorTimer",
            "ToolkitApp"
        ]
    );
    let package = read("scripts/package.sh");
    let listed = package
        .lines()
        .find_map(|l| l.strip_prefix("functions=("))
        .expect("scripts/package.sh lists its functions")
        .trim_end_matches(')');
    let mut packaged: Vec<&str> = listed.split_whitespace().collect();
    packaged.sort();
    assert_eq!(packaged, folders, "the zip holds every function folder");
    for name in &folders {
        let f = json(&format!("{name}/function.json"));
        let bindings = f["bindings"].as_array().expect("bindings");
        let triggers: Vec<&Value> = bindings
            .iter()
            .filter(|b| b["type"].as_str().unwrap_or("").ends_with("Trigger"))
            .collect();
        assert_eq!(triggers.len(), 1, "{name}: one trigger");
        assert_eq!(triggers[0]["direction"], "in", "{name}");
        assert!(
            f.get("scriptFile").is_none(),
            "{name}: custom handlers have no scriptFile"
        );
        match triggers[0]["type"].as_str().unwrap() {
            "httpTrigger" => {
                assert_eq!(triggers[0]["authLevel"], "function", "{name}");
                assert!(
                    triggers[0].get("route").is_none(),
                    "{name}: the handler serves /api/{name}"
                );
                assert!(
                    bindings
                        .iter()
                        .any(|b| b["type"] == "http" && b["direction"] == "out"),
                    "{name}: an http output"
                );
            }
            "timerTrigger" => {
                assert_eq!(triggers[0]["schedule"], "%API_KEY_ROTATION_SCHEDULE%");
            }
            other => panic!("{name}: unexpected trigger {other}"),
        }
    }
}

/// The request the host sends the handler for each function (forwarded HTTP requests to
/// `/api/<name>` with each declared method; other triggers as `POST /<name>`).
fn host_requests() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for name in function_folders() {
        let f = json(&format!("{name}/function.json"));
        let trigger = f["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"].as_str().unwrap_or("").ends_with("Trigger"))
            .unwrap()
            .clone();
        if trigger["type"] == "httpTrigger" {
            for m in trigger["methods"].as_array().expect("methods") {
                out.push((
                    name.clone(),
                    m.as_str().unwrap().to_ascii_uppercase(),
                    format!("/api/{name}"),
                ));
            }
        } else {
            out.push((name.clone(), "POST".into(), format!("/{name}")));
        }
    }
    out
}

#[tokio::test]
async fn the_handler_serves_every_binding_of_every_function_json() {
    // The sample settings, as Core Tools would pass them (no storage: the answer to each call
    // is whatever the settings allow; what matters is that the handler serves the path).
    let mut settings: BTreeMap<String, String> = sample_values();
    settings.remove("AzureWebJobsStorage");
    let handler = common::Handler::start(&settings).await;
    let requests = host_requests();
    assert_eq!(requests.len(), 6, "{requests:?}");
    for (name, method, path) in requests {
        let url = format!("{}{path}", handler.base);
        let builder = match method.as_str() {
            "GET" => handler.client.get(&url),
            "POST" => handler.client.post(&url),
            other => panic!("{name}: method {other}"),
        };
        let body = if path.starts_with("/api/") {
            br#"{"appName":"APIKeyRotator_TestApp1_Sandbox"}"#.to_vec()
        } else {
            common::reference(
                "functions/invoke-request.timer.captured-host-4.24.4.4-ScheduleStatus-null.json",
            )
        };
        let r = builder
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            status != 404 && status != 405,
            "{name}: {method} {path} answered {status}: the handler does not serve it"
        );
        serde_json::from_str::<Value>(&text)
            .unwrap_or_else(|_| panic!("{name}: {method} {path} answered {status} {text}"));
    }
}

#[test]
fn funcignore_keeps_sources_out_and_the_app_in() {
    let lines: Vec<String> = read(".funcignore")
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let ignored = |path: &str| {
        lines.iter().any(|p| {
            let dir = p.trim_end_matches('/');
            path == dir
                || path.starts_with(&format!("{dir}/"))
                || (p.starts_with("*.") && path.ends_with(&p[1..]))
                || (p.ends_with('*') && path.starts_with(p.trim_end_matches('*')))
        })
    };
    for path in [
        "src/main.rs",
        "target/release/apikey-rotator",
        "tests/it/infra.rs",
        "local.settings.json",
        "Cargo.toml",
        "README.md",
    ] {
        assert!(ignored(path), ".funcignore must exclude {path}");
    }
    let mut kept = vec!["host.json".to_string(), executable_path()];
    kept.extend(
        function_folders()
            .into_iter()
            .map(|f| format!("{f}/function.json")),
    );
    for path in kept {
        assert!(!ignored(&path), ".funcignore must keep {path}");
    }
}

#[test]
fn local_settings_and_the_copied_executable_are_git_ignored() {
    let lines: Vec<String> = read(".gitignore")
        .lines()
        .map(|l| l.trim().into())
        .collect();
    for wanted in [
        "/local.settings.json".to_string(),
        format!("/{}", executable_path()),
    ] {
        assert!(lines.contains(&wanted), ".gitignore lacks {wanted}");
    }
    // And git agrees, where git and the repository's metadata are at hand.
    if Path::new(&root()).join(".git").exists() {
        for path in ["local.settings.json", "apikey-rotator"] {
            let git = std::process::Command::new("git")
                .args(["check-ignore", "--no-index", "-v", path])
                .current_dir(root())
                .output();
            if let Ok(out) = git {
                assert!(
                    out.status.success(),
                    "git check-ignore {path}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    // The sample stays tracked: it is not ignored by a broader pattern.
    assert!(!lines.iter().any(|l| l.contains("local.settings*")));
}

fn sample() -> Value {
    json("local.settings.sample.json")
}

fn sample_values() -> BTreeMap<String, String> {
    sample()["Values"]
        .as_object()
        .expect("Values object")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .unwrap_or_else(|| panic!("Values.{k} is not a string"))
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn local_settings_sample_is_core_tools_format_with_values_the_rotator_accepts() {
    let s = sample();
    let reference: Value =
        serde_json::from_slice(&common::reference("functions/local.settings.docs.json")).unwrap();
    // Core Tools' shape: IsEncrypted false, Values of strings (optionally Host and
    // ConnectionStrings, which the sample does not use).
    assert_eq!(s["IsEncrypted"], reference["IsEncrypted"]);
    for key in s.as_object().unwrap().keys() {
        assert!(
            ["IsEncrypted", "Values", "Host", "ConnectionStrings"].contains(&key.as_str()),
            "unknown top-level {key}"
        );
    }
    let values = sample_values();
    // Core Tools compares the worker runtime without regard to case ("Custom" in the docs).
    assert!(values["FUNCTIONS_WORKER_RUNTIME"].eq_ignore_ascii_case(
        reference["Values"]["FUNCTIONS_WORKER_RUNTIME"]
            .as_str()
            .unwrap()
    ));
    assert_eq!(values["AzureWebJobsStorage"], "UseDevelopmentStorage=true");
    // No prose placeholders: every value is a real one or empty (unset).
    for (k, v) in &values {
        assert!(!v.contains('<'), "Values.{k} is a placeholder: {v}");
    }
    // The rotator accepts every value present...
    let settings = apikey_rotator::settings::Settings::from_map(values.clone());
    assert!(settings.problems().is_empty(), "{:?}", settings.problems());
    // ...and the mapping is a valid one, named like the sample mapping's apps.
    let cloud = apikey_rotator::azure::cloud::Cloud::from_settings(&values).unwrap();
    let parts = vec![(
        "APIKEYROTATIONAPPS".to_string(),
        values["APIKEYROTATIONAPPS"].clone(),
    )];
    let mapping = apikey_rotator::mapping::parse(&parts, &cloud, &|_| true)
        .unwrap_or_else(|e| panic!("the sample's mapping: {e:?}"));
    let sample_mapping = read("examples/sampleAppsMapReq.json");
    for app in mapping.apim_app_names() {
        assert!(sample_mapping.contains(&app), "{app} is not a sample app");
    }
    // Every setting the sample lists is one the docs describe.
    let docs = read("docs/configuration.md");
    for k in values.keys() {
        assert!(
            docs.contains(&format!("`{k}`")),
            "docs/configuration.md lacks {k}"
        );
    }
}

#[test]
fn the_docs_give_the_build_step_and_the_generated_local_settings() {
    let docs = read("docs/sandbox.md");
    assert!(docs.contains("scripts/local-build.sh"), "the build step");
    assert!(docs.contains("func start"));
    assert!(
        docs.contains("--write-local-settings"),
        "how to get a working local.settings.json"
    );
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn the_readme_and_docs_are_short_enough_and_their_links_resolve() {
    let readme = read("README.md");
    // A newcomer reads it to the end: the two commands, then deployment well before line 250.
    assert!(
        readme.lines().count() <= 250,
        "README.md is {} lines",
        readme.lines().count()
    );
    assert!(readme.contains("```sh\ncargo run --release -- demo\ncargo test\n```"));
    let deploy = readme
        .lines()
        .position(|l| l.starts_with("## Deploy to Azure"))
        .expect("a deploy section");
    assert!(deploy < 80, "deployment starts at line {deploy}");
    for step in 1..=10 {
        assert!(readme.contains(&format!("**{step}. ")), "step {step}");
    }
    let mut files = vec!["README.md".to_string(), "infra/README.md".to_string()];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        // The pages, not the images they show (the README's dashboard screenshot).
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        let dir = Path::new(file).parent().unwrap();
        for part in text.split("](").skip(1) {
            let link = part.split(')').next().unwrap();
            if link.starts_with("http") || link.contains(' ') || link.is_empty() {
                continue;
            }
            let (path, fragment) = link.split_once('#').unwrap_or((link, ""));
            let target = if path.is_empty() {
                PathBuf::from(file)
            } else {
                dir.join(path)
            };
            let full = root().join(&target);
            assert!(
                full.exists(),
                "{file}: link {link}: {} is missing",
                target.display()
            );
            if !fragment.is_empty() {
                let there = std::fs::read_to_string(&full).unwrap();
                assert!(
                    anchors(&there).iter().any(|a| a == fragment),
                    "{file}: link {link}: no heading #{fragment} in {}",
                    target.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} links found");
    // The roles table is in one place only.
    let tables = files
        .iter()
        .filter(|f| read(f).contains("| target | role for the function app's identity |"))
        .count();
    assert_eq!(tables, 1, "one roles table");
    assert_eq!(
        anchor("The Microsoft.Web api-version"),
        "the-microsoftweb-api-version"
    );
}

//! The repository is self-contained: no code, test, benchmark or CI script reads a file outside
//! it (a fork's CI has nothing beside its clone). Fixtures live in `tests/fixtures/`.

use std::path::Path;

/// Files under `dir` (recursively) whose text names a path above the repository root.
fn offenders(dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            // The fixtures are the copies; fuzz/target and node_modules are build output.
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !matches!(
                name,
                "fixtures" | "target" | "node_modules" | "artifacts" | "corpus"
            ) {
                offenders(&path, found);
            }
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        // Built from pieces so this file does not name what it looks for.
        let needles = [
            format!("../{}", "shared"),
            format!("{}/reference", "shared"),
        ];
        for (n, line) in text.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle.as_str())) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
}

#[test]
fn nothing_reads_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for dir in [
        "src", "tests", "benches", "scripts", ".ci", "fuzz", "examples", "infra",
    ] {
        offenders(&root.join(dir), &mut found);
    }
    assert!(
        found.is_empty(),
        "these lines read outside the repository (copy the file into tests/fixtures/):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_fixture_the_tests_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = root.join("tests/fixtures/reference");
    for file in [
        "functions/invoke-request.timer.captured-host-4.24.4.4-ScheduleStatus-null.json",
        "azure/keyvault/Error_401_Challenge_recorded.json",
        "azure/appconfig/Error_429_TooManyRequests_docs.json",
        "azure/arm-web/Error_429_Throttled_observed.json",
        "apigee/apigee-x-v1.discovery-excerpt.methods.txt",
    ] {
        assert!(reference.join(file).is_file(), "missing fixture {file}");
    }
}

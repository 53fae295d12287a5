#!/usr/bin/env bash
# The one build step before `func start`: builds the release executable and copies it to
# ./apikey-rotator, where host.json's customHandler.description.defaultExecutablePath points
# (the same place it has at the root of the deployable zip). Git ignores the copy.
#
#   scripts/local-build.sh && func start
#
# Environment: CARGO_TARGET_DIR is respected (default ./target).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-$(pwd)/target}
cargo build --release --locked --bin apikey-rotator
exe=apikey-rotator
case "$(uname -s)" in MINGW*|MSYS*|CYGWIN*) exe=apikey-rotator.exe ;; esac
cp "$target_dir/release/$exe" "./$exe"
chmod 0755 "./$exe"
echo "./$exe is ready: func start" >&2

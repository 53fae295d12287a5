#!/usr/bin/env bash
# Builds the deployable zip of the custom handler: dist/apikey-rotator.zip.
#
#   scripts/package.sh            build (if needed) and package
#
# The executable is a stripped release build for x86_64 Linux linked against glibc 2.28 at most
# (the Azure Functions Linux images are Debian-based; 2.28 is Debian 10's glibc, so the binary
# runs on every image in service). `cargo zigbuild` pins the glibc version through zig's libc
# stubs and also provides the C compiler aws-lc-sys needs (`zig cc`). Both come from PyPI
# (`ziglang`, `cargo-zigbuild`) and are installed into a venv on first use.
#
# The zip holds, at its root (no wrapper folder, as `az functionapp deployment source
# config-zip` expects): host.json, <Function>/function.json for each function, and the
# executable `apikey-rotator` with mode 0755 recorded in the external attributes under a Unix
# "made-by" host, so the exec bit survives on Dedicated/Premium Linux plans.
#
# Environment:
#   CARGO_TARGET_DIR      respected (default: ./target)
#   PACKAGE_VENV          venv for ziglang/cargo-zigbuild (default: $HOME/.cache/apikey-rotator/venv-package)
#   PACKAGE_GLIBC         glibc version to link against (default: 2.28)
#   PACKAGE_OUT           output zip (default: dist/apikey-rotator.zip)
#   PACKAGE_REQUIREMENTS  pip requirements for the tools (default: pinned ziglang and cargo-zigbuild)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

target=x86_64-unknown-linux-gnu
glibc=${PACKAGE_GLIBC:-2.28}
venv=${PACKAGE_VENV:-$HOME/.cache/apikey-rotator/venv-package}
out=${PACKAGE_OUT:-dist/apikey-rotator.zip}
target_dir=${CARGO_TARGET_DIR:-$root/target}
functions=(ToolkitApp ApiKeyRotator RotatorTimer KeyStatus KeyRollback Dashboard)

log() { printf '== package: %s\n' "$*" >&2; }

# 1. Tools: python3 (for the venv and the zip), zig + cargo-zigbuild in the venv, the rust target.
command -v python3 >/dev/null 2>&1 || { echo "package: python3 is required" >&2; exit 2; }
# Pinned: zig's glibc stubs and cargo-zigbuild's flags are part of what makes the binary.
requirements=${PACKAGE_REQUIREMENTS:-"ziglang==0.17.1 cargo-zigbuild==0.24.0"}
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$requirements" ] \
  || ! "$venv/bin/python" -c 'import ziglang' >/dev/null 2>&1 || [ ! -x "$venv/bin/cargo-zigbuild" ]; then
  log "installing $requirements into $venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # one requirement per word
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $requirements
  echo "$requirements" >"$venv/.requirements"
fi
# cargo-zigbuild finds zig through `python -m ziglang` when `zig` is not on PATH; the venv's
# python must come first for that.
export PATH="$venv/bin:$PATH"

if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -x "$target" >/dev/null; then
    log "rustup target add $target"
    rustup target add "$target"
  fi
fi

# 2. The binary. profile.release has strip = true (tests/it/package.rs checks there is no symtab).
log "cargo zigbuild --release --target $target.$glibc"
export CARGO_TARGET_DIR="$target_dir"
cargo zigbuild --release --locked --no-default-features --bin apikey-rotator --target "$target.$glibc"
bin="$target_dir/$target/release/apikey-rotator"
[ -x "$bin" ] || { echo "package: no executable at $bin" >&2; exit 1; }

# 3. The zip, written with Python's zipfile so the made-by host and modes are exact.
mkdir -p "$(dirname "$out")"
files=(host.json)
for f in "${functions[@]}"; do files+=("$f/function.json"); done
log "writing $out"
python3 - "$out" "$bin" "${files[@]}" <<'PY'
import os, sys, time, zipfile

out, binary, *files = sys.argv[1:]
# Reproducible timestamps: SOURCE_DATE_EPOCH when set, else the commit-independent 1980 epoch.
epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
stamp = time.gmtime(max(epoch, 315532800))[:6]

def add(z, arcname, path, mode):
    info = zipfile.ZipInfo(arcname, date_time=stamp)
    info.create_system = 3                      # Unix "made-by", so external_attr is a st_mode
    info.external_attr = (0o100000 | mode) << 16  # regular file + permission bits
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(path, "rb") as f:
        z.writestr(info, f.read(), compresslevel=9)

tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w") as z:
    for f in files:
        add(z, f, f, 0o644)
    add(z, "apikey-rotator", binary, 0o755)
os.replace(tmp, out)
PY

size=$(wc -c <"$out")
log "done: $out ($size bytes)"
echo "$out"

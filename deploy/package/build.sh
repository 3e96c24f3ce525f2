#!/usr/bin/env bash
# Builds the installable packages: the release binary, its man pages and shell completions
# (generated from the CLI, so they never drift), then target/debian/*.deb (cargo-deb) and
# target/generate-rpm/*.rpm (cargo-generate-rpm), from [package.metadata.deb] and
# [package.metadata.generate-rpm] in Cargo.toml. Installs the two cargo tools when missing.
# Usage: bash deploy/package/build.sh   (prints the paths of both packages at the end)
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in cargo-deb cargo-generate-rpm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build.sh: installing $tool" >&2
    cargo install --locked "$tool"
  fi
done

cargo build --release --locked
# Packages of an earlier version must not be taken for this one's.
rm -rf target/debian target/generate-rpm
bin=target/release/citrix-harvester
out=target/package
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" man --out-dir "$out/man"
"$bin" completions bash >"$out/completions/citrix-harvester.bash"
"$bin" completions zsh >"$out/completions/_citrix-harvester"
"$bin" completions fish >"$out/completions/citrix-harvester.fish"

cargo deb --no-build --locked
cargo generate-rpm
ls -1 target/debian/*.deb target/generate-rpm/*.rpm

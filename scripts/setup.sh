#!/usr/bin/env bash
# Makes this machine ready to build and test leadscore: checks the Rust toolchain
# and installs the system packages the build needs when they are missing.
# Sourced by run.sh and test.sh; safe to run again.
set -euo pipefail

# System packages the build needs (Debian names): a C++ compiler for RocksDB,
# clang and libclang for its bindings (bindgen), OpenSSL headers and pkg-config
# for librdkafka's TLS.
PACKAGES=(g++ clang libclang-dev libssl-dev pkg-config)

say() { printf 'setup: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found: install the Rust toolchain (rustup) first"
  exit 1
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    say "the $component component is missing: rustup component add $component"
    exit 1
  fi
done
if ! command -v cc >/dev/null 2>&1; then
  PACKAGES+=(gcc)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
say "$(cargo --version), ready"

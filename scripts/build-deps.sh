#!/bin/sh
# Checks the Rust toolchain (cargo and rustc present, and at least the
# workspace's rust-version), and installs what building nk-runtime needs from
# Debian (a C linker and libc's static archive, libseccomp headers,
# pkg-config) and the busybox that the default bundle is made from
# (idempotent). A missing or too old toolchain is not installed for you: the
# message says exactly what to run.
set -eu
cd "$(dirname "$0")/.."

# The toolchain. Debian 12's own rustc is 1.63: far too old.
need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml)
CARGO=${CARGO:-cargo}
have=""
if command -v "$CARGO" >/dev/null 2>&1 && command -v rustc >/dev/null 2>&1; then
  have=$(rustc --version | sed -n 's/^rustc \([0-9][0-9.]*\).*/\1/p')
fi
# version_ge A B: A >= B, comparing major.minor.patch numerically.
version_ge() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -t. -k1,1n -k2,2n -k3,3n | head -n 1)" = "$2" ]
}
if [ -z "$have" ] || ! version_ge "$have" "$need"; then
  if [ -z "$have" ]; then
    echo "build-deps: no Rust toolchain (cargo and rustc) on the PATH; nano-sandbox needs Rust $need or newer." >&2
  else
    echo "build-deps: rustc $have ($(command -v rustc)) is older than the Rust $need nano-sandbox needs." >&2
  fi
  if [ -z "$have" ] && [ -x "$HOME/.cargo/bin/rustc" ]; then
    echo "Rust is installed in $HOME/.cargo/bin but that is not on the PATH: run  . \"\$HOME/.cargo/env\"  (or open a new login shell)." >&2
  elif command -v rustup >/dev/null 2>&1; then
    echo "Update it with:  rustup update stable && rustup default stable" >&2
  else
    echo "Install it with rustup (Debian's rustc 1.63 is too old), then open a new shell or source the env file:" >&2
    echo "  apt-get install -y curl ca-certificates" >&2
    echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile default" >&2
    echo "  . \"\$HOME/.cargo/env\"" >&2
  fi
  exit 1
fi

missing=""
for p in gcc libc6-dev libseccomp-dev pkg-config busybox-static python3 file; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -o DPkg::Lock::Timeout=600 $missing >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1
    apt-get install -y -o DPkg::Lock::Timeout=600 $missing >/dev/null
  }
fi

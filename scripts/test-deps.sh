#!/bin/sh
# Installs everything the test suite needs (idempotent): packages from
# Debian's archive, and the Mermaid renderer that tests/docs.rs runs on every
# diagram (npm packages pinned by tests/mermaid/package-lock.json, installed
# into build/mermaid; Debian's chromium draws them).
# The CRI test (tests/cri.rs) needs containerd (with its runc v2 shim and
# ctr), the CNI plugins, iptables (portmap), gcc and libc6-dev (static pause
# and probe programs) and protobuf-compiler (k8s-cri's build script runs
# protoc to generate the CRI client).
set -eu
cd "$(dirname "$0")/.."
pkgs="runc crun busybox-static python3 jq hyperfine time procps iproute2 file libseccomp-dev pkg-config tmux qemu-system-x86 linux-image-amd64 uidmap passwd util-linux umoci skopeo chromium containerd containernetworking-plugins iptables gcc libc6-dev protobuf-compiler"
missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
# Node.js and npm: Debian's (18) unless a newer node is already installed
# (NodeSource's bundles npm; Debian's npm package would conflict with it).
if ! command -v node >/dev/null 2>&1; then
  missing="$missing nodejs npm"
elif ! command -v npm >/dev/null 2>&1; then
  missing="$missing npm"
fi
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -o DPkg::Lock::Timeout=600 $missing >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1
    apt-get install -y -o DPkg::Lock::Timeout=600 $missing >/dev/null
  }
fi

# make test's lint step needs rustfmt and clippy next to cargo.
for c in fmt clippy; do
  if ! ${CARGO:-cargo} "$c" --version >/dev/null 2>&1; then
    echo "test-deps: cargo $c is missing; install it with:  rustup component add rustfmt clippy" >&2
    exit 1
  fi
done

# The Mermaid renderer, reinstalled only when the lock file changed. npm
# fetches from the registry by name and version and checks each package's
# integrity hash from the lock; --ignore-scripts: nothing runs at install
# (puppeteer-core downloads no browser, the test uses /usr/bin/chromium).
m=build/mermaid
if ! cmp -s tests/mermaid/package-lock.json "$m/package-lock.json" || [ ! -d "$m/node_modules/mermaid" ]; then
  tmp="$m.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp tests/mermaid/package.json tests/mermaid/package-lock.json "$tmp/"
  (cd "$tmp" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null) || {
    rm -rf "$tmp"
    echo "test-deps: npm ci of tests/mermaid/package.json failed (is https://registry.npmjs.org reachable?)" >&2
    exit 1
  }
  rm -rf "$m"
  mv "$tmp" "$m"
fi

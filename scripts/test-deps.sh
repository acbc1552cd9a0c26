#!/bin/sh
# Installs everything the test suite needs (idempotent): packages from
# Debian's archive, and the Mermaid renderer that tests/docs.rs runs on every
# diagram (npm packages pinned by tests/mermaid/package-lock.json, installed
# into build/mermaid; Debian's chromium draws them).
# Every package a test uses is listed here, even when another package
# happens to pull it in (tests/deps.rs checks each tool the tests run
# against this list: a tool from a package missing here fails it).
set -eu
cd "$(dirname "$0")/.."
# The reference runtimes the tests compare with; criu for checkpoint and
# restore (tests/checkpoint.rs on the host, tests/checkpoint_vm.rs in a guest).
pkgs="runc crun criu"
# The test rootfs and bundles (scripts/mk-rootfs.sh), JSON, timing.
pkgs="$pkgs busybox-static python3 jq hyperfine time file"
# Building the runtime and the engines' test image (its seccomp probe); the
# CRI test's static pause and probe programs (gcc, libc6-dev); k8s-cri's
# build script runs protoc to generate the CRI client.
pkgs="$pkgs libseccomp-dev pkg-config gcc libc6-dev protobuf-compiler"
# Host tools the tests run: ps and pgrep, ip, unshare/setpriv/runuser/
# losetup/mount (util-linux, mount), modprobe (kmod: the BFQ probe),
# useradd/usermod (passwd), newuidmap (uidmap), tmux; awk in the engine
# scripts (mawk: priority required, yet not Essential).
pkgs="$pkgs procps iproute2 util-linux mount kmod passwd uidmap tmux mawk"
# VM mode: QEMU and a Debian guest kernel with its modules.
pkgs="$pkgs qemu-system-x86 linux-image-amd64"
# Engines driven by tests/engines/*.sh, tests/vm_podman.rs and tests/cri.rs,
# and what their checks use: podman (conmon, buildah, catatonit for --init
# and pods, CNI plugins; netavark and aardvark-dns for the networks and
# their DNS in tests/vm_podman.rs), containerd (its runc v2 shim and ctr),
# docker (its iptables, which also sets up its embedded DNS in a
# container's namespace; the CRI test's portmap too), image tools.
pkgs="$pkgs podman conmon buildah catatonit containernetworking-plugins netavark aardvark-dns containerd docker.io iptables umoci skopeo"
# tests/docs.rs draws every Mermaid diagram in Debian's chromium, with the
# Mermaid bundle run by Node.js (npm installs it; see below).
pkgs="$pkgs chromium nodejs"
# `make test-under-load` keeps every core busy with it.
pkgs="$pkgs stress-ng"
missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
# npm: Debian's, unless the installed nodejs brings its own (NodeSource's
# package bundles npm, and Debian's npm package would conflict with it).
if ! command -v npm >/dev/null 2>&1; then
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

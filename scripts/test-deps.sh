#!/bin/sh
# Installs everything the test suite needs from Debian's archive (idempotent).
# Every package a test uses is listed here, even when another package
# happens to pull it in (tests/deps.rs checks each tool the tests run
# against this list: a tool from a package missing here fails it).
set -eu
# The reference runtimes the tests compare with.
pkgs="runc crun"
# The test rootfs and bundles (scripts/mk-rootfs.sh), JSON, timing.
pkgs="$pkgs busybox-static python3 jq hyperfine time file"
# Building the runtime and the engines' test image (its seccomp probe).
pkgs="$pkgs libseccomp-dev pkg-config gcc libc6-dev"
# Host tools the tests run: ps and pgrep, ip, unshare/setpriv/runuser/
# losetup/mount (util-linux, mount), modprobe (kmod: the BFQ probe),
# useradd/usermod (passwd), newuidmap (uidmap), tmux.
pkgs="$pkgs procps iproute2 util-linux mount kmod passwd uidmap tmux"
# VM mode: QEMU and a Debian guest kernel with its modules.
pkgs="$pkgs qemu-system-x86 linux-image-amd64"
# Engines driven by tests/engines/*.sh and tests/vm_podman.rs, and what
# their checks use: podman (conmon, buildah, catatonit for --init and pods,
# CNI plugins), containerd, docker (its iptables), image tools.
pkgs="$pkgs podman conmon buildah catatonit containernetworking-plugins containerd docker.io iptables umoci skopeo"
# `make test-under-load` keeps every core busy with it.
pkgs="$pkgs stress-ng"
missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -o DPkg::Lock::Timeout=600 $missing >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1
    apt-get install -y -o DPkg::Lock::Timeout=600 $missing >/dev/null
  }
fi

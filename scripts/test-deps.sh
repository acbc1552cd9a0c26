#!/bin/sh
# Installs everything the test suite needs from Debian's archive (idempotent).
set -eu
pkgs="runc crun busybox-static python3 jq hyperfine time procps iproute2 file libseccomp-dev pkg-config tmux qemu-system-x86 linux-image-amd64 uidmap passwd util-linux umoci skopeo"
# gcc and libc6-dev: tests/redteam_exec.rs builds its static racer.
pkgs="$pkgs gcc libc6-dev"
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

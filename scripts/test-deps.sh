#!/bin/sh
# Installs everything the test suite needs from Debian's archive (idempotent).
# The CRI test (tests/cri.rs) needs containerd (with its runc v2 shim and
# ctr), the CNI plugins, iptables (portmap), gcc and libc6-dev (static pause
# and probe programs) and protobuf-compiler (k8s-cri's build script runs
# protoc to generate the CRI client).
set -eu
pkgs="runc crun busybox-static python3 jq hyperfine time procps iproute2 file libseccomp-dev pkg-config tmux qemu-system-x86 linux-image-amd64 uidmap passwd util-linux umoci skopeo containerd containernetworking-plugins iptables gcc libc6-dev protobuf-compiler"
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

#!/bin/sh
# Installs what building nk-runtime needs (libseccomp headers, pkg-config) and
# the busybox that the default bundle is made from (idempotent).
set -eu
missing=""
for p in libseccomp-dev pkg-config busybox-static python3 file; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -o DPkg::Lock::Timeout=600 $missing >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1
    apt-get install -y -o DPkg::Lock::Timeout=600 $missing >/dev/null
  }
fi

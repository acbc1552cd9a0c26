#!/bin/sh
# bench/deps.sh - installs what bench/run.sh needs from Debian's archive
# (idempotent): the runtimes compared, hyperfine, GNU time for peak RSS, gcc
# and libseccomp for the floor programs (bench/floor/), python3 for the report.
set -eu
pkgs="runc crun hyperfine time gcc libc6-dev libseccomp-dev busybox-static python3 procps util-linux file"
missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -o DPkg::Lock::Timeout=600 $missing >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1
    apt-get install -y -o DPkg::Lock::Timeout=600 $missing >/dev/null
  }
fi

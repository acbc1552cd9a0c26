#!/bin/sh
# Builds the static binaries VM mode needs, with glibc linked statically
# (there is no musl target here) and libseccomp from libseccomp-dev's .a:
#   target/x86_64-unknown-linux-gnu/release/nk-agent    the guest's /init
#   target/x86_64-unknown-linux-gnu/release/nk-runtime  a static runtime the
#                                                      cgroup v2 VM test runs in the guest
# --target keeps build scripts and proc-macros dynamic (crt-static cannot build them).
set -eu
cd "$(dirname "$0")/.."
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu \
RUSTFLAGS="-C target-feature=+crt-static" \
  ${CARGO:-cargo} build --release --target x86_64-unknown-linux-gnu -p agent -p nk-runtime "$@"

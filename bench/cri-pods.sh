#!/bin/sh
# Usage: bench/cri-pods.sh [PODS] [HANDLERS]
# Pod start and teardown latency through containerd 1.6's CRI plugin, per
# RuntimeClass handler (default: 20 pods each for runc,nk,nk-vm), one pod at
# a time, as the kubelet's calls: start = RunPodSandbox until the container
# is running (CreateContainer, StartContainer, ContainerStatus), teardown =
# StopContainer (grace 0), RemoveContainer, StopPodSandbox, RemovePodSandbox.
# Prints p50, min and max per handler. One unmeasured pod goes first.
#
# It runs the ignored `pod_latency` test of tests/cri.rs, which starts the
# same private node as the CRI test (a network namespace, containerd, CNI,
# a local registry) and removes it at the end. Needs root, what
# scripts/test-deps.sh installs, `make build` and, for nk-vm, `make agent`.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
pods=${1:-20}
handlers=${2:-runc,nk,nk-vm}
rt=$(readlink -f "${NK_RUNTIME:-$here/target/x86_64-unknown-linux-gnu/release/nk-runtime}")
[ -x "$rt" ] || { echo "bench/cri-pods.sh: $rt is not built (make build)" >&2; exit 1; }
rootfs=${NK_TEST_ROOTFS:-$here/build/rootfs}
[ -x "$rootfs/bin/busybox" ] || "$here/scripts/mk-rootfs.sh" "$rootfs"
echo "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg); $pods pods per handler"
cd "$here"
NK_RUNTIME=$rt NK_TEST_ROOTFS=$rootfs NK_CRI_PODS=$pods NK_CRI_HANDLERS=$handlers \
  cargo test -q -p nk-tests --release --test cri -- --ignored --exact pod_latency --nocapture 2>&1 |
  grep -E '^cri latency|panicked|failed'
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

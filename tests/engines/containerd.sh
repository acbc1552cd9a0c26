#!/bin/bash
# tests/engines/containerd.sh RUNTIME: containerd + ctr driving RUNTIME
# through the runc v2 shim (`ctr run --runc-binary RUNTIME`, which sets the
# shim's BinaryName option).
#
# A private containerd runs for this test only (its own config, sockets,
# root and state; the CRI plugin off) and is stopped by its pid at the end.
# Last line: "N passed, M failed"; exit status 0 only when nothing failed.
. "$(dirname "$0")/lib.sh"
engine_init containerd "${1:-}"
need containerd
mk_image

SOCK=$W/ctrd.sock
cat >"$W/config.toml" <<EOF
version = 2
root = "$S/root"
state = "$W/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
EOF
NS=nk-$U
C=(ctr --address "$SOCK" --namespace "$NS")
CPID=""
cleanup() {
  local t c
  for t in $("${C[@]}" task ls -q 2>/dev/null); do "${C[@]}" task kill -a -s SIGKILL "$t" >/dev/null 2>&1; done
  for t in $("${C[@]}" task ls -q 2>/dev/null); do wait_status "$t" STOPPED >/dev/null; done
  for t in $("${C[@]}" task ls -q 2>/dev/null); do "${C[@]}" task delete -f "$t" >/dev/null 2>&1; done
  for c in $("${C[@]}" container ls -q 2>/dev/null); do "${C[@]}" container delete "$c" >/dev/null 2>&1; done
  "${C[@]}" image rm localhost/bb:latest >/dev/null 2>&1
  stop_pid "$CPID"
  stop_pid "${CRIPID:-}"
  cgroup_tidy "$NS"
  runtime_state_tidy
  remove_dirs "$W" "$S"
}
# The runc v2 shim runs the runtime with --root /run/containerd/runc/<namespace>
# (its default, outside containerd's state directory), and nothing removes
# that directory when the namespace's last task goes. The suite's own one
# goes here, after containerd is stopped: rmdir first, so state left in it
# fails a check, then the rest (its tasks are deleted, the daemon is gone).
runtime_state_tidy() {
  local d=/run/containerd/runc/$NS
  [ -n "${U:-}" ] && [ "$NS" = "nk-$U" ] && [ -d "$d" ] || return 0
  if rmdir "$d" 2>/dev/null; then
    ok "runtime state directory removed"
  else
    ko "runtime state directory removed" "not empty: $(ls -A "$d" | tr '\n' ' ')"
    rm -rf -- "$d"
  fi
}
trap cleanup EXIT
containerd --config "$W/config.toml" >"$W/containerd.log" 2>&1 &
CPID=$!
wait_for 10 "${C[@]}" version || die "containerd did not start: $(tail -3 "$W/containerd.log")"
"${C[@]}" image import "$W/image.tar" >/dev/null || die "ctr image import failed"
IMG=localhost/bb:latest

RUN=("${C[@]}" run --rm --runc-binary "$RT")
RUND=("${C[@]}" run -d --runc-binary "$RT")
# ctr's default spec has no /sys/fs/cgroup mount: add one to read limits back.
CG=(--mount type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:noexec:nodev)
status() { "${C[@]}" task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}'; }
task_pid() { "${C[@]}" task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $2}'; }
# wait_status ID STATUS: poll (60 s at most), then print the status.
wait_status() {
  local i
  for i in $(seq 600); do [ "$(status "$1")" = "$2" ] && break; sleep 0.1; done
  status "$1"
}
cid() { echo "nkc$1-$U"; }

check "run echo" 0 '^hi$' "${RUN[@]}" $IMG "$(cid 1)" echo hi
check "exit code 0" 0 '' "${RUN[@]}" $IMG "$(cid 2)" true
check "exit code 1" 1 '' "${RUN[@]}" $IMG "$(cid 3)" false
check "exit code 7" 7 '' "${RUN[@]}" $IMG "$(cid 4)" sh -c 'exit 7'
check "missing executable -> error" 1 'no such file|not found' "${RUN[@]}" $IMG "$(cid 5)" /no/such/binary
check "no task left after failed start" 1 '' sh -c "$(printf '%q ' "${C[@]}") task ls -q | grep -qx $(cid 5)"
"${C[@]}" container delete "$(cid 5)" >/dev/null 2>&1
check "env --env" 0 '^FOO=bar$' "${RUN[@]}" --env FOO=bar $IMG "$(cid 6)" sh -c 'echo FOO=$FOO'
check "workdir --cwd" 0 '^/tmp$' "${RUN[@]}" --cwd /tmp $IMG "$(cid 7)" pwd
check "read-only rootfs" 1 'Read-only file system' "${RUN[@]}" --read-only $IMG "$(cid 8)" touch /x
# (ctr run does not close the container's stdin at EOF: read one line.)
check "stdin" 0 '^got-piped-in$' bash -c "echo piped-in | $(printf '%q ' "${RUN[@]}") $IMG $(cid 9) sh -c 'read x; echo got-\$x'"
check "tty -t" 0 '/dev/pts/[0-9]' on_tty "${RUN[@]}" -t $IMG "$(cid 10)" tty
check "--memory-limit read back" 0 '^67108864$' "${RUN[@]}" "${CG[@]}" --memory-limit 67108864 $IMG "$(cid 11)" \
  sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'
check "--cpu-quota read back" 0 '^50000$' "${RUN[@]}" "${CG[@]}" --cpu-quota 50000 --cpu-period 100000 $IMG "$(cid 12)" \
  sh -c 'cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d" " -f1 /sys/fs/cgroup/cpu.max'
check "pid 1 is the command" 0 '^1$' "${RUN[@]}" $IMG "$(cid 13)" sh -c 'echo $$'
check "--no-pivot" 0 '^pivot-ok$' "${RUN[@]}" --no-pivot $IMG "$(cid 14)" echo pivot-ok
check "seccomp: default profile loaded" 0 '^Seccomp:[[:space:]]+2$' "${RUN[@]}" --seccomp $IMG "$(cid 15)" grep '^Seccomp:' /proc/self/status
check "seccomp: default profile denies personality" 1 'denied' "${RUN[@]}" --seccomp $IMG "$(cid 16)" seccomp-probe
check "seccomp: none without --seccomp" 0 'allowed' "${RUN[@]}" $IMG "$(cid 17)" seccomp-probe

d1=$(cid d1)
check "run -d" 0 '' "${RUND[@]}" --seccomp $IMG "$d1" sleep 1000
check "task RUNNING" 0 '^RUNNING$' wait_status "$d1" RUNNING
check "task exec output and exit code" 3 '^in-exec$' "${C[@]}" task exec --exec-id e1 "$d1" sh -c 'echo in-exec; exit 3'
check "task exec --user" 0 '^65534$' "${C[@]}" task exec --exec-id e2 --user 65534 "$d1" id -u
check "task exec --cwd" 0 '^/tmp$' "${C[@]}" task exec --exec-id e3 --cwd /tmp "$d1" pwd
check "task exec joins the pid namespace" 0 '^sleep 1000' "${C[@]}" task exec --exec-id e4 "$d1" sh -c "tr '\\0' ' ' </proc/1/cmdline"
check "task exec -t" 0 '/dev/pts/[0-9]' on_tty "${C[@]}" task exec -t --exec-id e5 "$d1" tty
check "task exec missing executable -> error" 1 'no such file|not found' "${C[@]}" task exec --exec-id e6 "$d1" /no/such/binary
check "task RUNNING after failed exec" 0 '^RUNNING$' status "$d1"
check "task exec under the seccomp profile" 1 'denied' "${C[@]}" task exec --exec-id e7 "$d1" seccomp-probe
check "task ps (runtime ps)" 0 '^[0-9]+' "${C[@]}" task ps "$d1"
check "task pause" 0 '' "${C[@]}" task pause "$d1"
check "task PAUSED" 0 '^PAUSED$' status "$d1"
check "task resume" 0 '' "${C[@]}" task resume "$d1"
check "task RUNNING after resume" 0 '^RUNNING$' status "$d1"
check "task kill SIGKILL" 0 '' "${C[@]}" task kill -s SIGKILL "$d1"
check "task STOPPED" 0 '^STOPPED$' wait_status "$d1" STOPPED
check "task delete reports 137" 0 '137' "${C[@]}" task delete "$d1"
check "container delete" 0 '' "${C[@]}" container delete "$d1"

d2=$(cid d2)
"${RUND[@]}" $IMG "$d2" sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done' >/dev/null 2>&1
wait_status "$d2" RUNNING >/dev/null
wait_for 60 trap_set "$(task_pid "$d2")" 15
check "task kill SIGTERM to a trap" 0 '' "${C[@]}" task kill -s SIGTERM "$d2"
check "task STOPPED after SIGTERM" 0 '^STOPPED$' wait_status "$d2" STOPPED
check "task delete reports 42" 0 '42' "${C[@]}" task delete "$d2"
"${C[@]}" container delete "$d2" >/dev/null 2>&1

d3=$(cid d3)
"${RUND[@]}" $IMG "$d3" sh -c 'sleep 1000 & sleep 1000 & wait' >/dev/null 2>&1
wait_status "$d3" RUNNING >/dev/null
check "task ps lists every process" 0 '' sh -c "[ \$($(printf '%q ' "${C[@]}") task ps $d3 | tail -n +2 | wc -l) -eq 3 ]"
check "task kill --all" 0 '' "${C[@]}" task kill -a -s SIGKILL "$d3"
check "task STOPPED after kill --all" 0 '^STOPPED$' wait_status "$d3" STOPPED
check "task delete after kill --all" 0 '' "${C[@]}" task delete "$d3"
"${C[@]}" container delete "$d3" >/dev/null 2>&1


# --- wider checks: what ctr users commonly ask of a runtime ---
host_ns() { readlink "/proc/self/ns/$1" | sed 's/[][]/\\&/g'; }
check "--cap-add SYS_ADMIN" 0 'yes' "${RUN[@]}" --cap-add CAP_SYS_ADMIN $IMG "$(cid 20)" sh -c 'c=$(grep ^CapEff: /proc/self/status | cut -f2); [ $(( 0x$c >> 21 & 1 )) = 1 ] && echo yes'
check "--cap-drop CAP_CHOWN" 1 '' "${RUN[@]}" --cap-drop CAP_CHOWN $IMG "$(cid 21)" chown 65534 /tmp
check "--privileged: every capability" 0 '^CapEff:[[:space:]]+000001ff' "${RUN[@]}" --privileged $IMG "$(cid 22)" grep '^CapEff:' /proc/self/status
check "--privileged: host devices" 0 '^ok$' "${RUN[@]}" --privileged $IMG "$(cid 23)" sh -c '[ -b /dev/loop0 ] && [ -c /dev/kmsg ] && echo ok'
check "no-new-privileges by default" 0 '^NoNewPrivs:[[:space:]]+1$' "${RUN[@]}" $IMG "$(cid 24)" grep '^NoNewPrivs:' /proc/self/status
check "--allow-new-privs" 0 '^NoNewPrivs:[[:space:]]+0$' "${RUN[@]}" --allow-new-privs $IMG "$(cid 25)" grep '^NoNewPrivs:' /proc/self/status
cat >"$W/seccomp.json" <<'EOF'
{"defaultAction": "SCMP_ACT_ALLOW",
 "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO"}]}
EOF
check "seccomp: custom JSON profile" 1 'denied' "${RUN[@]}" --seccomp --seccomp-profile "$W/seccomp.json" $IMG "$(cid 26)" seccomp-probe
mkdir -p "$W/vol" && echo from-host >"$W/vol/f"
check "bind mount read" 0 '^from-host$' "${RUN[@]}" --mount "type=bind,src=$W/vol,dst=/x,options=rbind:rw" $IMG "$(cid 27)" cat /x/f
check "bind mount ro" 1 'Read-only file system' "${RUN[@]}" --mount "type=bind,src=$W/vol,dst=/x,options=rbind:ro" $IMG "$(cid 28)" touch /x/h
check "--net-host" 0 "^$(host_ns net)\$" "${RUN[@]}" --net-host $IMG "$(cid 29)" readlink /proc/self/ns/net
check "--cpus read back" 0 '^50000$' "${RUN[@]}" "${CG[@]}" --cpus 0.5 $IMG "$(cid 30)" cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us
check "--uidmap user namespace" 0 '^ +0 +100000 +65536$' "${RUN[@]}" --uidmap 0:100000:65536 --gidmap 0:100000:65536 $IMG "$(cid 31)" cat /proc/self/uid_map
check "--rootfs DIR" 0 '^hi$' "${RUN[@]}" --rootfs "$W/rootfs" "$(cid 32)" /bin/echo hi
check "1 MiB of stdout intact" 0 "^$(yes nk | head -c 1048576 | md5sum | cut -d' ' -f1) " bash -c "$(printf '%q ' "${RUN[@]}") $IMG $(cid 33) sh -c 'yes nk | head -c 1048576' | md5sum"
rroot=/run/containerd/runc/$NS
check "run --rm leaves no runtime state" 0 '^empty$' sh -c "[ -d $rroot ] && [ -z \"\$(ls -A $rroot)\" ] && echo empty"

d4=$(cid d4) d5=$(cid d5)
"${RUND[@]}" "${CG[@]}" $IMG "$d4" sh -c 'trap "exit 10" USR1; while :; do sleep 0.1; done' >/dev/null 2>&1
wait_status "$d4" RUNNING >/dev/null
check "task metrics" 0 'memory' "${C[@]}" task metrics "$d4"
check "--with-ns pid joins another task" 0 'sleep 0.1|while' sh -c "$(printf '%q ' "${RUN[@]}") --with-ns pid:/proc/\$($(printf '%q ' "${C[@]}") task ls | awk -v id=$d4 '\$1 == id {print \$2}')/ns/pid $IMG $d5 ps"
# (CRIU cannot dump here, with runc either: a failed checkpoint must leave the task running.)
check "task checkpoint fails cleanly" 1 'criu|checkpoint' "${C[@]}" task checkpoint "$d4"
check "task RUNNING after failed checkpoint" 0 '^RUNNING$' status "$d4"
check "task kill SIGUSR1 to a trap" 0 '' "${C[@]}" task kill -s SIGUSR1 "$d4"
check "task STOPPED after SIGUSR1" 0 '^STOPPED$' wait_status "$d4" STOPPED
check "task delete reports 10" 0 '10' "${C[@]}" task delete "$d4"
"${C[@]}" container delete "$d4" >/dev/null 2>&1

# The CRI configuration docs/engines.md gives for Kubernetes (a RuntimeClass
# handler "nk" = a runc-v2 runtime whose BinaryName is the runtime): the CRI
# plugin must load it. (No kubelet here: loading is what can be checked.)
mkdir -p "$W/cri"
cat >"$W/cri/config.toml" <<EOF
version = 2
root = "$S/cri-root"
state = "$W/cri/state"
[grpc]
  address = "$W/cri/c.sock"
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nk]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nk.options]
      BinaryName = "$RT"
EOF
containerd --config "$W/cri/config.toml" >"$W/cri/log" 2>&1 &
CRIPID=$!
cri_loaded() {
  wait_for 10 ctr --address "$W/cri/c.sock" version &&
    ctr --address "$W/cri/c.sock" plugins ls | awk '$2 == "cri" {print $4}'
}
check "CRI plugin loads the RuntimeClass handler config" 0 '^ok$' cri_loaded
stop_pid "$CRIPID"

finish

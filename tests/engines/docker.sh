#!/bin/bash
# tests/engines/docker.sh RUNTIME: Docker (dockerd and its own containerd)
# driving RUNTIME, registered as runtime "nk" (--add-runtime) and used with
# `docker run --runtime nk`; the daemon.json form of docs/engines.md registers
# it once more, as "nkjson", for one check.
#
# A private dockerd runs for this test only: its own socket, --data-root,
# --exec-root and --pidfile, no iptables and no default bridge, and its own
# daemon.json so the host's is not read. It is stopped by its pid at the end.
# Docker adds its libnetwork-setkey prestart hook to every container with a
# new network namespace (--network none included), so hooks are exercised.
# Last line: "N passed, M failed"; exit status 0 only when nothing failed.
. "$(dirname "$0")/lib.sh"
engine_init docker "${1:-}"
need docker.io
mk_image

printf '{"runtimes": {"nkjson": {"path": "%s"}}}\n' "$RT" >"$W/daemon.json"
DSOCK=$W/d.sock
DPID=""
D=(/usr/bin/docker -H "unix://$DSOCK")
cleanup() {
  "${D[@]}" rm -f $("${D[@]}" ps -aq 2>/dev/null) >/dev/null 2>&1
  stop_pid "$DPID"
  remove_dirs "$W" "$S"
}
trap cleanup EXIT
/usr/sbin/dockerd --data-root "$S/docker" --exec-root "$W/x" --pidfile "$W/dockerd.pid" \
  -H "unix://$DSOCK" --config-file "$W/daemon.json" --iptables=false --bridge=none \
  --add-runtime "nk=$RT" >"$W/dockerd.log" 2>&1 &
DPID=$!
wait_for 30 "${D[@]}" version || die "dockerd did not start: $(tail -3 "$W/dockerd.log")"
"${D[@]}" load -q -i "$W/image.tar" >/dev/null || die "docker load failed"
IMG=localhost/bb:latest
RUN=("${D[@]}" run --rm --network none --runtime nk)
c1=nkd1-$U c2=nkd2-$U c3=nkd3-$U c4=nkd4-$U
inspect() { "${D[@]}" inspect -f "$2" "$1"; }
mem_limit='cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'

check "run echo" 0 '^hi$' "${RUN[@]}" $IMG echo hi
check "runtime from daemon.json runtimes" 0 '^hi$' "${D[@]}" run --rm --network none --runtime nkjson $IMG echo hi
check "exit code 0" 0 '' "${RUN[@]}" $IMG true
check "exit code 1" 1 '' "${RUN[@]}" $IMG false
check "exit code 7" 7 '' "${RUN[@]}" $IMG sh -c 'exit 7'
check "missing executable -> 127" 127 '' "${RUN[@]}" $IMG /no/such/binary
check "env -e" 0 '^FOO=bar$' "${RUN[@]}" -e FOO=bar $IMG sh -c 'echo FOO=$FOO'
check "user --user 65534:65534" 0 '^65534 65534$' "${RUN[@]}" --user 65534:65534 $IMG sh -c 'echo $(id -u) $(id -g)'
check "hostname" 0 '^nkhost$' "${RUN[@]}" --hostname nkhost $IMG hostname
check "workdir -w" 0 '^/tmp$' "${RUN[@]}" -w /tmp $IMG pwd
check "read-only rootfs" 1 'Read-only file system' "${RUN[@]}" --read-only $IMG touch /x
check "read-only rootfs with --tmpfs /tmp" 0 '' "${RUN[@]}" --read-only --tmpfs /tmp $IMG touch /tmp/x
check "stdin -i" 0 '^piped-in$' bash -c "echo piped-in | $(printf '%q ' "${RUN[@]}") -i $IMG cat"
check "tty -t" 0 '/dev/pts/[0-9]' on_tty "${RUN[@]}" -t $IMG tty
check "--memory read back" 0 '^67108864$' "${RUN[@]}" --memory 64m $IMG sh -c "$mem_limit"
check "--pids-limit read back" 0 '^50$' "${RUN[@]}" --pids-limit 50 $IMG sh -c \
  'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max'
check "seccomp: default profile loaded" 0 '^Seccomp:[[:space:]]+2$' "${RUN[@]}" $IMG grep '^Seccomp:' /proc/self/status
check "seccomp: default profile denies personality" 1 'denied' "${RUN[@]}" $IMG seccomp-probe
check "seccomp: default profile denies unshare without CAP_SYS_ADMIN" 1 '' "${RUN[@]}" $IMG unshare -U true
check "seccomp: unconfined allows personality" 0 'allowed' "${RUN[@]}" --security-opt seccomp=unconfined $IMG seccomp-probe

check "run -d" 0 '^[0-9a-f]{64}$' "${D[@]}" run -d --name "$c1" --network none --runtime nk $IMG sleep 1000
check "running after run -d" 0 '^running$' inspect "$c1" '{{.State.Status}}'
check "exec output and exit code" 3 '^in-exec$' "${D[@]}" exec "$c1" sh -c 'echo in-exec; exit 3'
check "exec -e" 0 '^X=y$' "${D[@]}" exec -e X=y "$c1" sh -c 'echo X=$X'
check "exec --user" 0 '^65534$' "${D[@]}" exec --user 65534 "$c1" id -u
check "exec -w" 0 '^/tmp$' "${D[@]}" exec -w /tmp "$c1" pwd
check "exec joins the pid namespace" 0 '^sleep 1000' "${D[@]}" exec "$c1" sh -c "tr '\\0' ' ' </proc/1/cmdline"
check "exec -t" 0 '/dev/pts/[0-9]' on_tty "${D[@]}" exec -t "$c1" tty
check "exec -i stdin" 0 '^exec-in$' bash -c "echo exec-in | $(printf '%q ' "${D[@]}") exec -i $c1 cat"
check "exec missing executable -> 126" 126 'executable file not found|no such file' "${D[@]}" exec "$c1" /no/such/binary
check "still running after failed exec" 0 '^running$' inspect "$c1" '{{.State.Status}}'
check "exec under the seccomp profile" 1 'denied' "${D[@]}" exec "$c1" seccomp-probe
check "top (runtime ps)" 0 'sleep 1000' "${D[@]}" top "$c1"
check "pause" 0 '' "${D[@]}" pause "$c1"
check "state paused" 0 '^paused$' inspect "$c1" '{{.State.Status}}'
check "unpause" 0 '' "${D[@]}" unpause "$c1"
check "state running after unpause" 0 '^running$' inspect "$c1" '{{.State.Status}}'
check "update --memory" 0 '' "${D[@]}" update --memory 128m --memory-swap -1 "$c1"
check "updated memory read back" 0 '^134217728$' "${D[@]}" exec "$c1" sh -c "$mem_limit"
check "update --pids-limit" 0 '' "${D[@]}" update --pids-limit 77 "$c1"
check "updated pids limit read back" 0 '^77$' "${D[@]}" exec "$c1" sh -c \
  'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max'
check "stop: SIGKILL after timeout" 0 "$c1" "${D[@]}" stop -t 1 "$c1"
check "exit code 137 after SIGKILL" 0 '^137$' inspect "$c1" '{{.State.ExitCode}}'
check "rm" 0 "$c1" "${D[@]}" rm "$c1"
check "gone after rm" 1 '' "${D[@]}" inspect "$c1"

"${D[@]}" run -d --name "$c2" --network none --runtime nk $IMG sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done' >/dev/null 2>&1
sleep 0.5
check "stop: SIGTERM to a trap" 0 "$c2" "${D[@]}" stop -t 10 "$c2"
check "exit code 42 from the trap" 0 '^42$' inspect "$c2" '{{.State.ExitCode}}'
"${D[@]}" rm -f "$c2" >/dev/null 2>&1

"${D[@]}" run -d --name "$c3" --network none --runtime nk -t $IMG sh >/dev/null 2>&1
check "run -d -t then exec" 0 '^ok$' "${D[@]}" exec "$c3" echo ok
check "kill" 0 "$c3" "${D[@]}" kill "$c3"
check "exit code 137 after kill" 0 '^137$' inspect "$c3" '{{.State.ExitCode}}'
"${D[@]}" rm -f "$c3" >/dev/null 2>&1

"${D[@]}" run -d --name "$c4" --network none --runtime nk $IMG sleep 1000 >/dev/null 2>&1
check "restart" 0 "$c4" "${D[@]}" restart -t 1 "$c4"
check "running after restart" 0 '^running$' inspect "$c4" '{{.State.Status}}'
check "exec after restart" 0 '^ok$' "${D[@]}" exec "$c4" echo ok
"${D[@]}" rm -f "$c4" >/dev/null 2>&1

finish

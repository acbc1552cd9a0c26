#!/bin/bash
# tests/engines/docker.sh RUNTIME: Docker (dockerd and its own containerd)
# driving RUNTIME, registered as runtime "nk" (--add-runtime), made the
# default (--default-runtime, for `docker build`) and used with
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
  cgroup_tidy docker
  remove_dirs "$W" "$S"
}
trap cleanup EXIT
/usr/sbin/dockerd --data-root "$S/docker" --exec-root "$W/x" --pidfile "$W/dockerd.pid" \
  -H "unix://$DSOCK" --config-file "$W/daemon.json" --iptables=false --bridge=none \
  --add-runtime "nk=$RT" --default-runtime nk >"$W/dockerd.log" 2>&1 &
DPID=$!
wait_for 30 "${D[@]}" version || die "dockerd did not start: $(tail -3 "$W/dockerd.log")"
"${D[@]}" load -q -i "$W/image.tar" >/dev/null || die "docker load failed"
IMG=localhost/bb:latest
RUN=("${D[@]}" run --rm --network none --runtime nk)
c1=nkd1-$U c2=nkd2-$U c3=nkd3-$U c4=nkd4-$U
inspect() { "${D[@]}" inspect -f "$2" "$1"; }
# A block device of this host for the blkio throttle checks.
blkdev=/dev/$(lsblk -dno NAME,TYPE | awk '$2 == "disk" {print $1; exit}')
mem_limit='cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'

check "run echo" 0 '^hi$' "${RUN[@]}" $IMG echo hi
check "runtime from daemon.json runtimes" 0 '^hi$' "${D[@]}" run --rm --network none --runtime nkjson $IMG echo hi
check "exit code 0" 0 '' "${RUN[@]}" $IMG true
check "exit code 1" 1 '' "${RUN[@]}" $IMG false
check "exit code 7" 7 '' "${RUN[@]}" $IMG sh -c 'exit 7'
check "missing executable -> 127" 127 '' "${RUN[@]}" $IMG /no/such/binary
check "a directory as the command -> 126" 126 'permission denied' "${RUN[@]}" $IMG /tmp
check "command only non-executable in PATH -> 127" 127 'not found' "${RUN[@]}" -e PATH=/etc $IMG passwd
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
check "exec -w a missing directory fails" 126 '' "${D[@]}" exec -w /no/such/dir "$c1" pwd
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
check "update lowering --memory and --memory-swap together" 0 '^33554432 67108864$' sh -c "$(printf '%q ' "${D[@]}") update --memory 32m --memory-swap 64m $c1 >/dev/null && echo \$($(printf '%q ' "${D[@]}") exec $c1 cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes)"
check "update while paused" 0 '^700$' sh -c "$(printf '%q ' "${D[@]}") pause $c1 >/dev/null && $(printf '%q ' "${D[@]}") update --cpu-shares 700 $c1 >/dev/null && $(printf '%q ' "${D[@]}") unpause $c1 >/dev/null && $(printf '%q ' "${D[@]}") exec $c1 cat /sys/fs/cgroup/cpu/cpu.shares"
check "update --pids-limit -1 (unlimited)" 0 '^max$' sh -c "$(printf '%q ' "${D[@]}") update --pids-limit -1 $c1 >/dev/null && $(printf '%q ' "${D[@]}") exec $c1 cat /sys/fs/cgroup/pids/pids.max"
check "stop: SIGKILL after timeout" 0 "$c1" "${D[@]}" stop -t 1 "$c1"
check "exit code 137 after SIGKILL" 0 '^137$' inspect "$c1" '{{.State.ExitCode}}'
check "rm" 0 "$c1" "${D[@]}" rm "$c1"
check "gone after rm" 1 '' "${D[@]}" inspect "$c1"

"${D[@]}" run -d --name "$c2" --network none --runtime nk $IMG sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done' >/dev/null 2>&1
wait_for 60 trap_set "$(inspect "$c2" '{{.State.Pid}}')" 15
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


# --- wider checks: what Docker users commonly ask of a runtime ---
# (No --privileged: Docker asks for every capability the kernel knows, and
# this host's own bounding set lacks CAP_SYS_RESOURCE, so runc fails too.)
host_ns() { readlink "/proc/self/ns/$1" | sed 's/[][]/\\&/g'; }
check "--cap-drop all --cap-add" 0 '^CapEff:[[:space:]]+0000000000000400$' "${RUN[@]}" --cap-drop all --cap-add NET_BIND_SERVICE $IMG grep '^CapEff:' /proc/self/status
check "--cap-add SYS_ADMIN" 0 'yes' "${RUN[@]}" --cap-add SYS_ADMIN $IMG sh -c 'c=$(grep ^CapEff: /proc/self/status | cut -f2); [ $(( 0x$c >> 21 & 1 )) = 1 ] && echo yes'
check "--cap-drop CHOWN" 1 '' "${RUN[@]}" --cap-drop CHOWN $IMG chown 65534 /tmp
check "--security-opt no-new-privileges" 0 '^NoNewPrivs:[[:space:]]+1$' "${RUN[@]}" --security-opt no-new-privileges $IMG grep '^NoNewPrivs:' /proc/self/status
cat >"$W/seccomp.json" <<'EOF'
{"defaultAction": "SCMP_ACT_ALLOW",
 "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO"}]}
EOF
check "seccomp: custom JSON profile" 1 'denied' "${RUN[@]}" --security-opt seccomp="$W/seccomp.json" $IMG seccomp-probe
check "--ulimit nofile" 0 '^1024 2048$' "${RUN[@]}" --ulimit nofile=1024:2048 $IMG sh -c 'echo $(ulimit -n) $(ulimit -Hn)'
check "--sysctl in own netns" 0 '^1$' "${RUN[@]}" --sysctl net.ipv4.ip_forward=1 $IMG cat /proc/sys/net/ipv4/ip_forward
check "--shm-size" 0 '^32768$' "${RUN[@]}" --shm-size 32m $IMG sh -c "df -k /dev/shm | awk 'NR==2{print \$2}'"
check "--tmpfs with size" 0 '^1024$' "${RUN[@]}" --tmpfs /x:size=1m $IMG sh -c "df -k /x | awk 'NR==2{print \$2}'"
check "--tmpfs on a new directory keeps its mode=" 0 '^1770$' "${RUN[@]}" --mount type=tmpfs,dst=/t,tmpfs-mode=1770 $IMG stat -c %a /t
check "--tmpfs over a directory takes its mode" 0 '^1777$' "${RUN[@]}" --tmpfs /var/tmp:mode=0700 $IMG stat -c %a /var/tmp
check "--tmpfs :ro" 1 'Read-only file system' "${RUN[@]}" --tmpfs /var/tmp:ro $IMG touch /var/tmp/x
mkdir -p "$W/vol" && echo from-host >"$W/vol/f"
check "-v bind volume read" 0 '^from-host$' "${RUN[@]}" -v "$W/vol:/x" $IMG cat /x/f
check "-v bind volume write seen on host" 0 '^from-ctr$' sh -c "$(printf '%q ' "${RUN[@]}") -v $W/vol:/x $IMG sh -c 'echo from-ctr >/x/g' && cat $W/vol/g"
check "-v :ro bind volume" 1 'Read-only file system' "${RUN[@]}" -v "$W/vol:/x:ro" $IMG touch /x/h
check "--device renamed" 0 '^ok$' "${RUN[@]}" --device /dev/null:/dev/xnull $IMG sh -c '[ -c /dev/xnull ] && echo x >/dev/xnull && echo ok'
check "--device-write-bps read back" 0 '^[0-9]+:[0-9]+ 2097152$' "${RUN[@]}" --device-write-bps "$blkdev:2mb" $IMG cat /sys/fs/cgroup/blkio/blkio.throttle.write_bps_device
check "--device in the devices cgroup" 0 '^c 1:11 rwm$' "${RUN[@]}" --device /dev/kmsg $IMG cat /sys/fs/cgroup/devices/devices.list
check "--cpus read back" 0 '^50000$' "${RUN[@]}" --cpus 0.5 $IMG cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us
check "--cpuset-cpus read back" 0 '^0$' "${RUN[@]}" --cpuset-cpus 0 $IMG cat /sys/fs/cgroup/cpuset/cpuset.cpus
check "--memory-swap read back" 0 '^134217728$' "${RUN[@]}" --memory 64m --memory-swap 128m $IMG cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes
check "--oom-kill-disable read back" 0 '^oom_kill_disable 1$' "${RUN[@]}" --memory 64m --oom-kill-disable $IMG cat /sys/fs/cgroup/memory/memory.oom_control
check "--init: pid 1 is the init" 0 'docker-init' "${RUN[@]}" --init $IMG sh -c "tr '\\0' ' ' </proc/1/cmdline"
check "--pid=host" 0 "^$(host_ns pid)\$" "${RUN[@]}" --pid=host $IMG readlink /proc/self/ns/pid
check "--ipc=host" 0 "^$(host_ns ipc)\$" "${RUN[@]}" --ipc=host $IMG readlink /proc/self/ns/ipc
check "--uts=host" 0 "^$(hostname)\$" "${RUN[@]}" --uts=host $IMG hostname
check "--network=host" 0 "^$(host_ns net)\$" "${D[@]}" run --rm --network host --runtime nk $IMG readlink /proc/self/ns/net
check "killed by a signal -> 137" 137 '' "${RUN[@]}" --pid=host $IMG sh -c 'kill -9 $$'
check "1 MiB of stdin intact" 0 "^$(yes nk | head -c 1048576 | md5sum | cut -d' ' -f1) " bash -c "yes nk | head -c 1048576 | $(printf '%q ' "${RUN[@]}") -i $IMG md5sum"
check "1 MiB of stdout intact" 0 "^$(yes nk | head -c 1048576 | md5sum | cut -d' ' -f1) " bash -c "$(printf '%q ' "${RUN[@]}") $IMG sh -c 'yes nk | head -c 1048576' | md5sum"
check "run --rm leaves no runtime state" 0 '^empty$' sh -c "[ -d $W/x/runtime-runc/moby ] && [ -z \"\$(ls -A $W/x/runtime-runc/moby)\" ] && echo empty"

c5=nkd5-$U c6=nkd6-$U
"${D[@]}" run -d --name "$c5" --network none --ipc shareable --runtime nk $IMG sh -c 'echo logged; trap "exit 10" USR1; while :; do sleep 0.1; done' >/dev/null 2>&1
wait_for 60 trap_set "$(inspect "$c5" '{{.State.Pid}}')" 10
check "logs" 0 '^logged$' "${D[@]}" logs "$c5"
check "stats --no-stream" 0 "$c5" "${D[@]}" stats --no-stream --format '{{.Name}} {{.MemUsage}}' "$c5"
check "exec -w -e -u together" 0 '^/tmp 1 65534$' "${D[@]}" exec -w /tmp -e X=1 -u 65534 "$c5" sh -c 'echo $(pwd) $X $(id -u)'
echo copied >"$W/cpfile"
check "cp into a running container" 0 '^copied$' sh -c "$(printf '%q ' "${D[@]}") cp $W/cpfile $c5:/tmp/cpfile && $(printf '%q ' "${D[@]}") exec $c5 cat /tmp/cpfile"
"${D[@]}" run -d --name "$c6" --network none --runtime nk --pid container:"$c5" --ipc container:"$c5" $IMG sleep 1000 >/dev/null 2>&1
check "--pid container:X shares the pid namespace" 0 'sleep 0.1|while' "${D[@]}" exec "$c6" ps
check "--ipc container:X shares the ipc namespace" 0 '^same$' sh -c "[ \"\$($(printf '%q ' "${D[@]}") exec $c5 readlink /proc/self/ns/ipc)\" = \"\$($(printf '%q ' "${D[@]}") exec $c6 readlink /proc/self/ns/ipc)\" ] && echo same"
"${D[@]}" rm -f "$c6" >/dev/null 2>&1
check "--network container:X shares the network namespace" 0 '^same$' sh -c "[ \"\$($(printf '%q ' "${D[@]}") exec $c5 readlink /proc/self/ns/net)\" = \"\$($(printf '%q ' "${D[@]}") run --rm --runtime nk --network container:$c5 $IMG readlink /proc/self/ns/net)\" ] && echo same"
check "kill -s USR1 to a trap" 0 "$c5" "${D[@]}" kill -s USR1 "$c5"
check "wait returns the exit code" 0 '^10$' "${D[@]}" wait "$c5"
"${D[@]}" rm -f "$c5" >/dev/null 2>&1


# docker build (the classic builder): each RUN step is a container of the
# default runtime.
mkdir -p "$W/ctx"
printf 'FROM %s\nRUN echo built >/built\nUSER 65534\nRUN id -u >/tmp/u\n' "$IMG" >"$W/ctx/Dockerfile"
check "build (classic builder) with RUN steps" 0 '' env DOCKER_BUILDKIT=0 "${D[@]}" build -q -t "localhost/nkbuilt-$U" "$W/ctx"
check "the built image holds the RUN steps' output" 0 '^built 65534$' sh -c "echo \$($(printf '%q ' "${RUN[@]}") localhost/nkbuilt-$U cat /built /tmp/u)"
finish

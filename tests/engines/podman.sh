#!/bin/bash
# tests/engines/podman.sh RUNTIME: Podman (with conmon) driving RUNTIME.
#
# Podman needs no daemon. Everything it keeps lives in this run's own
# directories (--root, --runroot, --tmpdir, CONTAINERS_CONF); the runtime
# gets its default state root, as Podman passes no --root.
# Last line: "N passed, M failed"; exit status 0 only when nothing failed.
. "$(dirname "$0")/lib.sh"
engine_init podman "${1:-}"
need podman conmon buildah
mk_image

# No systemd here: cgroupfs and a file event log. Podman gives --log and
# --log-format=json only to runtimes whose basename is in
# runtime_supports_json; the runtime under test is added by name. The
# default ulimits are lowered to what this host's hard limits allow.
# (Podman runs conmon and the runtime with an nproc limit below the host's,
# so a value above 32768 can fail to apply.)
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
cat >"$W/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$W/events.log"
runtime = "$RTNAME"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "youki", "krun", "$RTNAME"]
[engine.runtimes]
$RTNAME = ["$RT"]
EOF
export CONTAINERS_CONF=$W/containers.conf
P0=(podman --root "$S/storage" --runroot "$W/runroot" --tmpdir "$W/tmp")
P=("${P0[@]}" --runtime "$RT")

cleanup() {
  "${P[@]}" pod rm -a -f -t 0 >/dev/null 2>&1
  "${P[@]}" rm -a -f -t 0 >/dev/null 2>&1
  cgroup_tidy libpod_parent
  remove_dirs "$W" "$S"
}
trap cleanup EXIT
"${P[@]}" load -q -i "$W/image.tar" >/dev/null 2>&1 ||
  "${P[@]}" load -i "$W/image.tar" || die "podman load failed"
IMG=localhost/bb:latest
RUN=("${P[@]}" run --rm --network none)
c1=nkp1-$U c2=nkp2-$U c3=nkp3-$U c4=nkp4-$U
inspect() { "${P[@]}" inspect -f "$2" "$1"; }
wait_exited() {
  local i
  for i in $(seq 600); do [ "$(inspect "$1" '{{.State.Status}}')" = exited ] && break; sleep 0.1; done
  inspect "$1" '{{.State.Status}}'
}

check "run echo" 0 '^hi$' "${RUN[@]}" $IMG echo hi
check "containers.conf selects the runtime" 0 "^$RT\$" "${P0[@]}" info --format '{{.Host.OCIRuntime.Path}}'
check "run with the containers.conf runtime" 0 '^hi$' "${P0[@]}" run --rm --network none $IMG echo hi
check "--runtime by name from [engine.runtimes]" 0 '^hi$' "${P0[@]}" --runtime "$RTNAME" run --rm --network none $IMG echo hi
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
check "read-only rootfs keeps /tmp writable" 0 '' "${RUN[@]}" --read-only $IMG touch /tmp/x
check "stdin -i" 0 '^piped-in$' bash -c "echo piped-in | $(printf '%q ' "${RUN[@]}") -i $IMG cat"
check "tty -t" 0 '/dev/pts/[0-9]' on_tty "${RUN[@]}" -t $IMG tty
check "--memory read back" 0 '^67108864$' "${RUN[@]}" --memory 64m $IMG sh -c \
  'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'
check "--pids-limit read back" 0 '^50$' "${RUN[@]}" --pids-limit 50 $IMG sh -c \
  'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max'
check "seccomp: default profile loaded" 0 '^Seccomp:[[:space:]]+2$' "${RUN[@]}" $IMG grep '^Seccomp:' /proc/self/status
check "seccomp: default profile denies personality" 1 'denied' "${RUN[@]}" $IMG seccomp-probe
check "seccomp: unconfined allows personality" 0 'allowed' "${RUN[@]}" --security-opt seccomp=unconfined $IMG seccomp-probe

check "run -d" 0 '^[0-9a-f]{64}$' "${P[@]}" run -d --name "$c1" --network none $IMG sleep 1000
check "running after run -d" 0 '^running$' inspect "$c1" '{{.State.Status}}'
check "exec output and exit code" 3 '^in-exec$' "${P[@]}" exec "$c1" sh -c 'echo in-exec; exit 3'
check "exec -e" 0 '^X=y$' "${P[@]}" exec -e X=y "$c1" sh -c 'echo X=$X'
check "exec --user" 0 '^65534$' "${P[@]}" exec --user 65534 "$c1" id -u
check "exec -w" 0 '^/tmp$' "${P[@]}" exec -w /tmp "$c1" pwd
check "exec joins the pid namespace" 0 '^sleep 1000' "${P[@]}" exec "$c1" sh -c "tr '\\0' ' ' </proc/1/cmdline"
check "exec -t" 0 '/dev/pts/[0-9]' on_tty "${P[@]}" exec -t "$c1" tty
check "exec -i stdin" 0 '^exec-in$' bash -c "echo exec-in | $(printf '%q ' "${P[@]}") exec -i $c1 cat"
check "exec missing executable -> 127" 127 '' "${P[@]}" exec "$c1" /no/such/binary
check "exec -w a missing directory fails" 127 '' "${P[@]}" exec -w /no/such/dir "$c1" pwd
check "still running after failed exec" 0 '^running$' inspect "$c1" '{{.State.Status}}'
check "exec under the seccomp profile" 1 'denied' "${P[@]}" exec "$c1" seccomp-probe
check "pause" 0 '' "${P[@]}" pause "$c1"
check "state paused" 0 '^paused$' inspect "$c1" '{{.State.Status}}'
check "unpause" 0 '' "${P[@]}" unpause "$c1"
check "state running after unpause" 0 '^running$' inspect "$c1" '{{.State.Status}}'
check "stop: SIGKILL after timeout" 0 "$c1" "${P[@]}" stop -t 1 "$c1"
check "exit code 137 after SIGKILL" 0 '^137$' inspect "$c1" '{{.State.ExitCode}}'
check "rm" 0 "$c1" "${P[@]}" rm "$c1"
check "gone after rm" 1 '' "${P[@]}" container exists "$c1"

"${P[@]}" run -d --name "$c2" --network none $IMG sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done' >/dev/null 2>&1
wait_for 60 trap_set "$(inspect "$c2" '{{.State.Pid}}')" 15
check "stop: SIGTERM to a trap" 0 "$c2" "${P[@]}" stop -t 10 "$c2"
check "exit code 42 from the trap" 0 '^42$' inspect "$c2" '{{.State.ExitCode}}'
"${P[@]}" rm -f -t 0 "$c2" >/dev/null 2>&1

"${P[@]}" run -d --name "$c3" --network none -t $IMG sh >/dev/null 2>&1
check "run -d -t then exec" 0 '^ok$' "${P[@]}" exec "$c3" echo ok
check "kill" 0 '' "${P[@]}" kill "$c3"
check "exited after kill" 0 '^exited$' wait_exited "$c3"
"${P[@]}" rm -f -t 0 "$c3" >/dev/null 2>&1

"${P[@]}" run -d --name "$c4" --network none $IMG sleep 1000 >/dev/null 2>&1
check "restart" 0 '' "${P[@]}" restart -t 1 "$c4"
check "running after restart" 0 '^running$' inspect "$c4" '{{.State.Status}}'
"${P[@]}" rm -f -t 0 "$c4" >/dev/null 2>&1


# --- wider checks: what Podman users commonly ask of a runtime ---
host_ns() { readlink "/proc/self/ns/$1" | sed 's/[][]/\\&/g'; }
check "--cap-drop all --cap-add" 0 '^CapEff:[[:space:]]+0000000000000400$' "${RUN[@]}" --cap-drop all --cap-add NET_BIND_SERVICE $IMG grep '^CapEff:' /proc/self/status
check "--cap-add SYS_ADMIN" 0 'yes' "${RUN[@]}" --cap-add SYS_ADMIN $IMG sh -c 'c=$(grep ^CapEff: /proc/self/status | cut -f2); [ $(( 0x$c >> 21 & 1 )) = 1 ] && echo yes'
check "--cap-drop CHOWN" 1 '' "${RUN[@]}" --cap-drop CHOWN $IMG chown 65534 /tmp
check "--privileged: every capability" 0 '^CapEff:[[:space:]]+000001ff' "${RUN[@]}" --privileged $IMG grep '^CapEff:' /proc/self/status
check "--privileged: host devices" 0 '^ok$' "${RUN[@]}" --privileged $IMG sh -c '[ -b /dev/loop0 ] && [ -c /dev/kmsg ] && echo ok'
check "--privileged: no seccomp" 0 '^Seccomp:[[:space:]]+0$' "${RUN[@]}" --privileged $IMG grep '^Seccomp:' /proc/self/status
check "--security-opt no-new-privileges" 0 '^NoNewPrivs:[[:space:]]+1$' "${RUN[@]}" --security-opt no-new-privileges $IMG grep '^NoNewPrivs:' /proc/self/status
cat >"$W/seccomp.json" <<'EOF'
{"defaultAction": "SCMP_ACT_ALLOW",
 "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO"}]}
EOF
check "seccomp: custom JSON profile" 1 'denied' "${RUN[@]}" --security-opt seccomp="$W/seccomp.json" $IMG seccomp-probe
check "--ulimit nofile" 0 '^1024 2048$' "${RUN[@]}" --ulimit nofile=1024:2048 --ulimit nproc=$nproc:$nproc $IMG sh -c 'echo $(ulimit -n) $(ulimit -Hn)'
check "--sysctl in own netns" 0 '^1$' "${RUN[@]}" --sysctl net.ipv4.ip_forward=1 $IMG cat /proc/sys/net/ipv4/ip_forward
check "--shm-size" 0 '^32768$' "${RUN[@]}" --shm-size 32m $IMG sh -c "df -k /dev/shm | awk 'NR==2{print \$2}'"
check "--tmpfs with size" 0 '^1024$' "${RUN[@]}" --tmpfs /x:size=1m $IMG sh -c "df -k /x | awk 'NR==2{print \$2}'"
mkdir -p "$W/vol" && echo from-host >"$W/vol/f"
check "-v bind volume read" 0 '^from-host$' "${RUN[@]}" -v "$W/vol:/x" $IMG cat /x/f
check "-v bind volume write seen on host" 0 '^from-ctr$' sh -c "$(printf '%q ' "${RUN[@]}") -v $W/vol:/x $IMG sh -c 'echo from-ctr >/x/g' && cat $W/vol/g"
check "-v :ro bind volume" 1 'Read-only file system' "${RUN[@]}" -v "$W/vol:/x:ro" $IMG touch /x/h
check "--device renamed" 0 '^ok$' "${RUN[@]}" --device /dev/null:/dev/xnull $IMG sh -c '[ -c /dev/xnull ] && echo x >/dev/xnull && echo ok'
check "--cpus read back" 0 '^50000$' "${RUN[@]}" --cpus 0.5 $IMG cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us
check "--cpuset-cpus read back" 0 '^0$' "${RUN[@]}" --cpuset-cpus 0 $IMG cat /sys/fs/cgroup/cpuset/cpuset.cpus
check "--memory-swap read back" 0 '^134217728$' "${RUN[@]}" --memory 64m --memory-swap 128m $IMG cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes
check "--oom-kill-disable read back" 0 '^oom_kill_disable 1$' "${RUN[@]}" --memory 64m --oom-kill-disable $IMG cat /sys/fs/cgroup/memory/memory.oom_control
check "--init: pid 1 is the init" 0 'catatonit|podman-init' "${RUN[@]}" --init $IMG sh -c "tr '\\0' ' ' </proc/1/cmdline"
check "--pid=host" 0 "^$(host_ns pid)\$" "${RUN[@]}" --pid=host $IMG readlink /proc/self/ns/pid
check "--ipc=host" 0 "^$(host_ns ipc)\$" "${RUN[@]}" --ipc=host $IMG readlink /proc/self/ns/ipc
check "--uts=host" 0 "^$(hostname)\$" "${P[@]}" run --rm --network none --uts=host $IMG hostname
check "--network=host" 0 "^$(host_ns net)\$" "${P[@]}" run --rm --network host $IMG readlink /proc/self/ns/net
check "killed by a signal -> 137" 137 '' "${RUN[@]}" --pid=host $IMG sh -c 'kill -9 $$'
check "1 MiB of stdin intact" 0 "^$(yes nk | head -c 1048576 | md5sum | cut -d' ' -f1) " bash -c "yes nk | head -c 1048576 | $(printf '%q ' "${RUN[@]}") -i $IMG md5sum"
check "1 MiB of stdout intact" 0 "^$(yes nk | head -c 1048576 | md5sum | cut -d' ' -f1) " bash -c "$(printf '%q ' "${RUN[@]}") $IMG sh -c 'yes nk | head -c 1048576' | md5sum"
check "--uidmap user namespace" 0 '^ +0 +100000 +65536$' "${RUN[@]}" --uidmap 0:100000:65536 --gidmap 0:100000:65536 $IMG cat /proc/self/uid_map
check "--tmpfs on a new directory keeps its mode=" 0 '^1770$' "${RUN[@]}" --mount type=tmpfs,dst=/t,tmpfs-mode=1770 $IMG stat -c %a /t
check "--tmpfs over a directory takes its mode" 0 '^1777$' "${RUN[@]}" --tmpfs /var/tmp:mode=0700 $IMG stat -c %a /var/tmp
check "--tmpfs :ro (copied up, then read-only)" 1 'Read-only file system' "${RUN[@]}" --tmpfs /var/tmp:ro $IMG touch /var/tmp/x
check "--timeout kills the container" 255 '' "${RUN[@]}" --timeout 1 $IMG sleep 30
check "--rootfs DIR" 0 '^hi$' "${RUN[@]}" --rootfs "$W/rootfs" echo hi

c5=nkp5-$U c6=nkp6-$U
"${P[@]}" run -d --name "$c5" --network none $IMG sh -c 'echo logged; trap "exit 10" USR1; while :; do sleep 0.1; done' >/dev/null 2>&1
wait_for 60 trap_set "$(inspect "$c5" '{{.State.Pid}}')" 10
check "logs" 0 '^logged$' "${P[@]}" logs "$c5"
check "top" 0 'sleep' "${P[@]}" top "$c5"
check "exec --privileged" 0 '^CapEff:[[:space:]]+000001ff' "${P[@]}" exec --privileged "$c5" grep '^CapEff:' /proc/self/status
check "exec -w -e -u together" 0 '^/tmp 1 65534$' "${P[@]}" exec -w /tmp -e X=1 -u 65534 "$c5" sh -c 'echo $(pwd) $X $(id -u)'
"${P[@]}" run -d --name "$c6" --network none --pid container:"$c5" --ipc container:"$c5" $IMG sleep 1000 >/dev/null 2>&1
check "--pid container:X shares the pid namespace" 0 'sleep 0.1|while' "${P[@]}" exec "$c6" ps
check "--ipc container:X shares the ipc namespace" 0 '^same$' sh -c "[ \"\$($(printf '%q ' "${P[@]}") exec $c5 readlink /proc/self/ns/ipc)\" = \"\$($(printf '%q ' "${P[@]}") exec $c6 readlink /proc/self/ns/ipc)\" ] && echo same"
"${P[@]}" rm -f -t 0 "$c6" >/dev/null 2>&1
check "--network container:X shares the network namespace" 0 '^same$' sh -c "[ \"\$($(printf '%q ' "${P[@]}") exec $c5 readlink /proc/self/ns/net)\" = \"\$($(printf '%q ' "${P[@]}") run --rm --network container:$c5 $IMG readlink /proc/self/ns/net)\" ] && echo same"
check "--uts container:X shares the hostname" 0 '^same$' sh -c "[ \"\$($(printf '%q ' "${P[@]}") exec $c5 hostname)\" = \"\$($(printf '%q ' "${RUN[@]}") --uts container:$c5 $IMG hostname)\" ] && echo same"
echo copied >"$W/cpfile"
check "cp into a running container" 0 '^copied$' sh -c "$(printf '%q ' "${P[@]}") cp $W/cpfile $c5:/tmp/cpfile && $(printf '%q ' "${P[@]}") exec $c5 cat /tmp/cpfile"
check "kill --signal USR1 to a trap" 0 '' "${P[@]}" kill --signal USR1 "$c5"
check "wait returns the exit code" 0 '^10$' "${P[@]}" wait "$c5"
"${P[@]}" rm -f -t 0 "$c5" >/dev/null 2>&1

pod=nkpod-$U
check "pod create" 0 '' "${P[@]}" pod create --name "$pod" --network none --share pid,ipc,uts
check "pod: two containers share the pid namespace" 0 'sleep 1000' sh -c "$(printf '%q ' "${P[@]}") run -d --pod $pod $IMG sleep 1000 >/dev/null && $(printf '%q ' "${P[@]}") run --rm --pod $pod $IMG ps"
check "pod rm" 0 '' "${P[@]}" pod rm -f -t 0 "$pod"


# podman build: every RUN step is a container the runtime runs (buildah's
# `run`, with the runtime given by --runtime).
mkdir -p "$W/ctx"
cat >"$W/ctx/Containerfile" <<EOF
FROM $IMG
RUN echo built >/built
RUN ["sh", "-c", "echo exec-form >>/built"]
USER 65534
WORKDIR /tmp
ENV X=y
RUN echo \$X \$(id -u) \$(pwd) >/tmp/x
EOF
check "build with RUN steps" 0 '' "${P[@]}" build -q --network none -t "localhost/nkbuilt-$U" "$W/ctx"
check "the built image holds the RUN steps' output" 0 '^built exec-form y 65534 /tmp$' sh -c "echo \$($(printf '%q ' "${RUN[@]}") localhost/nkbuilt-$U cat /built /tmp/x)"

# buildah (same storage) runs a command in a working container the same way.
B=(buildah --root "$S/storage" --runroot "$W/runroot")
buildah_run() {
  local c rc
  c=$("${B[@]}" from -q "$IMG") || return 1
  "${B[@]}" run --runtime "$RT" --network none "$c" -- sh -c 'echo via-buildah $(id -u)'
  rc=$?
  "${B[@]}" rm "$c" >/dev/null
  return $rc
}
check "buildah run" 0 '^via-buildah 0$' buildah_run

# podman play kube: a pod (infra container and two containers) from YAML.
kp=nkkp-$U
cat >"$W/kube.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $kp
spec:
  containers:
  - name: a
    image: $IMG
    command: ["sh", "-c", "echo kube-a; sleep 1000"]
  - name: b
    image: $IMG
    command: ["sleep", "1000"]
    env:
    - name: K
      value: v
EOF
check "play kube" 0 '' "${P[@]}" play kube --network none "$W/kube.yaml"
check "play kube: exec sees the env" 0 '^v$' "${P[@]}" exec "$kp-b" sh -c 'echo $K'
check "play kube: containers share the ipc namespace" 0 '^same$' sh -c "[ \"\$($(printf '%q ' "${P[@]}") exec $kp-a readlink /proc/self/ns/ipc)\" = \"\$($(printf '%q ' "${P[@]}") exec $kp-b readlink /proc/self/ns/ipc)\" ] && echo same"
check "play kube: logs" 0 '^kube-a$' "${P[@]}" logs "$kp-a"
check "pod stop" 0 '^Exited$' sh -c "$(printf '%q ' "${P[@]}") pod stop -t 1 $kp >/dev/null 2>&1 && $(printf '%q ' "${P[@]}") pod inspect -f '{{.State}}' $kp"
check "pod start" 0 '^Running$' sh -c "$(printf '%q ' "${P[@]}") pod start $kp >/dev/null && $(printf '%q ' "${P[@]}") pod inspect -f '{{.State}}' $kp"
check "pod pause" 0 '^Paused$' sh -c "$(printf '%q ' "${P[@]}") pod pause $kp >/dev/null && $(printf '%q ' "${P[@]}") pod inspect -f '{{.State}}' $kp"
check "pod unpause then exec" 0 '^again$' sh -c "$(printf '%q ' "${P[@]}") pod unpause $kp >/dev/null && $(printf '%q ' "${P[@]}") exec $kp-b echo again"
check "play kube --down" 0 '' "${P[@]}" play kube --down "$W/kube.yaml"
finish

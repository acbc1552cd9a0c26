# tests/engines/lib.sh: shared by podman.sh, containerd.sh and docker.sh.
#
# Each engine script drives one OCI runtime binary (nk-runtime or runc, given
# as its argument) through a real engine started privately for the run: its
# own sockets, state and data directories, unique per run so runs can overlap.
# Every check prints "PASS name" or "FAIL name: why"; the last line is
# "N passed, M failed". Check names are the same for every runtime, so the
# Rust wrapper (tests/engines.rs) can compare runtimes check by check.

set -u
ENGINES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DEBIAN_FRONTEND=noninteractive
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# /usr/local/bin/docker on some hosts is an unrelated program: name binaries fully.
T=${ENGINE_CMD_TIMEOUT:-60}
pass=0 fail=0

die() { echo "SETUP-ERROR $*" >&2; echo "0 passed, 1 failed"; exit 2; }

# engine_init ENGINE RUNTIME: absolute runtime path, unique work directories.
#   $W: short path under /tmp (unix sockets have a 108-byte limit);
#   $S: storage under /var/lib (overlayfs wants a real filesystem).
engine_init() {
  ENGINE=$1
  local rt_in=${2:?usage: $0 /path/to/oci-runtime}
  RT=$(cd "$(dirname "$rt_in")" && pwd)/$(basename "$rt_in")
  [ -x "$RT" ] || die "runtime not executable: $RT"
  RTNAME=$(basename "$RT")
  U=$(printf '%x' "$$")$(date +%N | cut -c1-4)
  W=/tmp/nke-$ENGINE-$U
  S=/var/lib/nk-engines/$ENGINE-$U
  mkdir -p "$W" "$S"
  cgroup_snapshot
  echo "# $ENGINE with $RT (work $W, storage $S)"
}

# Cgroups. The engines make cgroups of their own and leave them behind,
# empty, when their containers are gone: Podman's libpod_parent (with
# libpod_parent/conmon, and in name=systemd and cgroup2, which only the
# runtime knows, one 64-hex directory per container), Docker's /docker and
# containerd's /<namespace>, in every hierarchy.
# cgroup_snapshot (at engine_init) lists every cgroup directory there is;
# cgroup_tidy REGEX (in each script's cleanup, after the engine is stopped)
# removes, deepest first, those that appeared since and whose top-level name
# (below a hierarchy's root) matches REGEX: rmdir only, so a cgroup that still
# holds a process stays, and is reported as a failed check.

# cgroup_roots: the mount point of every cgroup hierarchy of this host.
cgroup_roots() {
  awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break;
         if ($(i + 1) == "cgroup" || $(i + 1) == "cgroup2") print $5 }' /proc/self/mountinfo
}
cgroup_dirs() {
  local r
  for r in $(cgroup_roots); do find "$r" -mindepth 1 -type d 2>/dev/null; done
}
cgroup_snapshot() {
  CG_BEFORE=$W/cgroups.before
  cgroup_dirs >"$CG_BEFORE"
}
cgroup_tidy() {
  local re=$1 r d rel left="" n=0 i
  [ -f "${CG_BEFORE:-}" ] || return 0
  for r in $(cgroup_roots); do
    find "$r" -mindepth 1 -type d 2>/dev/null | while read -r d; do
      rel=${d#"$r"/}
      grep -qxE -- "$re" <<<"${rel%%/*}" || continue
      grep -qxF -- "$d" "$CG_BEFORE" && continue
      echo "$d"
    done
  done | awk -F/ '{ print NF "\t" $0 }' | sort -rn | cut -f2- >"$W/cgroups.new"
  # A shim or conmon may still be on its way out: retry for 20 s at most.
  for i in $(seq 200); do
    left=""
    while read -r d; do
      if rmdir "$d" 2>/dev/null; then
        n=$((n + 1)); echo "# rmdir $d"
      elif [ -d "$d" ]; then
        left="$left $d"
      fi
    done <"$W/cgroups.new"
    [ -z "$left" ] && break
    sleep 0.1
  done
  echo "# cgroups this run made, removed: $n"
  if [ -n "$left" ]; then
    ko "cgroups left empty" "not empty (a process left behind?):$left"
  else
    ok "cgroups left empty"
  fi
}

# need PKG...: install missing Debian packages (the engine under test).
need() {
  local missing="" p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  [ -z "$missing" ] && return 0
  echo "# apt-get install$missing"
  # shellcheck disable=SC2086
  apt-get install -y -o DPkg::Lock::Timeout=600 $missing >"$W/apt.log" 2>&1 || {
    apt-get update >>"$W/apt.log" 2>&1
    # shellcheck disable=SC2086
    apt-get install -y -o DPkg::Lock::Timeout=600 $missing >>"$W/apt.log" 2>&1
  } || die "apt-get install$missing failed (see $W/apt.log)"
}

# mk_image: busybox-static rootfs plus the seccomp probe -> $W/image.tar
# holding localhost/bb:latest.
mk_image() {
  local r=$W/rootfs a
  need busybox-static python3 gcc libc6-dev
  rm -rf "$r"
  mkdir -p "$r"/bin "$r"/etc "$r"/proc "$r"/sys "$r"/dev "$r"/tmp "$r"/root "$r"/var/tmp "$r"/usr
  cp /bin/busybox "$r/bin/busybox"
  for a in $("$r/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
  ln -s bin "$r/sbin"; ln -s ../bin "$r/usr/bin"; ln -s ../bin "$r/usr/sbin"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$r/etc/group"
  chmod 1777 "$r/tmp" "$r/var/tmp"
  gcc -static -O2 -o "$r/bin/seccomp-probe" "$ENGINES_DIR/seccomp-probe.c" ||
    die "cannot build seccomp-probe (gcc -static)"
  python3 "$ENGINES_DIR/mk-image.py" "$r" "$W/image.tar" localhost/bb:latest ||
    die "mk-image.py failed"
}

ok() { pass=$((pass + 1)); echo "PASS $1"; }
ko() { fail=$((fail + 1)); echo "FAIL $1: $2"; }

# check NAME WANT_RC REGEX CMD...: run CMD (stdin /dev/null, stdout+stderr
# captured, killed after $T s); pass when the status is WANT_RC and the
# output matches the extended REGEX (skip with '').
check() {
  local name=$1 want=$2 re=$3 out rc
  shift 3
  if declare -F "$1" >/dev/null; then
    out=$("$@" 2>&1 </dev/null); rc=$?
  else
    out=$(timeout -k 5 "$T" "$@" 2>&1 </dev/null); rc=$?
  fi
  if [ "$rc" != "$want" ]; then
    ko "$name" "exit $rc, want $want; output: $(tail -4 <<<"$out" | tr '\n' '|' | cut -c1-400)"
  elif [ -n "$re" ] && ! grep -qE -- "$re" <<<"$out"; then
    ko "$name" "output does not match /$re/: $(tail -4 <<<"$out" | tr '\n' '|' | cut -c1-400)"
  else
    ok "$name"
  fi
}

# on_tty CMD...: run CMD with a pseudo-terminal as its stdin/stdout
# (util-linux script), for -t checks.
on_tty() {
  local q
  q=$(printf '%q ' "$@")
  timeout -k 5 "$T" script -qec "$q" /dev/null
}

# wait_for SECONDS CMD...: retry CMD until it succeeds.
wait_for() {
  local n=$(($1 * 10))
  shift
  while [ "$n" -gt 0 ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1; n=$((n - 1))
  done
  return 1
}

# trap_set PID SIGNUM: PID has a handler for SIGNUM installed (SigCgt in
# /proc): a signal sent earlier would reach a shell that has not run its
# `trap` yet (and pid 1 of a container ignores it then).
trap_set() {
  local m
  m=$(awk '/^SigCgt:/ {print $2}' "/proc/$1/status" 2>/dev/null)
  [ -n "$m" ] && [ $(((0x$m >> ($2 - 1)) & 1)) -eq 1 ]
}

# stop_pid PID: SIGTERM, then SIGKILL after 20 s; only the pid we started.
stop_pid() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

# umount_under DIR...: detach every mount below DIR (deepest first).
umount_under() {
  local d m
  for d in "$@"; do
    awk -v p="$d" '$5 == p || index($5, p "/") == 1 {print $5}' /proc/self/mountinfo |
      sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  done
}

# remove_dirs DIR...: unmount what is left below, then delete.
remove_dirs() {
  umount_under "$@"
  rm -rf "$@"
}

finish() {
  echo "$pass passed, $fail failed"
  [ "$fail" = 0 ]
}

#!/bin/sh
# Usage: scripts/link-order.sh
# Rewrites crates/nk-runtime/link-order.txt: the functions that run,
# create, start, state, exec, list, kill and delete execute in the runtime's
# own process (and, for run and exec, in the init it starts), in the order
# they first run, for the linker to place first and together
# (crates/nk-runtime/build.rs says why: fewer 64 KiB windows of text
# touched, a smaller resident set). It builds the release binary with a
# linker map, single-steps each command (scripts/link-order/trace.c) and
# names the addresses from the map (scripts/link-order/symbols.py). Run it
# as root after a change that moves much code; a stale list only loses
# locality. About 9 minutes on a 2-core machine. Needs gcc and python3
# (scripts/test-deps.sh installs both).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
w=$(mktemp -d /tmp/nk-link-order.XXXXXX)
trap 'for id in lo-run lo-held; do "$w/nk" --root "$w/state" delete -f "$id" >/dev/null 2>&1 || true; done; rm -rf "$w"' EXIT
gcc -O2 -Wall -o "$w/trace" "$top/scripts/link-order/trace.c"
# The same build as `make build` (symbol names depend on the profile and
# flags), with the linker's map.
NK_LINK_MAP="$w/nk.map" make -C "$top" build >/dev/null
cp "$top/target/x86_64-unknown-linux-gnu/release/nk-runtime" "$w/nk"
"$top/scripts/mk-bundle.sh" "$w/nk" "$w/b" >/dev/null
python3 - "$w/b/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(sys.argv[1], "w"))
PY
mkdir -p "$w/bs" && ln -s "$w/b/rootfs" "$w/bs/rootfs"
python3 - "$w/b/config.json" "$w/bs/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["args"] = ["/bin/sleep", "1000"]
json.dump(c, open(sys.argv[2], "w"))
PY
n=0
# t [-f] ARGS...: trace one command; -f follows the processes it clones,
# the init included, while they run the runtime (trace.c says why only
# for commands whose processes all end with them: run and exec).
t() {
  f=; [ "$1" = -f ] && { f=-f; shift; }
  n=$((n + 1))
  "$w/trace" $f "$w/addrs.$n" "$w/nk" --root "$w/state" "$@" </dev/null >/dev/null || { echo "link-order: $* failed" >&2; exit 1; }
}
# run first: its order, the init's code included, is the binary's first pages.
t -f run --bundle "$w/b" lo-run
t create --bundle "$w/bs" lo-held
t start lo-held
t state lo-held
t -f exec lo-held /bin/true
t list
t kill lo-held KILL
t delete -f lo-held
python3 "$top/scripts/link-order/symbols.py" "$w/nk.map" $(seq -f "$w/addrs.%g" 1 $n) \
  >"$top/crates/nk-runtime/link-order.txt.new"
mv "$top/crates/nk-runtime/link-order.txt.new" "$top/crates/nk-runtime/link-order.txt"
echo "link-order: $(wc -l <"$top/crates/nk-runtime/link-order.txt") symbols in crates/nk-runtime/link-order.txt"

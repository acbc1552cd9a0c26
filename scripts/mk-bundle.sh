#!/bin/sh
# Usage: scripts/mk-bundle.sh NK_RUNTIME DIR
# Makes the default bundle in DIR: DIR/rootfs (busybox) and DIR/config.json
# from `nk-runtime spec`, set to run a short, non-interactive demo.
set -eu
rt=${1:?usage: mk-bundle.sh NK_RUNTIME DIR}
d=${2:?usage: mk-bundle.sh NK_RUNTIME DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$d"
"$here/mk-rootfs.sh" "$d/rootfs"
rm -f "$d/config.json"
"$rt" spec --bundle "$d"
# Non-interactive by default, so `make run` works without a terminal.
sed -i 's/"terminal": true/"terminal": false/' "$d/config.json"
python3 - "$d/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/sh", "-c",
    "echo 'Hello from nano-sandbox!'; echo \"hostname: $(hostname)\"; echo \"pid: $$\"; "
    "echo \"uid: $(id -u)\"; echo 'processes:'; ps"]
json.dump(c, open(p, "w"), indent="\t")
PY

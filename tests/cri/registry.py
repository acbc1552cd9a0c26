#!/usr/bin/env python3
"""registry.py LAYOUT_DIR PORT READY_FILE -- a read-only OCI distribution
registry serving one OCI image layout (as tests/engines/mk-image.py writes
it), so the CRI test's PullImage really pulls.

It answers only what containerd's resolver and fetcher ask: GET/HEAD /v2/,
/v2/<name>/manifests/<tag or digest> and /v2/<name>/blobs/<digest>. Any
repository name is served the same layout. It listens on 127.0.0.1 inside
the test's network namespace and writes READY_FILE once it accepts
connections (renamed into place, so a reader never sees half of it).
"""
import http.server
import json
import os
import re
import sys

LAYOUT = sys.argv[1]
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PATH_RE = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")


def by_tag(tag):
    with open(os.path.join(LAYOUT, "index.json"), "rb") as f:
        index = json.load(f)
    for m in index.get("manifests", []):
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m["digest"], m["mediaType"]
    return None, None


def blob(digest):
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexd):
        return None
    path = os.path.join(LAYOUT, "blobs", "sha256", hexd)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, body_wanted):
        if self.path in ("/v2", "/v2/"):
            return self.send(200, "application/json", b"{}", None, body_wanted)
        m = PATH_RE.match(self.path.split("?", 1)[0])
        if not m:
            return self.send(404, "text/plain", b"not found\n", None, body_wanted)
        ref, ctype = m["ref"], "application/octet-stream"
        if m["kind"] == "manifests":
            ctype = MANIFEST
            if not ref.startswith("sha256:"):
                ref, ctype = by_tag(ref)
                if ref is None:
                    return self.send(404, "text/plain", b"unknown tag\n", None, body_wanted)
        data = blob(ref)
        if data is None:
            return self.send(404, "text/plain", b"unknown blob\n", None, body_wanted)
        return self.send(200, ctype, data, ref, body_wanted)

    def send(self, code, ctype, data, digest, body_wanted):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.end_headers()
        if body_wanted:
            self.wfile.write(data)

    def do_GET(self):
        self.answer(True)

    def do_HEAD(self):
        self.answer(False)

    def log_message(self, fmt, *args):
        sys.stderr.write("registry: " + (fmt % args) + "\n")


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
    ready = sys.argv[3]
    with open(ready + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(ready + ".tmp", ready)
    server.serve_forever()


if __name__ == "__main__":
    main()

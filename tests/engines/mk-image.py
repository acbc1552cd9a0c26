#!/usr/bin/env python3
"""mk-image.py ROOTFS OUT.tar [REF [CMD...]]  -- pack a directory as a one-layer image.

No registry is reachable from the test machines, so the engine tests build
their image locally. The archive written here is read by all three engines:
it is an OCI image layout (oci-layout, index.json, blobs/sha256/*) for
`ctr image import` and `podman load`, and it also carries the
docker-archive manifest.json that `docker load` (20.10) looks for. The
layer is an uncompressed, reproducible tar (sorted, mtime 0, owner 0).
REF defaults to localhost/bb:latest; CMD (default: sh) is the image's Cmd
(the CRI test's pause image runs /pause).
"""
import hashlib
import io
import json
import subprocess
import sys
import tarfile


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_path(d):
    return "blobs/sha256/" + d.split(":", 1)[1]


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rootfs, out = sys.argv[1], sys.argv[2]
    ref = sys.argv[3] if len(sys.argv) >= 4 else "localhost/bb:latest"
    cmd = sys.argv[4:] or ["sh"]
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"

    layer = subprocess.run(
        ["tar", "-C", rootfs, "-cf", "-", "--sort=name", "--mtime=@0",
         "--numeric-owner", "--owner=0", "--group=0", "."],
        check=True, stdout=subprocess.PIPE).stdout
    layer_d = digest(layer)
    config = compact({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_d]},
        "history": [{"created": "1970-01-01T00:00:00Z",
                     "created_by": "nano-sandbox tests/engines/mk-image.py"}],
    })
    config_d = digest(config)
    manifest = compact({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_d, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_d, "size": len(layer)}],
    })
    manifest_d = digest(manifest)
    index = compact({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_d, "size": len(manifest),
            "annotations": {"io.containerd.image.name": ref,
                            "org.opencontainers.image.ref.name": tag},
        }],
    })
    docker_manifest = compact([{"Config": blob_path(config_d), "RepoTags": [ref],
                                "Layers": [blob_path(layer_d)]}])

    entries = [
        ("oci-layout", compact({"imageLayoutVersion": "1.0.0"})),
        ("index.json", index),
        ("manifest.json", docker_manifest),
        (blob_path(config_d), config),
        (blob_path(manifest_d), manifest),
        (blob_path(layer_d), layer),
    ]
    with tarfile.open(out, "w") as t:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()

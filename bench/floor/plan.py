#!/usr/bin/env python3
"""bench/floor/plan.py run|seccomp CONFIG: what a config.json asks of the
kernel, as the plain lines floor-run and floor-seccomp read (their headers
give the formats). Only what the floor programs do is written: no hooks,
no cgroups (floor-cgroup), no namespace paths (the floor creates every
namespace it is given)."""
import json
import os
import sys

NS = {"pid": 0x20000000, "network": 0x40000000, "mount": 0x00020000, "ipc": 0x08000000,
      "uts": 0x04000000, "cgroup": 0x02000000}
FLAGS = {"ro": 0x1, "nosuid": 0x2, "nodev": 0x4, "noexec": 0x8, "sync": 0x10, "mand": 0x40,
         "dirsync": 0x80, "noatime": 0x400, "nodiratime": 0x800, "bind": 0x1000,
         "rbind": 0x1000 | 0x4000, "relatime": 0x200000, "strictatime": 0x1000000}
CLEAR = {"rw", "suid", "dev", "exec", "async", "atime", "diratime", "norelatime", "nostrictatime",
         "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable", "defaults"}
CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
        "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
        "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]
RLIMITS = {"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
           "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
           "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
           "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15}
# The devices every container gets (runtime-spec: default devices).
DEVICES = [("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8),
           ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0)]
SYMLINKS = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
            ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]


def caps_mask(names):
    m = 0
    for n in names or []:
        n = n.removeprefix("CAP_")
        if n in CAPS:
            m |= 1 << CAPS.index(n)
    return f"{m:x}"


def run(c):
    linux = c.get("linux", {})
    flags = 0
    for ns in linux.get("namespaces", []):
        if not ns.get("path"):
            flags |= NS.get(ns["type"], 0)
    out = [f"ns\t{flags:x}"]
    devpts = False
    for m in c.get("mounts", []):
        opts = m.get("options", [])
        fl, data = 0, []
        for o in opts:
            if o in FLAGS:
                fl |= FLAGS[o]
            elif o not in CLEAR:
                data.append(o)
        typ = m.get("type", "")
        if m["destination"] == "/sys/fs/cgroup" and typ == "cgroup":
            out.append(f"cgroup\t{m['destination']}")
        elif fl & 0x1000 or typ == "bind":
            fl |= 0x1000
            kind = "d" if os.path.isdir(m.get("source", "")) else "f"
            out.append(f"bind\t{m['source']}\t{m['destination']}\t{fl:x}\t{kind}")
        else:
            devpts |= typ == "devpts"
            out.append(f"mount\t{m.get('source', typ)}\t{m['destination']}\t{typ}\t{fl:x}\t{','.join(data) or '-'}")
    for path, major, minor in DEVICES:
        out.append(f"dev\t{path}\t{0o20666:x}\t{major}\t{minor}")
    for d in linux.get("devices", []):
        mode = (0o20000 if d.get("type", "c") in ("c", "u") else 0o60000) | d.get("fileMode", 0o666)
        out.append(f"dev\t{d['path']}\t{mode:x}\t{d.get('major', 0)}\t{d.get('minor', 0)}")
    for target, path in SYMLINKS + ([("pts/ptmx", "/dev/ptmx")] if devpts else []):
        out.append(f"symlink\t{target}\t{path}")
    out += [f"mask\t{p}" for p in linux.get("maskedPaths", [])]
    out += [f"ro\t{p}" for p in linux.get("readonlyPaths", [])]
    if c.get("root", {}).get("readonly"):
        out.append("rootro")
    if c.get("hostname"):
        out.append(f"hostname\t{c['hostname']}")
    p = c.get("process", {})
    for r in p.get("rlimits", []):
        out.append(f"rlimit\t{RLIMITS[r['type']]}\t{r['soft']}\t{r['hard']}")
    caps = p.get("capabilities", {})
    if caps:
        out.append("caps\t" + "\t".join(caps_mask(caps.get(k)) for k in
                                         ("bounding", "effective", "permitted", "inheritable", "ambient")))
    if p.get("noNewPrivileges"):
        out.append("nnp")
    return out


def seccomp(c):
    s = c.get("linux", {}).get("seccomp")
    if not s:
        return []
    errno = s.get("defaultErrnoRet", 1)
    out = [f"default\t{s['defaultAction']}\t{errno}"]
    out += [f"arch\t{a}" for a in s.get("architectures", [])]
    for r in s.get("syscalls", []):
        args = r.get("args", [])
        a = "".join(f"\t{x['index']}\t{x['op']}\t{x['value']}\t{x.get('valueTwo', 0)}" for x in args)
        for name in r.get("names", []):
            out.append(f"rule\t{r['action']}\t{r.get('errnoRet', 1)}\t{name}\t{len(args)}{a}")
    return out


if __name__ == "__main__":
    cfg = json.load(open(sys.argv[2]))
    lines = {"run": run, "seccomp": seccomp}[sys.argv[1]](cfg)
    if lines:
        print("\n".join(lines))

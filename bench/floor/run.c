/* floor-run: the kernel's own minimum for starting a container and running
 * its program to exit, phase by phase.
 *
 *   floor-run [-n N] PLAN ROOTFS CMD [ARGS...]
 *
 * PLAN (bench/floor/plan.py run CONFIG) lists what config.json asks for:
 *   ns FLAGS                       clone flags (hex) of the new namespaces
 *   mount SRC DST TYPE FLAGS DATA  a mount below ROOTFS (DATA "-" for none)
 *   bind SRC DST FLAGS KIND        a bind mount (KIND f or d), then a
 *                                  remount when FLAGS has more than MS_BIND
 *   cgroup DST                     tmpfs, and each v1 hierarchy bound read-only
 *   dev PATH MODE MAJOR MINOR      mknod below ROOTFS
 *   symlink TARGET PATH
 *   mask PATH / ro PATH / rootro   after pivot_root
 *   hostname NAME
 *   rlimit RES SOFT HARD / caps BOUNDING EFF PERM INH AMB (hex) / nnp
 *
 * One iteration: clone(2) into the namespaces; in the child, make / rslave,
 * bind ROOTFS onto itself, do the mounts and device nodes, pivot_root and
 * detach the old root, masked and read-only paths, hostname, rlimits,
 * capabilities, no_new_privs; a pipe handshake with the parent (the exec
 * barrier); execve(CMD); the parent reaps it. No cgroups (floor-cgroup), no
 * seccomp (floor-seccomp), no state files (floor-state), no config parsing.
 * Prints per iteration: clone, mounts, pivot_root, namespace setup
 * (hostname), process attributes, exec barrier, exec to exit (execve of CMD
 * until the parent has reaped it), total. */
#include "floor.h"
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

enum { T_START, T_CHILD, T_MOUNTS, T_PIVOT, T_POST, T_NS, T_ATTRS, T_BARRIER, T_EXEC, T_REAPED, T_CLONED, T_N };

#define MAXL 512
static char *plan[MAXL][7];
static int nplan;
static char hier[32][256];
static int nhier;

static void mkdirs(const char *path, mode_t mode) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') { *s = 0; mkdir(p, 0755); *s = '/'; }
    mkdir(p, mode);
}

static void touch(const char *path) {
    char d[4096];
    snprintf(d, sizeof d, "%s", path);
    char *s = strrchr(d, '/');
    if (s && s != d) { *s = 0; mkdirs(d, 0755); }
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
}

static void read_plan(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) DIE("open %s", file);
    char line[8192];
    while (fgets(line, sizeof line, f) && nplan < MAXL) {
        line[strcspn(line, "\n")] = 0;
        int k = 0;
        for (char *t = strtok(line, "\t"); t && k < 7; t = strtok(NULL, "\t")) plan[nplan][k++] = strdup(t);
        if (k) nplan++;
    }
    fclose(f);
    /* The v1 hierarchies, for a cgroup mount (read once, outside the timing). */
    FILE *m = fopen("/proc/self/mountinfo", "r");
    while (m && fgets(line, sizeof line, m) && nhier < 32) {
        char mp[256], fstype[64];
        if (sscanf(line, "%*s %*s %*s %*s %255s %*s - %63s", mp, fstype) == 2 && strcmp(fstype, "cgroup") == 0)
            snprintf(hier[nhier++], sizeof hier[0], "%s", mp);
    }
    if (m) fclose(m);
}

static unsigned long hex(const char *s) { return strtoul(s, NULL, 16); }

static void child(const char *root, char **cmd, volatile uint64_t *t, int ready, int go) {
    char p[4096], q[4096];
    t[T_CHILD] = now_ns();
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL)) DIE("rslave /");
    if (mount(root, root, NULL, MS_BIND | MS_REC, NULL)) DIE("bind %s", root);
    for (int i = 0; i < nplan; i++) {
        char **l = plan[i];
        if (!strcmp(l[0], "mount")) {
            snprintf(p, sizeof p, "%s%s", root, l[2]);
            mkdirs(p, 0755);
            if (mount(l[1], p, l[3], hex(l[4]), strcmp(l[5], "-") ? l[5] : NULL)) DIE("mount %s", p);
        } else if (!strcmp(l[0], "bind")) {
            unsigned long fl = hex(l[3]);
            snprintf(p, sizeof p, "%s%s", root, l[2]);
            if (l[4][0] == 'd') mkdirs(p, 0755); else touch(p);
            if (mount(l[1], p, NULL, fl & (MS_BIND | MS_REC), NULL)) DIE("bind %s", p);
            if (fl & ~(MS_BIND | MS_REC) && mount(NULL, p, NULL, fl | MS_REMOUNT, NULL)) DIE("remount %s", p);
        } else if (!strcmp(l[0], "cgroup")) {
            snprintf(p, sizeof p, "%s%s", root, l[1]);
            if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")) DIE("tmpfs %s", p);
            for (int h = 0; h < nhier; h++) {
                snprintf(q, sizeof q, "%s%s/%s", root, l[1], strrchr(hier[h], '/') + 1);
                mkdir(q, 0755);
                if (mount(hier[h], q, NULL, MS_BIND, NULL)) DIE("bind %s", q);
                if (mount(NULL, q, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) DIE("ro %s", q);
            }
            if (mount(NULL, p, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")) DIE("ro %s", p);
        } else if (!strcmp(l[0], "dev")) {
            snprintf(p, sizeof p, "%s%s", root, l[1]);
            if (mknod(p, hex(l[2]), makedev(atoi(l[3]), atoi(l[4]))) && errno != EEXIST) DIE("mknod %s", p);
        } else if (!strcmp(l[0], "symlink")) {
            snprintf(p, sizeof p, "%s%s", root, l[2]);
            if (symlink(l[1], p) && errno != EEXIST) DIE("symlink %s", p);
        }
    }
    t[T_MOUNTS] = now_ns();
    if (chdir(root)) DIE("chdir %s", root);
    if (syscall(SYS_pivot_root, ".", ".")) DIE("pivot_root");
    if (umount2(".", MNT_DETACH)) DIE("detach old root");
    if (chdir("/")) DIE("chdir /");
    t[T_PIVOT] = now_ns();
    for (int i = 0; i < nplan; i++) {
        char **l = plan[i];
        struct stat st;
        if (!strcmp(l[0], "mask")) {
            if (stat(l[1], &st)) continue;
            if (S_ISDIR(st.st_mode)) {
                if (mount("tmpfs", l[1], "tmpfs", MS_RDONLY, NULL)) DIE("mask %s", l[1]);
            } else if (mount("/dev/null", l[1], NULL, MS_BIND, NULL)) DIE("mask %s", l[1]);
        } else if (!strcmp(l[0], "ro")) {
            if (stat(l[1], &st)) continue;
            if (mount(l[1], l[1], NULL, MS_BIND | MS_REC, NULL)) DIE("bind %s", l[1]);
            if (mount(NULL, l[1], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL)) DIE("ro %s", l[1]);
        } else if (!strcmp(l[0], "rootro")) {
            if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL)) DIE("ro /");
        }
    }
    t[T_POST] = now_ns();
    for (int i = 0; i < nplan; i++)
        if (!strcmp(plan[i][0], "hostname") && sethostname(plan[i][1], strlen(plan[i][1]))) DIE("sethostname");
    t[T_NS] = now_ns();
    for (int i = 0; i < nplan; i++) {
        char **l = plan[i];
        if (!strcmp(l[0], "rlimit")) {
            struct rlimit r = { strtoull(l[2], NULL, 10), strtoull(l[3], NULL, 10) };
            if (setrlimit(atoi(l[1]), &r)) DIE("setrlimit %s", l[1]);
        } else if (!strcmp(l[0], "caps")) {
            unsigned long long b = strtoull(l[1], NULL, 16), e = strtoull(l[2], NULL, 16),
                               pm = strtoull(l[3], NULL, 16), in = strtoull(l[4], NULL, 16), a = strtoull(l[5], NULL, 16);
            for (int c = 0; c <= CAP_LAST_CAP; c++)
                if (!(b >> c & 1) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0)) DIE("drop cap %d", c);
            struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
            struct __user_cap_data_struct d[2] = {
                { (uint32_t)e, (uint32_t)pm, (uint32_t)in }, { (uint32_t)(e >> 32), (uint32_t)(pm >> 32), (uint32_t)(in >> 32) } };
            if (syscall(SYS_capset, &h, d)) DIE("capset");
            for (int c = 0; c <= CAP_LAST_CAP; c++)
                if (a >> c & 1) /* refused unless inheritable, as in runc: not fatal */
                    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
        } else if (!strcmp(l[0], "nnp")) {
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) DIE("no_new_privs");
        }
    }
    t[T_ATTRS] = now_ns();
    char b = 1;
    if (write(ready, &b, 1) != 1 || read(go, &b, 1) != 1) DIE("barrier");
    t[T_BARRIER] = now_ns();
    t[T_EXEC] = now_ns();
    execv(cmd[0], cmd);
    DIE("execv %s", cmd[0]);
}

int main(int argc, char **argv) {
    int n = iterations(&argc, &argv);
    if (argc < 4) { fprintf(stderr, "usage: floor-run [-n N] PLAN ROOTFS CMD...\n"); return 2; }
    read_plan(argv[1]);
    const char *root = argv[2];
    char **cmd = &argv[3];
    unsigned long flags = 0;
    for (int i = 0; i < nplan; i++)
        if (!strcmp(plan[i][0], "ns")) flags = hex(plan[i][1]);
    volatile uint64_t *t = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED) DIE("mmap");
    for (int it = 0; it < n; it++) {
        int rp[2], gp[2];
        if (pipe2(rp, O_CLOEXEC) || pipe2(gp, O_CLOEXEC)) DIE("pipe");
        t[T_START] = now_ns();
        pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
        if (pid < 0) DIE("clone");
        if (pid == 0) child(root, cmd, t, rp[1], gp[0]);
        t[T_CLONED] = now_ns();
        close(rp[1]); close(gp[0]);
        char b;
        if (read(rp[0], &b, 1) != 1) { fprintf(stderr, "floor: the child failed before the barrier\n"); return 1; }
        if (write(gp[1], &b, 1) != 1) DIE("barrier");
        int st;
        while (waitpid(pid, &st, 0) < 0)
            if (errno != EINTR) DIE("waitpid");
        t[T_REAPED] = now_ns();
        close(rp[0]); close(gp[1]);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "floor: %s exited with status %#x\n", cmd[0], st); return 1; }
        report("clone", t[T_START], t[T_CLONED]);
        printf("mounts\t%llu\n", (unsigned long long)((t[T_MOUNTS] - t[T_CHILD]) + (t[T_POST] - t[T_PIVOT])));
        report("pivot_root", t[T_MOUNTS], t[T_PIVOT]);
        report("namespace setup", t[T_POST], t[T_NS]);
        report("process attributes", t[T_NS], t[T_ATTRS]);
        report("exec barrier", t[T_ATTRS], t[T_BARRIER]);
        report("exec to exit", t[T_EXEC], t[T_REAPED]);
        report("total", t[T_START], t[T_REAPED]);
    }
    return 0;
}

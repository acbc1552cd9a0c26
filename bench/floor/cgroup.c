/* floor-cgroup: the kernel's own minimum for a container's cgroup, cgroup v1
 * (what this host and the bench give every runtime).
 *
 *   floor-cgroup [-n N] NAME [DEVICE-RULE...]
 *
 * One iteration: mkdir NAME-<i> in every mounted v1 hierarchy (cpuset gets
 * its cpus and mems copied from the parent, or it cannot hold a task); write
 * "a" to devices.deny and each DEVICE-RULE (e.g. "c 1:3 rwm") to
 * devices.allow; a forked child writes 0 to the tasks file of every
 * hierarchy and exits; rmdir every directory. Prints per iteration: create,
 * limits, entry (the child's writes), removal. */
#include "floor.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char hier[32][256];
static int nhier;

static void put(const char *dir, const char *file, const char *val) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0) DIE("open %s", p);
    if (write(fd, val, strlen(val)) < 0) DIE("write %s to %s", val, p);
    close(fd);
}

static void copy_up(const char *dir, const char *file) {
    char p[512], v[4096];
    snprintf(p, sizeof p, "%s/../%s", dir, file);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) DIE("open %s", p);
    ssize_t n = read(fd, v, sizeof v - 1);
    close(fd);
    if (n <= 0) DIE("read %s", p);
    v[n] = 0;
    put(dir, file, v);
}

int main(int argc, char **argv) {
    int n = iterations(&argc, &argv);
    if (argc < 2) { fprintf(stderr, "usage: floor-cgroup [-n N] NAME [DEVICE-RULE...]\n"); return 2; }
    char line[4096];
    FILE *m = fopen("/proc/self/mountinfo", "r");
    while (m && fgets(line, sizeof line, m) && nhier < 32) {
        char mp[200], fstype[64];
        if (sscanf(line, "%*s %*s %*s %*s %199s %*s - %63s", mp, fstype) == 2 && strcmp(fstype, "cgroup") == 0)
            snprintf(hier[nhier++], sizeof hier[0], "%s", mp);
    }
    if (m) fclose(m);
    if (!nhier) { fprintf(stderr, "floor-cgroup: no cgroup v1 hierarchy is mounted\n"); return 1; }
    volatile uint64_t *t = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED) DIE("mmap");
    static char dir[32][8400];
    for (int it = 0; it < n; it++) {
        uint64_t t0 = now_ns();
        for (int h = 0; h < nhier; h++) {
            snprintf(dir[h], sizeof dir[h], "%s/%s-%d", hier[h], argv[1], it);
            if (mkdir(dir[h], 0755)) DIE("mkdir %s", dir[h]);
            if (strstr(hier[h], "cpuset")) { copy_up(dir[h], "cpuset.cpus"); copy_up(dir[h], "cpuset.mems"); }
        }
        uint64_t t1 = now_ns();
        for (int h = 0; h < nhier; h++)
            if (strstr(hier[h], "/devices")) {
                put(dir[h], "devices.deny", "a");
                for (int r = 2; r < argc; r++) put(dir[h], "devices.allow", argv[r]);
            }
        uint64_t t2 = now_ns();
        pid_t pid = fork();
        if (pid < 0) DIE("fork");
        if (pid == 0) {
            t[0] = now_ns();
            for (int h = 0; h < nhier; h++) put(dir[h], "tasks", "0");
            t[1] = now_ns();
            _exit(0);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
            if (errno != EINTR) DIE("waitpid");
        if (!WIFEXITED(st) || WEXITSTATUS(st)) return 1;
        uint64_t t3 = now_ns();
        for (int h = 0; h < nhier; h++)
            while (rmdir(dir[h]))  /* EBUSY until the exited task has left */
                if (errno != EBUSY) DIE("rmdir %s", dir[h]);
        uint64_t t4 = now_ns();
        report("create", t0, t1);
        report("limits", t1, t2);
        report("entry", t[0], t[1]);
        report("removal", t3, t4);
    }
    return 0;
}

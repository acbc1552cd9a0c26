/* floor-state: the kernel's own minimum for a container's state directory:
 * claiming it atomically and removing it at teardown.
 *
 *   floor-state [-n N] ROOT BYTES
 *
 * One iteration, claim: mkdir a private ROOT/.new-<i>, open and flock it,
 * write BYTES of state to state.json.tmp and rename it to state.json, then
 * renameat2(RENAME_NOREPLACE) the directory to ROOT/c-<i> (nobody can see
 * a half-made container, and two creates of one id cannot both win).
 * Removal: unlink state.json and rmdir the directory. All N directories are
 * claimed before the first is removed, as a container's state lives a while
 * before teardown. Prints per iteration: claim, removal. */
#include "floor.h"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/fs.h>

int main(int argc, char **argv) {
    int n = iterations(&argc, &argv);
    if (argc < 3) { fprintf(stderr, "usage: floor-state [-n N] ROOT BYTES\n"); return 2; }
    size_t len = (size_t)atol(argv[2]);
    char *buf = malloc(len + 1);
    memset(buf, 'x', len);
    uint64_t *claim = calloc((size_t)n, sizeof *claim);
    char tmp[4096], dst[4096], f[4200], g[4200];
    for (int it = 0; it < n; it++) {
        snprintf(tmp, sizeof tmp, "%s/.new-%d", argv[1], it);
        snprintf(dst, sizeof dst, "%s/c-%d", argv[1], it);
        uint64_t t0 = now_ns();
        if (mkdir(tmp, 0711)) DIE("mkdir %s", tmp);
        int d = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d < 0 || flock(d, LOCK_EX)) DIE("lock %s", tmp);
        snprintf(f, sizeof f, "%s/state.json.tmp", tmp);
        snprintf(g, sizeof g, "%s/state.json", tmp);
        int fd = open(f, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, buf, len) != (ssize_t)len) DIE("write %s", f);
        close(fd);
        if (rename(f, g)) DIE("rename %s", f);
        if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE)) DIE("renameat2 %s", dst);
        claim[it] = now_ns() - t0;
        close(d);
    }
    for (int it = 0; it < n; it++) {
        snprintf(dst, sizeof dst, "%s/c-%d", argv[1], it);
        snprintf(g, sizeof g, "%s/state.json", dst);
        uint64_t t0 = now_ns();
        if (unlink(g) || rmdir(dst)) DIE("remove %s", dst);
        uint64_t t1 = now_ns();
        report("claim", 0, claim[it]);
        report("removal", t0, t1);
    }
    return 0;
}

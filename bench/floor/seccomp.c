/* floor-seccomp: the minimum for a seccomp profile, with libseccomp as the
 * runtimes use it.
 *
 *   floor-seccomp [-n N] PROFILE
 *
 * PROFILE (bench/floor/plan.py seccomp CONFIG): "default ACTION ERRNO",
 * "arch NAME" lines, and one "rule ACTION ERRNO SYSCALL NARGS [INDEX OP
 * VALUE VALUETWO]..." line a syscall name, as in linux.seccomp.
 * One iteration, in a forked child (a filter cannot be unloaded): build the
 * filter (seccomp_init, seccomp_arch_add, seccomp_rule_add_array; names
 * this kernel does not know are skipped, as runtimes do), then seccomp_load
 * (libseccomp compiles the BPF program here and hands it to the kernel).
 * In a second child: load the BPF program compiled once before the loop,
 * with seccomp(2) alone: what a runtime that caches compiled filters
 * pays. Prints per iteration: rules, compile and load, load of a compiled
 * filter; and once: the BPF program's length in instructions. */
#include "floor.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define MAXR 8192
static char *rl[MAXR][24];
static int nr;

static uint32_t action(const char *a, const char *err) {
    int e = atoi(err);
    if (!strcmp(a, "SCMP_ACT_ALLOW")) return SCMP_ACT_ALLOW;
    if (!strcmp(a, "SCMP_ACT_ERRNO")) return SCMP_ACT_ERRNO(e);
    if (!strcmp(a, "SCMP_ACT_KILL") || !strcmp(a, "SCMP_ACT_KILL_THREAD")) return SCMP_ACT_KILL_THREAD;
    if (!strcmp(a, "SCMP_ACT_KILL_PROCESS")) return SCMP_ACT_KILL_PROCESS;
    if (!strcmp(a, "SCMP_ACT_TRAP")) return SCMP_ACT_TRAP;
    if (!strcmp(a, "SCMP_ACT_LOG")) return SCMP_ACT_LOG;
    if (!strcmp(a, "SCMP_ACT_TRACE")) return SCMP_ACT_TRACE(e);
    fprintf(stderr, "floor-seccomp: unknown action %s\n", a);
    _exit(2);
}

static enum scmp_compare op(const char *o) {
    static const char *n[] = { "", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ" };
    for (int i = 1; i < 8; i++)
        if (!strcmp(o, n[i])) return (enum scmp_compare)i;
    fprintf(stderr, "floor-seccomp: unknown operator %s\n", o);
    _exit(2);
}

static scmp_filter_ctx build(void) {
    scmp_filter_ctx ctx = NULL;
    for (int i = 0; i < nr; i++) {
        char **l = rl[i];
        if (!strcmp(l[0], "default")) {
            ctx = seccomp_init(action(l[1], l[2]));
            if (!ctx) DIE("seccomp_init");
            seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
        } else if (!strcmp(l[0], "arch")) {
            char an[64];
            snprintf(an, sizeof an, "%s", strncmp(l[1], "SCMP_ARCH_", 10) ? l[1] : l[1] + 10);
            for (char *c = an; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
            uint32_t a = seccomp_arch_resolve_name(an);
            if (a && seccomp_arch_add(ctx, a) && seccomp_arch_exist(ctx, a)) DIE("arch %s", l[1]);
        } else if (!strcmp(l[0], "rule")) {
            int nr_sys = seccomp_syscall_resolve_name(l[3]);
            if (nr_sys == __NR_SCMP_ERROR) continue;
            int na = atoi(l[4]);
            struct scmp_arg_cmp a[6];
            for (int k = 0; k < na && k < 6; k++)
                a[k] = (struct scmp_arg_cmp){ (unsigned)atoi(l[5 + 4 * k]), op(l[6 + 4 * k]),
                                              strtoull(l[7 + 4 * k], NULL, 10), strtoull(l[8 + 4 * k], NULL, 10) };
            int r = seccomp_rule_add_array(ctx, action(l[1], l[2]), nr_sys, na, a);
            if (r && r != -EEXIST) { errno = -r; DIE("rule %s", l[3]); }
        }
    }
    if (!ctx) { fprintf(stderr, "floor-seccomp: no default action in the profile\n"); _exit(2); }
    return ctx;
}

int main(int argc, char **argv) {
    int n = iterations(&argc, &argv);
    if (argc < 2) { fprintf(stderr, "usage: floor-seccomp [-n N] PROFILE\n"); return 2; }
    FILE *f = fopen(argv[1], "r");
    if (!f) DIE("open %s", argv[1]);
    char line[4096];
    while (fgets(line, sizeof line, f) && nr < MAXR) {
        line[strcspn(line, "\n")] = 0;
        int k = 0;
        for (char *t = strtok(line, "\t"); t && k < 24; t = strtok(NULL, "\t")) rl[nr][k++] = strdup(t);
        if (k) nr++;
    }
    fclose(f);
    /* The compiled program, once, for the cached-load case. */
    scmp_filter_ctx ctx = build();
    int mfd = memfd_create("bpf", 0);
    if (mfd < 0 || seccomp_export_bpf(ctx, mfd)) DIE("export bpf");
    off_t len = lseek(mfd, 0, SEEK_END);
    struct sock_filter *insns = mmap(NULL, len, PROT_READ, MAP_PRIVATE, mfd, 0);
    if (insns == MAP_FAILED) DIE("mmap bpf");
    struct sock_fprog prog = { (unsigned short)(len / sizeof *insns), insns };
    seccomp_release(ctx);
    printf("bpf instructions\t%u\n", prog.len);
    fflush(stdout);
    volatile uint64_t *t = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    for (int it = 0; it < n; it++) {
        for (int which = 0; which < 2; which++) {
            pid_t pid = fork();
            if (pid < 0) DIE("fork");
            if (pid == 0) {
                t[0] = now_ns();
                if (which == 0) {
                    scmp_filter_ctx c = build();
                    t[1] = now_ns();
                    if (seccomp_load(c)) DIE("seccomp_load");
                } else {
                    t[1] = t[0];
                    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) DIE("seccomp(2)");
                }
                t[2] = now_ns();
                _exit(0);
            }
            int st;
            while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR) DIE("waitpid");
            if (!WIFEXITED(st) || WEXITSTATUS(st)) return 1;
            if (which == 0) {
                report("rules", t[0], t[1]);
                report("compile and load", t[1], t[2]);
            } else {
                report("load of a compiled filter", t[1], t[2]);
            }
        }
    }
    return 0;
}

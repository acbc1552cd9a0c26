/* floor-wake: what handing the CPU to another process costs, on the same
 * CPU and across two (run by hand; docs/performance.md, "Two processes,
 * one CPU"). A parent and a child pass one byte back and forth over two
 * pipes, each pinned to its CPU; before each round the parent sleeps
 * SLEEP_US, so an idle CPU has time to halt, as between a runtime's
 * messages to its init.
 *
 *   floor-wake [-n N] CPU_A CPU_B SLEEP_US
 *
 * Prints "roundtrip<TAB>ns" per iteration (two wake-ups each). */
#include "floor.h"
#include <sched.h>
#include <sys/wait.h>

static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (sched_setaffinity(0, sizeof s, &s)) DIE("pin to CPU %d", cpu);
}

int main(int argc, char **argv) {
    int n = iterations(&argc, &argv);
    if (argc != 4) { fprintf(stderr, "usage: floor-wake [-n N] CPU_A CPU_B SLEEP_US\n"); return 2; }
    int a = atoi(argv[1]), b = atoi(argv[2]), gap = atoi(argv[3]);
    int there[2], back[2];
    if (pipe(there) || pipe(back)) DIE("pipe");
    pid_t pid = fork();
    if (pid < 0) DIE("fork");
    if (pid == 0) {
        close(there[1]);
        pin(b);
        char c;
        while (read(there[0], &c, 1) == 1) if (write(back[1], &c, 1) != 1) _exit(1);
        _exit(0);
    }
    close(there[0]);
    pin(a);
    char c = 'x';
    for (int i = 0; i < n; i++) {
        usleep(gap);
        uint64_t t = now_ns();
        if (write(there[1], &c, 1) != 1 || read(back[0], &c, 1) != 1) DIE("round trip");
        report("roundtrip", t, now_ns());
    }
    close(there[1]);
    waitpid(pid, NULL, 0);
    return 0;
}

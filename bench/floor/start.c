/* floor-start: what starting a process costs on this host, from vfork to
 * reaped (run by hand; docs/performance.md, "Two processes, one CPU").
 *
 *   floor-start [-n N] PROGRAM
 *
 * Prints "start<TAB>ns" per iteration. For the comparison in the docs, a
 * static glibc program that returns from main, and one that makes the exit
 * system call from _start, without any C library:
 *
 *   printf 'int main(){return 0;}\n' > nop.c; gcc -O2 -static-pie -o nop-glibc nop.c
 *   printf '.globl _start\n_start: mov $60,%%eax\n xor %%edi,%%edi\n syscall\n' > nop.s
 *   gcc -nostdlib -static -o nop-asm nop.s
 */
#include "floor.h"
#include <sys/wait.h>

int main(int argc, char **argv) {
    int n = iterations(&argc, &argv);
    if (argc != 2) { fprintf(stderr, "usage: floor-start [-n N] PROGRAM\n"); return 2; }
    for (int i = 0; i < n; i++) {
        uint64_t a = now_ns();
        pid_t pid = vfork();
        if (pid == 0) { execl(argv[1], argv[1], (char *)NULL); _exit(127); }
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) < 0) DIE("start %s", argv[1]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) == 127) { fprintf(stderr, "floor-start: %s did not run\n", argv[1]); return 1; }
        report("start", a, now_ns());
    }
    return 0;
}

/* Single-step one process (not its children) and print, in the order they
 * first run, into OUT, the addresses of the 16-byte code chunks it executes inside its
 * own executable (offsets from the executable's first mapping, which for a
 * static PIE are its link-time addresses). scripts/link-order.sh turns them
 * into symbols. Slow (a ptrace stop per instruction) and only for that. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNKS (1UL << 22) /* 64 MiB of code in 16-byte chunks */
static unsigned char seen[CHUNKS];

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: trace OUT PROGRAM [ARGS...]\n");
    return 2;
  }
  FILE *out = fopen(argv[1], "we");
  if (!out) {
    perror(argv[1]);
    return 1;
  }
  argv++;
  pid_t p = fork();
  if (p < 0) {
    perror("fork");
    return 1;
  }
  if (p == 0) {
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    execv(argv[1], argv + 1);
    _exit(127);
  }
  int st;
  if (waitpid(p, &st, 0) < 0 || !WIFSTOPPED(st)) {
    fprintf(stderr, "trace: %s did not start\n", argv[1]);
    return 1;
  }
  /* The executable's first mapping is its base. */
  char path[64], line[4096];
  snprintf(path, sizeof path, "/proc/%d/maps", p);
  FILE *m = fopen(path, "r");
  unsigned long base = 0, lo, hi;
  while (m && fgets(line, sizeof line, m))
    if (!base && strstr(line, argv[1]) && sscanf(line, "%lx-%lx", &lo, &hi) == 2)
      base = lo;
  if (m)
    fclose(m);
  if (!base) {
    fprintf(stderr, "trace: no mapping of %s\n", argv[1]);
    return 1;
  }
  int sig = 0;
  for (;;) {
    if (ptrace(PTRACE_SINGLESTEP, p, 0, (void *)(long)sig) < 0)
      break;
    if (waitpid(p, &st, 0) < 0 || WIFEXITED(st) || WIFSIGNALED(st))
      break;
    /* Pass on every signal but the step's own trap. */
    sig = WSTOPSIG(st) == SIGTRAP ? 0 : WSTOPSIG(st);
    struct user_regs_struct r;
    if (ptrace(PTRACE_GETREGS, p, 0, &r) < 0)
      break;
    unsigned long c = (r.rip - base) >> 4;
    if (r.rip >= base && c < CHUNKS && !seen[c]) {
      seen[c] = 1;
      fprintf(out, "%lx\n", c << 4);
    }
  }
  if (fclose(out) != 0) {
    perror("trace: write");
    return 1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

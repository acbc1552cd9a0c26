/* Single-step a process and the children it clones (through their exec of
 * the same executable, as the runtime's init is: it execs a read-only copy
 * of the runtime) and print, in the order they first run, into OUT, the
 * addresses of the 16-byte code chunks executed inside the executable
 * (offsets from its first mapping, which for a static PIE are its
 * link-time addresses). A process that execs anything else (the
 * container's program) is let go. scripts/link-order.sh turns the
 * addresses into symbols. Slow (a ptrace stop per instruction) and only for
 * that. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNKS (1UL << 22) /* 64 MiB of code in 16-byte chunks */
#define MAXT 64
static unsigned char seen[CHUNKS];
static struct { pid_t pid; unsigned long base; } t[MAXT];
static struct stat exe;

/* The first mapping of the executable in pid's address space (0: it runs
 * another program). */
static unsigned long base_of(pid_t pid) {
  char path[64], line[4096];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  FILE *m = fopen(path, "r");
  unsigned long base = 0, lo, hi, ino;
  unsigned maj, mnr;
  while (m && fgets(line, sizeof line, m))
    if (sscanf(line, "%lx-%lx %*s %*s %x:%x %lu", &lo, &hi, &maj, &mnr, &ino) == 5 &&
        ino == exe.st_ino && makedev(maj, mnr) == exe.st_dev) {
      base = lo;
      break;
    }
  if (m)
    fclose(m);
  return base;
}

static int slot(pid_t pid) {
  for (int i = 0; i < MAXT; i++)
    if (t[i].pid == pid)
      return i;
  for (int i = 0; i < MAXT; i++)
    if (!t[i].pid) {
      t[i].pid = pid;
      t[i].base = 0;
      return i;
    }
  return -1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: trace OUT PROGRAM [ARGS...]\n");
    return 2;
  }
  FILE *out = fopen(argv[1], "we");
  if (!out || stat(argv[2], &exe) < 0) {
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
  int st, code = 1;
  if (waitpid(p, &st, 0) < 0 || !WIFSTOPPED(st)) {
    fprintf(stderr, "trace: %s did not start\n", argv[1]);
    return 1;
  }
  ptrace(PTRACE_SETOPTIONS, p, 0,
         (void *)(PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACEEXEC));
  t[slot(p)].base = base_of(p);
  if (!t[0].base) {
    fprintf(stderr, "trace: no mapping of %s\n", argv[1]);
    return 1;
  }
  ptrace(PTRACE_SINGLESTEP, p, 0, 0);
  for (;;) {
    pid_t w = waitpid(-1, &st, __WALL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    int i = slot(w);
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      if (w == p)
        code = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
      if (i >= 0)
        t[i].pid = 0;
      continue;
    }
    if (i < 0) {
      ptrace(PTRACE_DETACH, w, 0, 0);
      continue;
    }
    int sig = WSTOPSIG(st), ev = st >> 16;
    if (ev == PTRACE_EVENT_CLONE || ev == PTRACE_EVENT_FORK || ev == PTRACE_EVENT_VFORK) {
      unsigned long c = 0;
      ptrace(PTRACE_GETEVENTMSG, w, 0, &c);
      int j = slot((pid_t)c);
      if (j >= 0)
        t[j].base = t[i].base; /* a copy (or a borrower) of our memory */
      sig = 0;
    } else if (ev == PTRACE_EVENT_EXEC) {
      t[i].base = base_of(w);
      if (!t[i].base) { /* another program: not ours to trace */
        t[i].pid = 0;
        ptrace(PTRACE_DETACH, w, 0, 0);
        continue;
      }
      sig = 0;
    } else if (sig == SIGTRAP || sig == SIGSTOP) {
      /* The step's own trap, or a new child's first stop. */
      sig = 0;
    }
    if (t[i].base) {
      struct user_regs_struct r;
      if (ptrace(PTRACE_GETREGS, w, 0, &r) == 0) {
        unsigned long c = (r.rip - t[i].base) >> 4;
        if (r.rip >= t[i].base && c < CHUNKS && !seen[c]) {
          seen[c] = 1;
          fprintf(out, "%lx\n", c << 4);
        }
      }
    }
    ptrace(PTRACE_SINGLESTEP, w, 0, (void *)(long)sig);
  }
  if (fclose(out) != 0) {
    perror("trace: write");
    return 1;
  }
  return code;
}

/* Single-step a process and print, in the order they first run, into OUT,
 * the addresses of the 16-byte code chunks it executes inside its own
 * executable (offsets from the executable's first mapping, which for a
 * static PIE are its link-time addresses). scripts/link-order.sh turns them
 * into symbols. Slow (a ptrace stop per instruction) and only for that.
 *
 * With -f, the processes it clones are stepped too, for as long as they run
 * the same executable: the init, which re-executes the runtime (through a
 * read-only mount of it, the same file), is followed through that exec and
 * let go when it execs anything else (the container's program). Only for
 * commands whose every process ends before the command does (run, exec): a
 * process still stepped when the tracer exits would die of its trap. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNKS (1UL << 22) /* 64 MiB of code in 16-byte chunks */
static unsigned char seen[CHUNKS];

#define MAXP 64
static struct {
  pid_t pid;
  unsigned long base;
} procs[MAXP];

static int slot(pid_t p) {
  for (int i = 0; i < MAXP; i++)
    if (procs[i].pid == p)
      return i;
  return -1;
}

static int add(pid_t p, unsigned long base) {
  int i = slot(0);
  if (i < 0) {
    fprintf(stderr, "trace: more than %d processes\n", MAXP);
    exit(1);
  }
  procs[i].pid = p;
  procs[i].base = base;
  return i;
}

/* The first mapping of the file with inode INO in P, or 0. */
static unsigned long base_of(pid_t p, ino_t ino) {
  char path[64], line[4096];
  snprintf(path, sizeof path, "/proc/%d/maps", p);
  FILE *m = fopen(path, "r");
  unsigned long base = 0, lo, hi, off, inode;
  char perms[8], dev[16];
  while (m && fgets(line, sizeof line, m))
    if (sscanf(line, "%lx-%lx %7s %lx %15s %lu", &lo, &hi, perms, &off, dev, &inode) == 6 &&
        inode == ino) {
      base = lo;
      break;
    }
  if (m)
    fclose(m);
  return base;
}

/* The inode of P's executable, or 0. */
static ino_t exe_of(pid_t p) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/exe", p);
  return stat(path, &st) == 0 ? st.st_ino : 0;
}

int main(int argc, char **argv) {
  int follow = argc > 1 && strcmp(argv[1], "-f") == 0;
  if (follow) {
    argv++;
    argc--;
  }
  if (argc < 3) {
    fprintf(stderr, "usage: trace [-f] OUT PROGRAM [ARGS...]\n");
    return 2;
  }
  FILE *out = fopen(argv[1], "we");
  if (!out) {
    perror(argv[1]);
    return 1;
  }
  argv += 2;
  struct stat self;
  if (stat(argv[0], &self) != 0) {
    perror(argv[0]);
    return 1;
  }
  pid_t root = fork();
  if (root < 0) {
    perror("fork");
    return 1;
  }
  if (root == 0) {
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    execv(argv[0], argv);
    _exit(127);
  }
  int st;
  if (waitpid(root, &st, 0) < 0 || !WIFSTOPPED(st)) {
    fprintf(stderr, "trace: %s did not start\n", argv[0]);
    return 1;
  }
  unsigned long base = base_of(root, self.st_ino);
  if (!base) {
    fprintf(stderr, "trace: no mapping of %s\n", argv[0]);
    return 1;
  }
  add(root, base);
  if (follow &&
      ptrace(PTRACE_SETOPTIONS, root, 0,
             (void *)(long)(PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
                            PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL)) < 0) {
    perror("trace: PTRACE_SETOPTIONS");
    return 1;
  }
  int rc = 1;
  pid_t p = root;
  int sig = 0;
  for (;;) {
    /* Step the process that stopped; children that are let go or exit
     * leave the table. */
    if (p > 0 && ptrace(PTRACE_SINGLESTEP, p, 0, (void *)(long)sig) < 0 && errno != ESRCH)
      perror("trace: PTRACE_SINGLESTEP");
    p = waitpid(follow ? -1 : root, &st, __WALL);
    if (p < 0)
      break;
    sig = 0;
    int i = slot(p);
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      if (i >= 0)
        procs[i].pid = 0;
      if (p == root) {
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
        break;
      }
      p = 0;
      continue;
    }
    int event = st >> 16;
    if (i < 0) {
      /* A new child's first stop (its SIGSTOP, not passed on): it runs in
       * its parent's memory or a copy of it, so the same mapping. */
      unsigned long b = base_of(p, self.st_ino);
      if (!b) {
        ptrace(PTRACE_DETACH, p, 0, 0);
        p = 0;
      } else {
        add(p, b);
      }
      continue;
    }
    if (event == PTRACE_EVENT_EXEC) {
      /* The same executable again (the init's re-exec), or let go. */
      ino_t ino = exe_of(p);
      unsigned long b = ino == self.st_ino ? base_of(p, ino) : 0;
      if (!b) {
        ptrace(PTRACE_DETACH, p, 0, 0);
        procs[i].pid = 0;
        p = 0;
        continue;
      }
      procs[i].base = b;
    } else if (event == 0 && WSTOPSIG(st) != SIGTRAP) {
      /* Pass on every signal but the step's own trap. */
      sig = WSTOPSIG(st);
    }
    struct user_regs_struct r;
    if (ptrace(PTRACE_GETREGS, p, 0, &r) < 0)
      continue;
    unsigned long c = (r.rip - procs[i].base) >> 4;
    if (r.rip >= procs[i].base && c < CHUNKS && !seen[c]) {
      seen[c] = 1;
      fprintf(out, "%lx\n", c << 4);
    }
  }
  if (fclose(out) != 0) {
    perror("trace: write");
    return 1;
  }
  return rc;
}

/* floor.h - shared by the floor programs of bench/floor/.
 *
 * A floor program does, with raw system calls and nothing else, what the
 * kernel must do for one phase of a container's start, and prints how long
 * each part took: one line "phase<TAB>nanoseconds" per part and iteration.
 * Whatever a runtime spends above that on the same phase is the runtime's
 * own cost. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static inline void report(const char *phase, uint64_t a, uint64_t b) {
    printf("%s\t%llu\n", phase, (unsigned long long)(b - a));
}

#define DIE(...) do { fprintf(stderr, "floor: " __VA_ARGS__); fprintf(stderr, ": %s\n", strerror(errno)); _exit(127); } while (0)

/* Iterations from "-n N" as the first two arguments (default 1). */
static inline int iterations(int *argc, char ***argv) {
    int n = 1;
    if (*argc > 2 && strcmp((*argv)[1], "-n") == 0) {
        n = atoi((*argv)[2]);
        *argc -= 2;
        *argv += 2;
    }
    return n < 1 ? 1 : n;
}

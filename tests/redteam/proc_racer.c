/*
 * proc_racer: runs as a container's init with CAP_SYS_PTRACE and races every
 * other process that appears in its pid namespace, the way a hostile
 * container would race a runtime that lets a process in before it has left
 * the host (issue 11, finding 1).
 *
 * For every pid other than its own it tries, as fast as it can:
 *   - to read SECRET through /proc/PID/root (a file that exists only on the host),
 *   - to read CWDDIR/secret through /proc/PID/cwd (CWDDIR is a directory in
 *     the runtime's host cwd),
 *   - to create DROPDIR/escaped-PID through /proc/PID/root and
 *     CWDDIR/escaped-PID through /proc/PID/cwd (a file created on the host).
 * Every path names a directory that exists only on the host, so none of
 * these can succeed inside the container, and the racer never writes there.
 *   - to read SECRET through every descriptor the process holds: a
 *     directory outside the container leads to the host's "/" by "..",
 *   - and it records the invariant itself: a pid whose /proc/PID/root is not
 *     the container's root (compared by device and inode with its own "/").
 * Each finding is printed once per pid and kind as "LEAK <kind> pid=<n>".
 * It prints "ready" once it scans, then "scanned <n>" every 4096 scans.
 *
 * usage: proc_racer SECRET CWDDIR DROPDIR
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXSEEN 65536
static unsigned char seen[MAXSEEN];

static void say(const char *kind, int pid, unsigned char bit)
{
	char buf[128];
	int n;
	if (pid < MAXSEEN) {
		if (seen[pid] & bit)
			return;
		seen[pid] |= bit;
	}
	n = snprintf(buf, sizeof buf, "LEAK %s pid=%d\n", kind, pid);
	if (write(1, buf, n) < 0)
		_exit(3);
}

/* Through each descriptor of pid, climb to the top and down to secret. */
static void fds_lead_out(int pid, const char *secret)
{
	char d[64], p[4096];
	DIR *fds;
	struct dirent *e;
	snprintf(d, sizeof d, "/proc/%d/fd", pid);
	fds = opendir(d);
	if (!fds)
		return;
	while ((e = readdir(fds)) != NULL) {
		int fd;
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s/../../../../../../../../../../../../../../..%s",
			 d, e->d_name, secret);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			say("read-through-fd", pid, 32);
			close(fd);
		}
	}
	closedir(fds);
}

int main(int argc, char **argv)
{
	struct stat me, st;
	char p[4096];
	unsigned long scans = 0;
	int self = getpid();
	if (argc != 4) {
		fprintf(stderr, "usage: proc_racer SECRET CWDDIR DROPDIR\n");
		return 2;
	}
	if (stat("/", &me) != 0)
		return 2;
	if (write(1, "ready\n", 6) < 0)
		return 3;
	for (;;) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		if (!d)
			return 4;
		while ((e = readdir(d)) != NULL) {
			int pid = atoi(e->d_name), fd;
			if (pid <= 0 || pid == self)
				continue;
			snprintf(p, sizeof p, "/proc/%d/root%s", pid, argv[1]);
			fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				char b[64];
				if (read(fd, b, sizeof b) > 0)
					say("read-root", pid, 1);
				close(fd);
			}
			snprintf(p, sizeof p, "/proc/%d/cwd/%s/secret", pid, argv[2]);
			fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				say("read-cwd", pid, 2);
				close(fd);
			}
			snprintf(p, sizeof p, "/proc/%d/root%s/escaped-%d", pid, argv[3], pid);
			fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
			if (fd >= 0) {
				say("create-root", pid, 4);
				close(fd);
			}
			snprintf(p, sizeof p, "/proc/%d/cwd/%s/escaped-%d", pid, argv[2], pid);
			fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
			if (fd >= 0) {
				say("create-cwd", pid, 8);
				close(fd);
			}
			fds_lead_out(pid, argv[1]);
			snprintf(p, sizeof p, "/proc/%d/root/", pid);
			if (stat(p, &st) == 0 && (st.st_dev != me.st_dev || st.st_ino != me.st_ino))
				say("root-outside", pid, 16);
		}
		closedir(d);
		if ((++scans & 4095) == 0) {
			int n = snprintf(p, sizeof p, "scanned %lu\n", scans);
			if (write(1, p, n) < 0)
				return 3;
		}
	}
}

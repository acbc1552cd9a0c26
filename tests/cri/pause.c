/* pause: the pod sandbox's process, as Kubernetes' pause image runs it.
 *
 * It holds the pod's namespaces open and does nothing else: it waits for
 * signals, reaps every child that is handed to it (with shareProcessNamespace
 * it is pid 1 of the whole pod, so orphans of every container land here) and
 * exits 0 on SIGINT or SIGTERM. Built with gcc -static into the sandbox image
 * that the CRI test imports as containerd's sandbox_image.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void shutdown_on(int sig)
{
	(void)sig;
	_exit(0);
}

static void reap(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

static void on(int sig, void (*fn)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) != 0) {
		perror("pause: sigaction");
		_exit(2);
	}
}

int main(void)
{
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not pid 1, orphans are not reaped here\n");
	on(SIGINT, shutdown_on, 0);
	on(SIGTERM, shutdown_on, 0);
	on(SIGCHLD, reap, SA_NOCLDSTOP | SA_RESTART);
	for (;;)
		pause();
}

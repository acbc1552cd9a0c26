/* seccomp-probe: is a syscall that engine default seccomp profiles deny
 * refused inside the container?
 *
 * personality(ADDR_NO_RANDOMIZE) is allowed to any process by the kernel,
 * but Docker's, Podman's and containerd's default profiles only allow a few
 * persona values (0, 8, 0x20000, 0x20008, 0xffffffff). So it succeeds when
 * no profile is loaded and fails (EPERM or ENOSYS) when the profile is
 * enforced. Built statically and put into the busybox test image.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	long r = syscall(SYS_personality, 0x0040000UL);
	if (r == -1) {
		printf("personality(ADDR_NO_RANDOMIZE): denied: %s\n", strerror(errno));
		return 1;
	}
	printf("personality(ADDR_NO_RANDOMIZE): allowed\n");
	return 0;
}

/* vm-init: the /init of the cold-boot floor (bench/vm-run.sh): the guest
 * kernel's own boot, to its first process, which powers the VM off at
 * once. A VM-mode start that restores a template is compared with this. */
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
    reboot(RB_POWER_OFF);
    return 1;
}

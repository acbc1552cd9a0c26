#!/bin/sh
# Usage: scripts/mk-rootfs.sh DIR
# Builds a minimal root filesystem from Debian's busybox-static in DIR:
# /bin/busybox with one symlink per applet, /etc/passwd and /etc/group, and
# the empty directories a container expects. Idempotent; installs
# busybox-static with apt-get when it is missing.
set -eu
d=${1:?usage: mk-rootfs.sh DIR}
if [ ! -x /bin/busybox ] || ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
  if ! dpkg -s busybox-static >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 busybox-static >/dev/null
  fi
fi
if [ -x "$d/bin/busybox" ] && cmp -s /bin/busybox "$d/bin/busybox"; then
  exit 0
fi
tmp="$d.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"/bin "$tmp"/etc "$tmp"/proc "$tmp"/sys "$tmp"/dev "$tmp"/tmp "$tmp"/root "$tmp"/var/tmp "$tmp"/home "$tmp"/usr
cp /bin/busybox "$tmp/bin/busybox"
for a in $("$tmp/bin/busybox" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$tmp/bin/$a"
done
ln -sf bin "$tmp/sbin"
ln -sf ../bin "$tmp/usr/bin"
ln -sf ../bin "$tmp/usr/sbin"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$tmp/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' > "$tmp/etc/group"
printf 'nano-sandbox\n' > "$tmp/etc/hostname"
chmod 1777 "$tmp/tmp" "$tmp/var/tmp"
rm -rf "$d"
mv "$tmp" "$d"

#!/bin/sh
# PID 1 of a lab guest (packed into the initramfs by guest_image.py).
# Kernel command line: xdrs.kind=busy|idle.
#   idle: prints "tick N" on the serial console every second and writes it to its iSCSI disk.
#   busy: the same, plus a shell loop that keeps its vCPU (and so one host CPU under TCG) busy.
# It prints the "xdrs-guest: boot" line once per boot, so a reboot shows in the console log.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# The cloud kernel builds virtio as modules; load the ones the iSCSI-backed disk needs.
while read -r m; do
    insmod "/lib/modules/$m.ko" || echo "xdrs-guest: insmod $m failed"
done </lib/modules/load-order
# The disk shows up asynchronously after the driver binds.
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done

kind=idle
read -r cmdline </proc/cmdline
for arg in $cmdline; do
    case "$arg" in xdrs.kind=*) kind="${arg#xdrs.kind=}" ;; esac
done
disk=none
[ -b /dev/vda ] && disk="/dev/vda $(cat /sys/block/vda/size) sectors"
echo "xdrs-guest: boot kind=$kind disk=$disk"

if [ "$kind" = busy ]; then
    (while :; do :; done) &
fi

n=0
while :; do
    n=$((n + 1))
    echo "tick $n"
    [ -b /dev/vda ] && echo "tick $n" | dd of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null
    sleep 1
done

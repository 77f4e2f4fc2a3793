#!/bin/sh
# PID 1 of a Xen lab PV guest (packed into its initramfs by tests/xenlab/build.py).
# Kernel command line: xdrs.kind=idle|busy|half.
#   idle: prints "tick N" on its console (hvc0, which xenconsoled logs in dom0) every second;
#   busy: the same, plus a shell loop that keeps its vCPU busy;
#   half: the loop runs one second in two (about half a vCPU).
# With a disk (xvda), each tick is also written to its first sector.
# "xdrs-guest: boot" is printed once per boot, so a reboot shows in the console log.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev  # a background job's stdin is /dev/null
kind=idle
read -r cmdline </proc/cmdline
for arg in $cmdline; do
    case "$arg" in xdrs.kind=*) kind="${arg#xdrs.kind=}" ;; esac
done
# A guest with a disk (xvda, e.g. an iSCSI LUN the host logged in to) writes each tick to it.
insmod /lib/modules/xen-blkfront.ko 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/xvda ] && break; sleep 0.2; done
disk=none
[ -b /dev/xvda ] && disk=/dev/xvda
echo "xdrs-guest: boot kind=$kind disk=$disk"
case "$kind" in
    busy) (while :; do :; done) & ;;
    half) (while :; do timeout 1 sh -c 'while :; do :; done'; sleep 1; done) & ;;
esac
n=0
while :; do
    n=$((n + 1))
    echo "tick $n"
    [ "$disk" = none ] || echo "tick $n" | dd of="$disk" bs=512 count=1 conv=sync,fsync 2>/dev/null
    sleep 1
done

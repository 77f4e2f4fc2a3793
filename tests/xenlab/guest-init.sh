#!/bin/busybox sh
# PID 1 of a Xen lab PV guest (packed into its initramfs by tests/xenlab/build.py).
# Kernel command line: xdrs.kind=idle|busy|half.
#   idle: prints "tick N" on its console (hvc0, which xenconsoled logs in dom0) every second;
#   busy: the same, plus a shell loop that keeps its vCPU busy;
#   half: the loop runs one second in two (about half a vCPU).
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
echo "xdrs-guest: boot kind=$kind"
case "$kind" in
    busy) (while :; do :; done) & ;;
    half) (while :; do timeout 1 sh -c 'while :; do :; done'; sleep 1; done) & ;;
esac
n=0
while :; do
    n=$((n + 1))
    echo "tick $n"
    sleep 1
done

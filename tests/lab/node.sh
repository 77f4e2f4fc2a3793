#!/usr/bin/env bash
# Boots one lab node. lab.py runs this inside the node's own network, mount and UTS namespaces
# (hypervisors also get a cgroup namespace), as the child of the node's anchor process, with
# NODE, NODE_ROLE, NODE_DIR, NODE_ADDR (and LAB_IQN on the storage node) in the environment.
# Everything it mounts is seen by this node only; it exits once the node's daemons answer.
# `node.sh start-libvirtd` starts a hypervisor's libvirtd again after Lab.stop_libvirtd().
set -euo pipefail
cd "$NODE_DIR"

# Wait up to 20 s for a command to succeed.
wait_for() {
    local what=$1; shift
    for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "node.sh: $what did not come up on $NODE" >&2
    return 1
}

start_libvirtd() {
    libvirtd -d -l -p /run/libvirt/libvirtd.pid
    wait_for libvirtd virsh -c qemu:///system uri
}

if [[ ${1:-boot} == start-libvirtd ]]; then
    # Run through nsenter, already in the node's namespaces (its cgroup namespace too) but not in
    # its cgroups: join them, so libvirt finds its guests' cgroups where it left them.
    for procs in /sys/fs/cgroup/*/cgroup.procs; do echo $$ >"$procs"; done
    start_libvirtd
    exit 0
fi

hostname "$NODE"

if [[ -s cgroups ]]; then
    # `ip netns exec` remounted /sys, hiding the cgroup mounts. Mount each hierarchy again:
    # inside this cgroup namespace it is rooted at the node's own subtree, where libvirt puts its guests.
    mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
    while read -r dir opts; do
        mkdir -p "/sys/fs/cgroup/$dir"
        mount -t cgroup -o "$opts" cgroup "/sys/fs/cgroup/$dir"
    done <cgroups
fi

# Per-node copies over the machine's directories (lines: "source target").
while read -r src dest; do
    [[ -e $dest ]] || mkdir -p "$dest"  # a mount point the machine lacks, e.g. /var/lib/xen-drs
    mount --bind "$src" "$dest"
done <mounts

start_sshd() {
    mkdir -p /run/sshd  # sshd's privilege separation directory
    /usr/sbin/sshd -f "$NODE_DIR/sshd_config" -E "$NODE_DIR/sshd.log"
    wait_for sshd test -s "$NODE_DIR/sshd.pid"
}

case $NODE_ROLE in
hv)
    virtlogd -d -p /run/libvirt/virtlogd.pid
    start_libvirtd
    start_sshd
    ;;
san)
    # tgtd ignores SIGTERM: lab.py stops it with SIGKILL, by PID.
    tgtd -f --iscsi "portal=$NODE_ADDR:3260" >"$NODE_DIR/tgtd.log" 2>&1 &
    echo $! >"$NODE_DIR/tgtd.pid"
    wait_for tgtd tgtadm --lld iscsi --mode target --op show
    tgtadm --lld iscsi --mode target --op new --tid 1 --targetname "$LAB_IQN"
    tgtadm --lld iscsi --mode target --op bind --tid 1 --initiator-address ALL
    start_sshd
    ;;
ctl) ;;
*)
    echo "node.sh: unknown role '$NODE_ROLE'" >&2
    exit 2
    ;;
esac
echo "node.sh: $NODE up"

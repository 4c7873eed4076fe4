#!/bin/sh
# A pipework-style attach, the way containers were wired before runtimes had hooks: one
# iproute2 process per step, the container's end created in the host namespace and then
# moved into the container's. Measured by weave-bench as a peer; not used by weave-hook.
#
# usage: pipework-style.sh BRIDGE PID ADDRESS/PREFIX HOST_IFNAME (the bridge exists and is up)
set -eu
bridge=$1 pid=$2 addr=$3 host_if=$4
guest_if="${host_if}g"
netns="--net=/proc/$pid/ns/net"

ip link add "$host_if" type veth peer name "$guest_if"
ip link set "$host_if" master "$bridge"
ip link set "$host_if" up
ip link set "$guest_if" netns "$pid"
nsenter "$netns" ip link set "$guest_if" name eth1
nsenter "$netns" ip addr add "$addr" dev eth1
nsenter "$netns" ip link set eth1 up

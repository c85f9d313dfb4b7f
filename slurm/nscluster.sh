#!/usr/bin/env bash
# A multi-node cluster on one Linux box: network namespaces as nodes.
#
#   nscluster.sh up [N]          create N nodes (default 2): a bridge with the head's
#                                address, one namespace per node with its own IP
#   nscluster.sh down            remove them (safe to run twice, or after a crash)
#   nscluster.sh hosts           print "name ip" for each node
#   nscluster.sh HOST CMD...     the launchers' remote agent, called as ssh would be (Open MPI:
#                                --mca plm_rsh_agent <this file>; Hydra: -launcher-exec):
#                                run CMD inside HOST's namespace, with HOST as hostname
#   nscluster.sh mpirun-flags    the Open MPI flags that launch across the nodes
#
# Needs root and iproute2. Uses only the private subnet below (MPIDIST_NS_NET,
# default 10.213.77): the head (bridge) is .1, node i is .(10+i). Node names are
# ${MPIDIST_NS_PREFIX:-mdn}1..N. Each command started by `agent` gets a fresh UTS
# namespace, so gethostname() on a node says its name, as on a real cluster.
set -euo pipefail
NET="${MPIDIST_NS_NET:-10.213.77}"
PREFIX="${MPIDIST_NS_PREFIX:-mdn}"
BRIDGE="${PREFIX}br0"
STATE="/run/mpidist-nscluster-${PREFIX}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

nodes() { [ -f "$STATE/hosts" ] && cat "$STATE/hosts" || true; }

down() {
    # Everything of ours, also what a crashed run left without a state file.
    local ours
    ours="$( (nodes | awk '{print $1}'; ip netns list 2>/dev/null | awk '{print $1}' |
              grep -E "^${PREFIX}[0-9]+$" || true) | sort -u)"
    for ns in $ours; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do  # killed processes can hold the namespace briefly
            ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
            [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
            sleep 0.2
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    for link in $(ip -o link show 2>/dev/null | grep -oE "v${PREFIX}[0-9]+" | sort -u || true); do
        ip link del "$link" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -rf "$STATE"
}

up() {
    local n="${1:-2}"
    down
    mkdir -p "$STATE"
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for i in $(seq 1 "$n"); do
        local ns="$PREFIX$i" ip="$NET.$((10 + i))"
        ip netns add "$ns"
        ip link add "v$ns" type veth peer name eth0 netns "$ns"
        ip link set "v$ns" master "$BRIDGE" up
        ip -n "$ns" addr add "$ip/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        echo "$ns $ip" >> "$STATE/hosts"
    done
}

agent() {
    local host="$1"; shift
    local ns
    ns="$(nodes | awk -v h="$host" '$1 == h || $2 == h {print $1}')"
    if [ -z "$ns" ]; then echo "nscluster: unknown node $host" >&2; exit 1; fi
    # "$*" is the shell command line mpirun built for its daemon (it may begin
    # with "PATH=...; export PATH;"), as ssh would hand it to the remote shell.
    exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    hosts) nodes ;;
    mpirun-flags)
        # keepalive: notice a node cut off the network in ~11 s, not Open MPI's 480 s,
        # so the job ends (and rank 0 reports) instead of waiting on a lost daemon.
        echo "--mca plm_rsh_agent $HERE/nscluster.sh --mca btl tcp,self" \
             "--mca btl_tcp_if_include $NET.0/24 --mca oob_tcp_if_include $NET.0/24" \
             "--mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2" \
             "--mca oob_tcp_keepalive_probes 3" ;;
    *)
        # Hydra (MPICH, Intel MPI) calls its launcher as ssh: options before the host
        while [ "$#" -gt 1 ]; do
            case "$1" in
                -o|-p|-l|-i|-F) shift 2 ;;
                -*) shift ;;
                *) break ;;
            esac
        done
        if [ -n "${1:-}" ] && nodes | awk -v h="$1" '$1 == h || $2 == h {f=1} END {exit !f}'
        then agent "$@"
        else sed -n '2,16p' "$0"; exit 2
        fi ;;
esac

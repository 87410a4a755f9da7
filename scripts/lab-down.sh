#!/usr/bin/env bash
# Stops what scripts/lab-up.sh started: the port-forward and, unless --keep-cluster, the kind
# cluster (with it the lab's database, which lives on the node). Docker keeps running.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

CLUSTER=${LAB_CLUSTER:-backstage-lab}

usage() {
  echo "usage: scripts/lab-down.sh [--keep-cluster] [--cluster NAME]"
}

stop_port_forward() {
  local pidfile=${LAB_RUN_DIR:-$TOOLS_DIR/run}/port-forward.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    log "stopped the port-forward"
  fi
  rm -f "$pidfile"
}

delete_cluster() { "$REPO_ROOT/scripts/kind/cluster.sh" delete "$CLUSTER"; }

main() {
  local keep=0
  while [ $# -gt 0 ]; do
    case $1 in
      --keep-cluster) keep=1 ;;
      --cluster) CLUSTER=${2:?--cluster needs a name}; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
    shift
  done
  step "port-forward" stop_port_forward
  if [ "$keep" = 0 ]; then step "delete kind cluster $CLUSTER" delete_cluster; fi
}

main "$@"

# shellcheck shell=bash
# Shared helpers for the scripts in scripts/: logging with timings, pinned versions, paths.

REPO_ROOT=${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TOOLS_DIR=${TOOLS_DIR:-$REPO_ROOT/.tools}
CACHE_DIR=${BACKSTAGE_GITOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/backstage-gitops}

# Pinned versions of the tools the repository is tested with.
KUSTOMIZE_VERSION=${KUSTOMIZE_VERSION:-v5.8.1}

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# step NAME CMD...: runs CMD, printing what it does and how long it took.
step() {
  local name=$1 start rc
  shift
  start=$(date +%s)
  log "start: $name"
  "$@" && rc=0 || rc=$?
  if [ "$rc" -eq 0 ]; then
    log "done:  $name ($(($(date +%s) - start)) s)"
  else
    log "FAILED: $name ($(($(date +%s) - start)) s, exit $rc)"
  fi
  return "$rc"
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required but not on PATH: $2"
}

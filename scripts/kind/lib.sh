# shellcheck shell=bash
# Shared helpers for the offline kind toolchain scripts. Sourced, never run.
#
# Every version the toolchain builds is pinned in scripts/kind/versions.env; the cache is keyed
# by those versions so that a second run only checks that the outputs exist.

TOOLCHAIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${TOOLCHAIN_DIR}/../.." && pwd)"
CACHE_ROOT="${BACKSTAGE_GITOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/backstage-gitops}"
# State of processes the scripts start (pid files, logs); /run is cleared on reboot.
STATE_DIR="${BACKSTAGE_GITOPS_STATE:-/run/backstage-gitops}"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# run_timed LABEL CMD...: run CMD, print how long it took, and append the timing to the cache's
# timings.log (read by `toolchain.sh measure` and the docs).
run_timed() {
  local label="$1"; shift
  local start end rc=0
  start=$(date +%s)
  log "start: ${label}"
  "$@" || rc=$?
  end=$(date +%s)
  if [[ ${rc} -ne 0 ]]; then
    log "FAILED after $((end - start)) s: ${label}"
    return "${rc}"
  fi
  log "done in $((end - start)) s: ${label}"
  mkdir -p "${CACHE_ROOT}"
  printf '%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$((end - start))" "${label}" >>"${CACHE_ROOT}/timings.log"
}

# as_root CMD...: run CMD as root (directly, or through sudo when not root).
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG...: install the Debian packages that are missing, and only those.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q 'install ok installed' || missing+=("${p}")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
    || { as_root apt-get update >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}

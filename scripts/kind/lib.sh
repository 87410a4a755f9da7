# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared helpers for the offline kind toolchain scripts. Sourced, never run.
#
# Every version the toolchain builds is pinned in scripts/kind/versions.env; the cache is keyed
# by those versions so that a second run only checks that the outputs exist.

TOOLCHAIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${TOOLCHAIN_DIR}/../.." && pwd)"
# This toolchain keeps its whole cache in one folder of the project cache, so that listing and
# clearing it never touches what other scripts cache there.
CACHE_ROOT="${BACKSTAGE_GITOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/backstage-gitops}/kind-toolchain"
# State of processes the scripts start (pid files, logs); /run is cleared on reboot.
STATE_DIR="${BACKSTAGE_GITOPS_STATE:-/run/backstage-gitops}"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# run_timed LABEL CMD...: run CMD, print how long it took, and append the timing to the cache's
# timings.log (see `toolchain.sh timings` and docs/toolchain.md). A failing CMD stops the script
# (errexit) after the ERR trap below has named the step.
CURRENT_STEP=""
CURRENT_STEP_START=0
run_timed() {
  local label="$1"; shift
  local outer_step="${CURRENT_STEP}" outer_start="${CURRENT_STEP_START}" elapsed
  CURRENT_STEP="${label}"
  CURRENT_STEP_START=$(date +%s)
  log "start: ${label}"
  "$@"
  elapsed=$(( $(date +%s) - CURRENT_STEP_START ))
  log "done in ${elapsed} s: ${label}"
  mkdir -p "${CACHE_ROOT}"
  printf '%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "${elapsed}" "${label}" >>"${CACHE_ROOT}/timings.log"
  CURRENT_STEP="${outer_step}"
  CURRENT_STEP_START="${outer_start}"
}
on_error() {
  local rc="$1"
  if [[ -n "${CURRENT_STEP}" ]]; then
    log "FAILED (exit ${rc}) after $(( $(date +%s) - CURRENT_STEP_START )) s: ${CURRENT_STEP}"
    CURRENT_STEP=""
  fi
}
set -E
trap 'on_error $?' ERR

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

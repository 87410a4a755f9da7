#!/usr/bin/env bash
# The test command of the README and of CI: installs what the tests need, then runs every tier.
#   scripts/test.sh                 all tiers
#   scripts/test.sh -m render       one tier (pytest arguments are passed through)
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

usage() {
  cat <<USAGE
usage: scripts/test.sh [pytest arguments]
Installs the pinned tools (scripts/bootstrap.sh), then runs pytest over tests/.
Tiers (pytest markers): unit (no marker), render, images, kind, e2e.
Set UPDATE_GOLDENS=1 to rewrite the render goldens after a reviewed change.
USAGE
}

main() {
  case ${1:-} in -h|--help) usage; exit 0 ;; esac
  step "bootstrap" "$REPO_ROOT/scripts/bootstrap.sh"
  cd "$REPO_ROOT"
  log "running pytest $*"
  exec "$TOOLS_DIR/venv/bin/python" -m pytest "$@"
}

main "$@"

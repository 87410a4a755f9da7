#!/usr/bin/env bash
# The main job: Backstage on a local kind cluster, from nothing, reachable on
# http://localhost:7007. Safe to re-run: every step keeps what is already there.
#
#   1. Docker engine (installed and started when none answers)
#   2. kind toolchain: kind, Kubernetes, node image (built offline, or pulled with --pull)
#   3. pinned kustomize and the krm-secrets plugin (scripts/bootstrap.sh)
#   4. your own age key and lab Secret values, when your key does not open the lab's
#   5. images backstage:1.0.0 and PostgreSQL (Backstage by the host-build method)
#   6. kind cluster, images loaded into it
#   7. kustomize build overlays/lab | kubectl apply --server-side -f -, wait for the rollout
#   8. kubectl port-forward --namespace=backstage --address=0.0.0.0 svc/backstage 7007:7007
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

CLUSTER=${LAB_CLUSTER:-backstage-lab}
OVERLAY=overlays/lab
PORT=${LAB_PORT:-7007}
ADDRESS=${LAB_ADDRESS:-0.0.0.0}
PULL=0
PORT_FORWARD=1
RUN_DIR=${LAB_RUN_DIR:-$TOOLS_DIR/run}

usage() {
  cat <<USAGE
usage: scripts/lab-up.sh [--pull] [--cluster NAME] [--no-port-forward]
Brings up the lab: Docker, the kind toolchain, images, cluster $CLUSTER, your Secrets,
overlays/lab, and a port-forward to http://localhost:$PORT. Stop with scripts/lab-down.sh.
  --pull              on a machine with internet: pull the kind node image and the base
                      images instead of building them from packages
  --cluster NAME      kind cluster name (default: $CLUSTER, or \$LAB_CLUSTER)
  --no-port-forward   stop after the rollout (tests use this)
Environment: GITHUB_TOKEN (put in your lab Secrets when they are made; optional),
SOPS_AGE_KEY_FILE (your age key; default: \${XDG_CONFIG_HOME:-~/.config}/sops/age/keys.txt).
USAGE
}

docker_engine() { "$REPO_ROOT/scripts/docker-up.sh" up; }

toolchain() {
  if [ "$PULL" = 1 ]; then
    TOOLCHAIN_PULL=1 "$REPO_ROOT/scripts/kind/toolchain.sh" build
  else
    "$REPO_ROOT/scripts/kind/toolchain.sh" build
  fi
  eval "$("$REPO_ROOT/scripts/kind/toolchain.sh" env)"
  export KIND KUBECTL
}

tools() { "$REPO_ROOT/scripts/bootstrap.sh" --no-checkov; }

# The images the lab runs, read from the rendered overlay rather than typed twice.
lab_images() {
  render | awk '/^ *image: /{print $2}' | sort -u
}

render() {
  SOPS_AGE_KEY_FILE=$(own_key_file) PATH="$TOOLS_DIR/venv/bin:$PATH" "$TOOLS_DIR/bin/kustomize" build \
    --enable-alpha-plugins --enable-exec "$REPO_ROOT/$OVERLAY"
}

images() {
  local pull=() image
  [ "$PULL" = 1 ] && pull=(--pull)
  for image in $(lab_images); do
    case $image in
      backstage:*) "$REPO_ROOT/scripts/build-backstage-image.sh" "${pull[@]}" --tag "$image" >/dev/null ;;
      postgres:*) "$REPO_ROOT/scripts/build-postgres-image.sh" "${pull[@]}" --tag "$image" >/dev/null ;;
      *) die "$OVERLAY uses image $image, which no script here builds" ;;
    esac
  done
}

cluster() {
  "$REPO_ROOT/scripts/kind/cluster.sh" create "$CLUSTER"
  KUBECONFIG=$("$REPO_ROOT/scripts/kind/cluster.sh" kubeconfig "$CLUSTER")
  export KUBECONFIG
  # Also for a cluster that existed before this run (create keeps it as it is).
  mkdir -p "$(dirname "$KUBECONFIG")"
  "$KIND" export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >/dev/null 2>&1
  # shellcheck disable=SC2046
  "$REPO_ROOT/scripts/kind/cluster.sh" load $(lab_images) --name "$CLUSTER"
}

own_key_file() {
  echo "${SOPS_AGE_KEY_FILE:-${XDG_CONFIG_HOME:-$HOME/.config}/sops/age/keys.txt}"
}

# A new user gets their own key and values: the repository's lab Secrets are encrypted to a
# test-only key, and a repository cannot ship values that your key opens.
secrets() {
  local krm=$TOOLS_DIR/venv/bin/krm-secrets key recipient artifact backup
  key=$(own_key_file)
  if [ -s "$key" ] && SOPS_AGE_KEY_FILE=$key "$krm" decrypt \
      "$REPO_ROOT/$OVERLAY/secrets/postgres-secrets.sops.yaml" >/dev/null 2>&1; then
    log "your age key $key opens the lab's Secrets"
    return 0
  fi
  if [ ! -s "$key" ]; then
    mkdir -p "$(dirname "$key")"
    "$krm" keygen --output "$key"
    log "made your age key: $key (keep it; it opens your lab Secrets)"
  fi
  recipient=$(sed -n 's/^# public key: //p' "$key" | head -n 1)
  [ -n "$recipient" ] || die "$key has no '# public key:' line; make one with krm-secrets keygen"
  log "encrypting new lab Secret values to your key ($recipient)"
  backup=$RUN_DIR/secrets-backup-$(date -u +%Y%m%dT%H%M%SZ)
  mkdir -p "$backup"
  for artifact in "$REPO_ROOT/$OVERLAY"/secrets/*.sops.yaml; do
    [ -e "$artifact" ] && mv "$artifact" "$backup/"
  done
  cp "$REPO_ROOT/.sops.yaml" "$backup/"
  "$TOOLS_DIR/venv/bin/python" - "$REPO_ROOT/.sops.yaml" "$recipient" <<'PY'
import re, sys
path, recipient = sys.argv[1], sys.argv[2]
text = open(path).read()
rule = re.compile(r"(- path_regex: \^overlays/lab/secrets/.*?\n(?:    .*\n)*?    age: )(\S+)")
new, n = rule.subn(lambda m: m.group(1) + recipient, text, count=1)
if n != 1:
    sys.exit(f"{path}: no creation rule for overlays/lab/secrets with an age: line")
tmp = path + ".tmp"
open(tmp, "w").write(new)
import os; os.replace(tmp, path)
PY
  GITHUB_TOKEN=${GITHUB_TOKEN:-lab-without-github-token} \
    SOPS_AGE_KEY_FILE=$key "$krm" generate --non-interactive "$REPO_ROOT/$OVERLAY/secrets"
  log "your lab Secrets are in $OVERLAY/secrets and .sops.yaml names your key: commit them in"
  log "your fork; the repository's were moved to $backup (git checkout restores them)"
}

apply() {
  render | "$KUBECTL" apply --server-side --force-conflicts --field-manager=backstage-gitops -f -
}

wait_rollout() {
  "$KUBECTL" --namespace=backstage rollout status deployment/postgres --timeout=300s
  "$KUBECTL" --namespace=backstage rollout status deployment/backstage --timeout=600s
}

port_forward() {
  local pidfile=$RUN_DIR/port-forward.pid logfile=$RUN_DIR/port-forward.log i
  mkdir -p "$RUN_DIR"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" || true
  fi
  nohup "$KUBECTL" port-forward --namespace=backstage --address="$ADDRESS" \
    svc/backstage "$PORT:7007" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  for i in $(seq 1 60); do
    if curl -fsS -o /dev/null "http://localhost:$PORT/healthcheck" 2>/dev/null; then
      return 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || die "port-forward exited: $(cat "$logfile")"
    sleep 1
  done
  die "Backstage did not answer on http://localhost:$PORT/healthcheck: scripts/diagnose.py"
}

main() {
  while [ $# -gt 0 ]; do
    case $1 in
      --pull) PULL=1 ;;
      --cluster) CLUSTER=${2:?--cluster needs a name}; shift ;;
      --no-port-forward) PORT_FORWARD=0 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
    shift
  done
  local start
  start=$(date +%s)
  step "Docker engine" docker_engine
  step "kind toolchain" toolchain
  step "kustomize and krm-secrets" tools
  step "Secrets" secrets
  step "images" images
  step "kind cluster $CLUSTER" cluster
  step "apply $OVERLAY" apply
  step "rollout" wait_rollout
  if [ "$PORT_FORWARD" = 1 ]; then
    step "port-forward" port_forward
    log "Backstage is up in $(($(date +%s) - start)) s: http://localhost:$PORT"
    log "kubectl: export KUBECONFIG=$KUBECONFIG"
    log "stop the port-forward and delete the cluster: scripts/lab-down.sh"
  else
    log "lab ready in $(($(date +%s) - start)) s (no port-forward)"
  fi
}

main "$@"

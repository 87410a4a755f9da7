#!/usr/bin/env bash
# Make a Docker engine answer on this machine, or stop the one this script started.
#
# Kind runs every node as `docker run --privileged`. Docker gives a privileged container every
# capability it knows, and runc fails ("unable to apply caps: operation not permitted") when one
# of them is not in the machine's capability bounding set (CAP_SYS_RESOURCE on our CI machines).
# So, when the bounding set lacks capabilities, dockerd gets a small runc wrapper as its default
# runtime that removes exactly those capabilities from the OCI spec before calling runc.
set -euo pipefail

# shellcheck source=kind/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/kind/lib.sh"

WRAPPER_DIR="/usr/local/libexec/backstage-gitops"
WRAPPER="${WRAPPER_DIR}/runc-capfilter"
RUNTIME_NAME="runc-capfilter"
PIDFILE="${STATE_DIR}/dockerd.pid"
DOCKERD_LOG="${STATE_DIR}/dockerd.log"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [up|down|status]

  up      (default) if no Docker engine answers: install Debian's docker.io (and jq) when
          missing, install the runc wrapper when the capability bounding set needs it, and start
          dockerd in the background (log: ${DOCKERD_LOG}). Does nothing when Docker answers.
  down    stop the dockerd that 'up' started (pid in ${PIDFILE}); any other engine is left alone.
  status  say whether Docker answers, which runtime is the default, and who started it.
USAGE
}

docker_answers() { docker info >/dev/null 2>&1; }

# Capability names by number (linux/capability.h), to name what the bounding set lacks.
CAP_NAMES=(CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL
  CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST
  CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT
  CAP_SYS_PTRACE CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE
  CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL
  CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM CAP_BLOCK_SUSPEND
  CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE)

# Print the capabilities Docker knows that this machine's bounding set lacks, one per line.
missing_capabilities() {
  local bnd i
  bnd=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
  for i in "${!CAP_NAMES[@]}"; do
    if (( (bnd >> i & 1) == 0 )); then printf '%s\n' "${CAP_NAMES[$i]}"; fi
  done
}

install_packages() {
  command -v dockerd >/dev/null && command -v runc >/dev/null && command -v jq >/dev/null && return 0
  apt_install docker.io jq
  # Debian's docker.io ships its client as docker.io's `docker`; some images carry another one
  # earlier in PATH, which is fine (the API version is negotiated).
}

# install_wrapper CAP...: write the runc wrapper that deletes CAP... from every capability set of
# the bundle's config.json before handing over to the real runc.
install_wrapper() {
  local runc_path caps_json
  runc_path="$(command -v runc)"
  caps_json="$(printf '%s\n' "$@" | jq -R . | jq -cs .)"
  as_root mkdir -p "${WRAPPER_DIR}"
  as_root tee "${WRAPPER}.tmp" >/dev/null <<WRAP
#!/bin/sh
# Installed by backstage-gitops scripts/docker-up.sh: drop capabilities that this machine's
# bounding set lacks (${*}) from the OCI spec of 'runc create/run' (--bundle DIR/config.json) and
# from the process spec of 'runc exec' (--process FILE), then run the real runc.
bundle=""
process=""
prev=""
for arg in "\$@"; do
  case "\${prev}" in
    --bundle|-b) bundle="\${arg}" ;;
    --process|-p) process="\${arg}" ;;
  esac
  case "\${arg}" in
    --bundle=*) bundle="\${arg#--bundle=}" ;;
    --process=*) process="\${arg#--process=}" ;;
  esac
  prev="\${arg}"
done
drop() {
  jq -c --argjson drop '${caps_json}' "\$1" "\$2" >"\$2.capfilter" && mv "\$2.capfilter" "\$2"
}
if [ -n "\${bundle}" ] && [ -f "\${bundle}/config.json" ]; then
  drop 'if .process.capabilities then .process.capabilities |= with_entries(.value |= ((. // []) - \$drop)) else . end' "\${bundle}/config.json"
fi
if [ -n "\${process}" ] && [ -f "\${process}" ]; then
  drop 'if .capabilities then .capabilities |= with_entries(.value |= ((. // []) - \$drop)) else . end' "\${process}"
fi
exec ${runc_path} "\$@"
WRAP
  as_root chmod 0755 "${WRAPPER}.tmp"
  as_root mv "${WRAPPER}.tmp" "${WRAPPER}"
}

start_dockerd() {
  local args=() missing waited=0
  mapfile -t missing < <(missing_capabilities)
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "capability bounding set lacks ${missing[*]}: registering ${WRAPPER} as the default runtime"
    install_wrapper "${missing[@]}"
    args+=(--add-runtime "${RUNTIME_NAME}=${WRAPPER}" --default-runtime "${RUNTIME_NAME}")
  fi
  as_root mkdir -p "${STATE_DIR}"
  log "starting dockerd ${args[*]} (log: ${DOCKERD_LOG})"
  # setsid: dockerd must outlive this script and the shell that ran it.
  as_root setsid dockerd --pidfile "${PIDFILE}" "${args[@]}" >"${DOCKERD_LOG}" 2>&1 </dev/null &
  until docker_answers; do
    sleep 1
    waited=$((waited + 1))
    if [[ ${waited} -ge 60 ]]; then
      tail -n 20 "${DOCKERD_LOG}" >&2 || true
      die "dockerd did not answer within 60 s; see ${DOCKERD_LOG}"
    fi
  done
  log "dockerd answers after ${waited} s (pid $(cat "${PIDFILE}"))"
}

cmd_up() {
  if docker_answers; then
    log "Docker already answers; nothing to start"
    check_runtime
    return 0
  fi
  [[ -e "${PIDFILE}" ]] && as_root rm -f "${PIDFILE}"  # stale: that dockerd is gone
  install_packages
  start_dockerd
}

# Warn when a Docker we did not start will fail privileged containers.
check_runtime() {
  local missing default
  missing="$(missing_capabilities | tr '\n' ' ')"
  [[ -z "${missing}" ]] && return 0
  default="$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null || true)"
  if [[ "${default}" == "${RUNTIME_NAME}" ]]; then
    # Our wrapper is read at every container start: refresh it in place.
    local caps
    mapfile -t caps < <(missing_capabilities)
    install_wrapper "${caps[@]}"
  else
    log "warning: this machine lacks ${missing}but Docker's default runtime is '${default}':"
    log "  privileged containers (kind nodes) will fail; stop that engine and run '$0 up'"
  fi
}

cmd_down() {
  local pid
  if [[ ! -f "${PIDFILE}" ]]; then
    log "no dockerd started by this script (no ${PIDFILE}); leaving any other engine alone"
    return 0
  fi
  pid="$(cat "${PIDFILE}")"
  if [[ "$(cat "/proc/${pid}/comm" 2>/dev/null || true)" != dockerd ]]; then
    log "pid ${pid} from ${PIDFILE} is not a running dockerd; removing the stale pid file"
    as_root rm -f "${PIDFILE}"
    return 0
  fi
  log "stopping dockerd (pid ${pid})"
  as_root kill -TERM "${pid}"
  local waited=0
  while [[ -e "/proc/${pid}" ]]; do
    sleep 1
    waited=$((waited + 1))
    [[ ${waited} -ge 60 ]] && die "dockerd (pid ${pid}) still running after 60 s"
  done
  as_root rm -f "${PIDFILE}"
  log "dockerd stopped after ${waited} s"
}

cmd_status() {
  if docker_answers; then
    echo "docker: answers (server $(docker info --format '{{.ServerVersion}}'), default runtime $(docker info --format '{{.DefaultRuntime}}'))"
  else
    echo "docker: does not answer"
  fi
  if [[ -f "${PIDFILE}" ]]; then
    echo "started by this script: pid $(cat "${PIDFILE}")"
  else
    echo "started by this script: no"
  fi
  echo "capabilities missing from the bounding set: $(missing_capabilities | tr '\n' ' ')"
}

main() {
  case "${1:-up}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"

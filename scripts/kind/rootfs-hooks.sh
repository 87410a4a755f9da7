#!/usr/bin/env bash
# mmdebstrap customize hooks for build-images.sh (run as root by mmdebstrap, not by people).
#   rootfs-hooks.sh node ROOTFS KIND_SOURCE_DIR POD_SUBNET
#   rootfs-hooks.sh runtime ROOTFS
set -euo pipefail

# node: what kind's images/base/Dockerfile does, applied to a Debian rootfs; kind's base files are
# read from kind's Go module (KIND_SOURCE_DIR/images/base/files), never copied into this repo.
node() {
  local root="$1" files="$2/images/base/files" subnet="$3"
  [[ -d "${files}" ]] || { echo "kind base files not found in ${files}" >&2; exit 1; }
  install -d -m 0755 "${root}/kind" "${root}/kind/bin" "${root}/etc/kubernetes/manifests" \
    "${root}/etc/systemd/system/kubelet.service.d" "${root}/etc/cni/net.d" "${root}/opt/cni" \
    "${root}/etc/containerd" "${root}/usr/local/bin"
  install -m 0755 "${files}"/usr/local/bin/* "${root}/usr/local/bin/"
  install -m 0644 "${files}/kind/README.txt" "${root}/kind/"
  install -m 0755 "${files}"/kind/bin/* "${root}/kind/bin/"
  install -m 0644 "${files}/etc/crictl.yaml" "${root}/etc/"
  install -m 0644 "${files}/etc/containerd/config.toml" "${root}/etc/containerd/config.toml"
  install -m 0644 "${files}"/etc/default/* "${root}/etc/default/"
  install -m 0644 "${files}"/etc/sysctl.d/* "${root}/etc/sysctl.d/"
  install -m 0644 "${files}"/etc/systemd/system/*.service "${files}"/etc/systemd/system/*.slice \
    "${root}/etc/systemd/system/"
  install -m 0644 "${files}"/etc/systemd/system/kubelet.service.d/* "${root}/etc/systemd/system/kubelet.service.d/"
  # kind's unit files expect containerd in /usr/local/bin; Debian installs it in /usr/bin.
  local b
  for b in containerd containerd-shim-runc-v2 ctr; do ln -sf "/usr/bin/${b}" "${root}/usr/local/bin/${b}"; done
  # Debian's CNI plugins live in /usr/lib/cni; containerd looks in /opt/cni/bin.
  ln -sfn /usr/lib/cni "${root}/opt/cni/bin"
  find "${root}/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
  rm -f "${root}"/lib/systemd/system/multi-user.target.wants/* "${root}"/etc/systemd/system/*.wants/* \
    "${root}"/lib/systemd/system/local-fs.target.wants/* "${root}"/lib/systemd/system/sockets.target.wants/*udev* \
    "${root}"/lib/systemd/system/sockets.target.wants/*initctl* "${root}"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >>"${root}/etc/systemd/journald.conf"
  ln -sf /lib/systemd/systemd "${root}/sbin/init"
  chroot "${root}" systemctl enable kubelet.service containerd.service undo-mount-hacks.service
  chroot "${root}" systemctl mask systemd-binfmt.service
  # containerd's base OCI spec, with kind's hook that mounts the product UUID files.
  chroot "${root}" ctr oci spec \
    | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
    | jq 'del(.process.rlimits)' >"${root}/etc/containerd/cri-base.json"
  # Pod network: Debian's bridge plugin on a single node (kindnetd is not on the Go module
  # proxy). The subnet must equal the kind config's podSubnet.
  cat >"${root}/etc/cni/net.d/10-bridge.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "kind-bridge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${subnet}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
  rm -rf "${root}"/var/cache/apt/archives/*.deb "${root}"/var/lib/apt/lists/*
}

# runtime: the small image under every component image; only trimmed.
runtime() {
  local root="$1"
  rm -rf "${root}"/var/cache/apt/archives/*.deb "${root}"/var/lib/apt/lists/* "${root}/usr/share/doc" \
    "${root}/usr/share/man" "${root}/usr/share/locale"
}

case "${1:-}" in
  node) shift; node "$@" ;;
  runtime) shift; runtime "$@" ;;
  *) echo "usage: $0 node ROOTFS KIND_SOURCE_DIR POD_SUBNET | runtime ROOTFS" >&2; exit 2 ;;
esac

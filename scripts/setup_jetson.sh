#!/usr/bin/env bash
# Prepare a Jetson Orin (JetPack 6) to run nsm's robot container. Idempotent: every step checks
# first and changes only what is missing. --dry-run prints what it would change, changes nothing.
#   sudo bash scripts/setup_jetson.sh [--dry-run] [--swap-gb 8]
set -euo pipefail

DRY_RUN=0
SWAP_GB=8
UDEV_RULES=/etc/udev/rules.d/99-nsm.rules
TEGRA_RELEASE=${NSM_TEGRA_RELEASE:-/etc/nv_tegra_release}  # overridable for tests

usage() { sed -n '2,4s/^# \{0,1\}//p' "$0"; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --swap-gb) SWAP_GB=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '%s\n' "$*"; }
change() {  # run a command that changes the system, or show it in a dry run
  if [[ $DRY_RUN == 1 ]]; then say "  would run: $*"; else say "  running: $*"; "$@"; fi
}

check_jetpack() {
  if [[ ! -r $TEGRA_RELEASE ]]; then
    echo "not a Jetson: $TEGRA_RELEASE is missing; this script prepares a Jetson (JetPack 6) only" >&2
    exit 2
  fi
  local release
  release=$(head -n1 "$TEGRA_RELEASE")
  if [[ $release != *"R36"* ]]; then
    echo "JetPack 6 (L4T R36) is needed, this is: $release; flash JetPack 6 first" >&2
    exit 2
  fi
  say "ok: L4T ${release%%,*}"
}

check_power_mode() {
  if ! command -v nvpmodel >/dev/null; then say "skip: nvpmodel not found"; return; fi
  local mode
  mode=$(nvpmodel -q 2>/dev/null | head -n1)
  if [[ $mode == *MAXN* ]]; then say "ok: power mode $mode"; else
    say "power mode is '$mode'; MAXN gives the policy the most GPU clock"
    change nvpmodel -m 0
  fi
}

check_swap() {
  local have_mb
  have_mb=$(awk '/SwapTotal/ {print int($2 / 1024)}' /proc/meminfo)
  if (( have_mb >= SWAP_GB * 1024 - 64 )); then say "ok: ${have_mb} MiB swap"; return; fi
  say "swap is ${have_mb} MiB; building and loading torch on an 8 GB Orin needs ${SWAP_GB} GiB"
  change fallocate -l "${SWAP_GB}G" /swapfile
  change chmod 600 /swapfile
  change mkswap /swapfile
  change swapon /swapfile
  if ! grep -q '^/swapfile ' /etc/fstab; then
    if [[ $DRY_RUN == 1 ]]; then say "  would add /swapfile to /etc/fstab"; else echo '/swapfile none swap sw 0 0' >> /etc/fstab; fi
  fi
}

check_udev() {
  # The SO-101's USB serial adapter (CH343, 1a86:55d3) as /dev/so101; cameras readable by the video group.
  local rules
  rules='SUBSYSTEM=="tty", ATTRS{idVendor}=="1a86", ATTRS{idProduct}=="55d3", SYMLINK+="so101", MODE="0666"
SUBSYSTEM=="video4linux", GROUP="video", MODE="0660"'
  if [[ -f $UDEV_RULES ]] && [[ $(cat "$UDEV_RULES") == "$rules" ]]; then say "ok: $UDEV_RULES"; return; fi
  say "udev rules for the arm (/dev/so101) and cameras are missing"
  if [[ $DRY_RUN == 1 ]]; then say "  would write $UDEV_RULES"; else printf '%s\n' "$rules" > "$UDEV_RULES"; fi
  change udevadm control --reload-rules
  change udevadm trigger
}

check_container_runtime() {
  if ! command -v docker >/dev/null; then
    say "docker is missing: install it with the NVIDIA container toolkit (JetPack's nvidia-container package)"
    change apt-get install -y nvidia-container docker.io
    return
  fi
  if docker info 2>/dev/null | grep -qi 'runtimes:.*nvidia'; then say "ok: the NVIDIA container runtime"; return; fi
  say "docker has no nvidia runtime"
  change nvidia-ctk runtime configure --runtime=docker
  change systemctl restart docker
}

check_jetpack
[[ $DRY_RUN == 1 ]] && say "dry run: nothing will be changed"
if [[ $DRY_RUN == 0 && $EUID -ne 0 ]]; then echo "run as root (sudo), or with --dry-run" >&2; exit 2; fi
check_power_mode
check_swap
check_udev
check_container_runtime
say "done: build and start with 'docker compose -f docker/docker-compose.yml --profile local up -d' (README: Deploy on a Jetson)"

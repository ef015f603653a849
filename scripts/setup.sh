#!/usr/bin/env bash
# Set up nsm on Debian 12 / Ubuntu: system libraries, a Python 3.12 venv, the pinned packages.
#
#   bash scripts/setup.sh          # users: nsm and its runtime dependencies
#   bash scripts/setup.sh --test   # developers/CI: + ROS 2 wheels, pytest, colcon, PostgreSQL server
#
# The venv is $NSM_VENV (default: .venv in the repository). The first run downloads ~5 GB
# (LeRobot's torch is a CUDA build; it runs on the CPU); later runs reuse the venv and pip's cache.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${NSM_VENV:-$root/.venv}
extras=""
apt_pkgs=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgles2)  # headless MuJoCo rendering (EGL)
# FFmpeg's shared libraries: LeRobot's video decoder (torchcodec) loads them; without them every
# dataset load prints a traceback and falls back to PyAV (slower). Debian 12's names:
if [[ -r /etc/os-release ]] && grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then
  apt_pkgs+=(libavutil57 libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4)
else
  echo "[setup] note: install FFmpeg's shared libraries (e.g. apt-get install ffmpeg) so torchcodec can decode datasets" >&2
fi
if [[ "${1:-}" == "--test" ]]; then
  extras="[test]"
  apt_pkgs+=(postgresql shellcheck chromium)  # a real database for the tests; shell script lint; a real browser
elif [[ -n "${1:-}" ]]; then
  echo "usage: bash scripts/setup.sh [--test]" >&2
  exit 2
fi

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. System packages.
missing=()
for pkg in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing system packages: ${missing[*]} — run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# 2. Python 3.12 (ROS 2 Jazzy's Python; lerobot 0.6 requires it). Debian 12's python3 is 3.11.
find_python() {
  local candidates=("${NSM_PYTHON:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12)
  for c in "${candidates[@]}"; do
    [[ -n "$c" ]] || continue
    if "$c" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      command -v "$c" || echo "$c"
      return 0
    fi
  done
  return 1
}
if [[ ! -x "$venv/bin/python" ]]; then
  if ! py=$(find_python); then
    echo "Python 3.12 not found. Install it (pyenv: 'pyenv install 3.12', or Ubuntu 24.04's python3.12) or set NSM_PYTHON=/path/to/python3.12" >&2
    exit 1
  fi
  say "creating venv $venv with $py"
  "$py" -m venv "$venv"
fi

# 3. Packages, pinned in setup.py. Skip the resolver when nothing changed since the last run.
stamp="$venv/.nsm-setup-stamp"
want="$(sha256sum "$root/setup.py" | cut -d' ' -f1) $extras"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  "$venv/bin/pip" install -q --no-deps -e "$root"
else
  say "installing nsm$extras and its pinned dependencies (first time: ~5 GB, several minutes)"
  "$venv/bin/pip" install -q --upgrade pip "setuptools<80" wheel
  "$venv/bin/pip" install -q -e "$root$extras"
  echo "$want" > "$stamp"
fi
say "ready: $venv/bin/nsm"

#!/usr/bin/env bash
# Start nsm's robot container on a Jetson without compose: the arm's port, the cameras, the GPU
# and the host network (DDS). Extra arguments go to `ros2 launch nsm bringup.launch.py`.
#   scripts/start_container.sh [db_url:=http://server:8000] [robot_id:=EP01]
set -euo pipefail
image=${NSM_IMAGE:-nsm-jetson}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! command -v docker >/dev/null; then
  echo "docker is missing; run scripts/setup_jetson.sh first" >&2
  exit 2
fi
if ! docker image inspect "$image" >/dev/null 2>&1; then
  echo "image $image is missing; build it: docker build -f docker/Dockerfile.jetson -t $image $root" >&2
  exit 2
fi

devices=()
for dev in "${NSM_ARM_PORT:-/dev/ttyACM0}" /dev/video*; do
  [[ -e $dev ]] && devices+=(--device "$dev")
done

exec docker run --rm -it --runtime nvidia --network host --ipc host \
  "${devices[@]}" \
  -e ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-0}" -e BACKEND_API_TOKEN="${BACKEND_API_TOKEN:-}" \
  -v "$root/runs:/ws/runs" \
  "$image" ros2 launch nsm bringup.launch.py "$@"

#!/usr/bin/env bash
# Source ROS 2 and the workspace, then run the command (default: the bringup launch file).
set -eo pipefail
# shellcheck source=/dev/null
source /opt/ros/jazzy/setup.bash
# shellcheck source=/dev/null
source /ws/install/setup.bash
exec "$@"

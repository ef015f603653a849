"""nsm: learned robot policies on an edge computer beside a low-cost arm.

The cores (control, camera, arm, policy, recording, telemetry, sim) and the application
(app, cli) never import ROS;
only `nsm.ros` does, so the CLI, tests and notebooks work without a ROS install.
"""
import os

# MuJoCo picks its GL backend when it is first imported; nsm renders headless, so EGL
# unless the user chose another (MUJOCO_GL=osmesa for machines without EGL).
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"

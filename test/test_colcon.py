"""The repository root is a colcon workspace with the ament_python package `nsm`:
`colcon build` (colcon from pip, no ROS install) installs the nodes where `ros2 run`
looks and launch/ + config/ under share/nsm."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

from nsm.bringup import NODE_PARAMS

ROOT = Path(__file__).resolve().parents[1]
COLCON = Path(sys.executable).parent / "colcon"
BUILD_OUTPUTS = (".git", ".venv", "build", "install", "log", "runs", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis")


def test_colcon_build_in_a_copy_installs_nodes_launch_and_config(tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(ROOT, ws, ignore=shutil.ignore_patterns(*BUILD_OUTPUTS))
    listed = subprocess.run([str(COLCON), "list"], cwd=ws, capture_output=True, text=True, check=True).stdout
    assert listed.split() == ["nsm", ".", "(ros.ament_python)"]
    build = subprocess.run([str(COLCON), "build", "--event-handlers", "console_direct-"], cwd=ws,
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    share = ws / "install" / "nsm" / "share" / "nsm"
    for name in ("bringup.launch.py", "remote_db_bridge.launch.py"):
        assert (share / "launch" / name).is_file()
    for name in ("robots/so101.yaml", "nsm.rviz", "nsm.perspective", *NODE_PARAMS.values()):
        assert (share / "config" / name).is_file(), name
    assert (share / "package.xml").is_file()
    urdf = (share / "urdf" / "so101.urdf").read_text()  # for robot_state_publisher and RViz
    meshes = re.findall(r'filename="package://nsm/meshes/([^"]+)"', urdf)
    assert len(meshes) > 10 and all((share / "meshes" / m).is_file() for m in meshes)
    assert (ws / "install" / "nsm" / "share" / "ament_index" / "resource_index" / "packages" / "nsm").is_file()
    for exe in NODE_PARAMS:
        script = ws / "install" / "nsm" / "lib" / "nsm" / exe
        assert script.is_file(), f"{exe} not installed where `ros2 run nsm {exe}` looks"
        assert script.read_text().startswith(f"#!{sys.executable}") or "python" in script.read_text().splitlines()[0]

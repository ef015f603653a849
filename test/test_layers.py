"""The layers of DESIGN.md, checked on the source: imports run one way, downward, and ROS
stays in `nsm.ros`; ruff (line length, import order, real mistakes) passes on the tree.

    cli -> app -> cores (control, policy, recording, telemetry, ai, camera, arm, ...) -> sim -> ground
    ros -> cores and below, never app or cli
"""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "nsm"
GROUND = {"contract", "errors", "stats", "paths"}  # the ground floor: imports nothing of nsm above it
SIM = {"sim"}
APP = {"app"}
TOP = {"cli"}
ROS_ONLY = {"rclpy", "launch", "launch_ros", "sensor_msgs", "std_msgs", "std_srvs", "geometry_msgs", "trajectory_msgs",
            "diagnostic_msgs", "builtin_interfaces", "lifecycle_msgs", "rosidl_runtime_py", "cv_bridge", "rosbag2_py"}


def rank(part: str) -> int:
    """0 ground, 1 sim, 2 cores, 3 ros, 3 app, 4 cli (ros and app are side by side: neither imports the other)."""
    if part in GROUND:
        return 0
    if part in SIM:
        return 1
    if part in TOP:
        return 4
    if part in APP or part == "ros":
        return 3
    return 2


def imports() -> list[tuple[str, str, int]]:
    """(importing module's part, imported module, line) for every import in src/nsm, lazy ones included."""
    found = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(f"{'.'.join(rel.parts)}", alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((f"{'.'.join(rel.parts)}", node.module, node.lineno))
    return found


def test_ros_is_imported_only_in_nsm_ros():
    bad = [f"{m}:{line} imports {t}" for m, t, line in imports()
           if t.split(".")[0] in ROS_ONLY and not m.startswith("ros.")]
    assert not bad, bad


def test_imports_run_downward():
    bad = []
    for module, target, line in imports():
        if not target.startswith("nsm."):
            continue
        here, there = module.split(".")[0], target.split(".")[1]
        if here == there or here == "__init__":
            continue
        if rank(there) > rank(here) or (rank(there) == rank(here) == 3) or (here == "ros" and there in APP | TOP):
            bad.append(f"nsm.{module}:{line} imports {target}")
        elif rank(here) == rank(there) == 0 and there not in ("errors",) and here != "contract":
            bad.append(f"nsm.{module}:{line} imports {target} (the ground floor imports only errors)")
    assert not bad, "\n".join(bad)


def test_sim_is_a_leaf():
    """sim/ (scene, ik, expert, battery, meshes) imports only itself and the ground floor."""
    bad = [f"nsm.{m}:{line} imports {t}" for m, t, line in imports()
           if m.startswith("sim.") and t.startswith("nsm.") and t.split(".")[1] not in SIM | GROUND]
    assert not bad, bad


def test_the_cli_holds_no_file_reading_or_run_loops():
    """cli.py is options and printing: it reads no HDF5 itself and runs no loops over rows."""
    tree = ast.parse((SRC / "cli.py").read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not modules & {"h5py", "threading", "sqlalchemy"}, modules & {"h5py", "threading", "sqlalchemy"}


def test_ruff_passes():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    result = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr

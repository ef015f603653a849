"""Static checks of the launch file (launch/launch_ros are not on PyPI, so it is parsed,
not run): every nsm executable it starts is a console entry point of setup.py, and every
parameter file it names exists and sets parameters for any node name (`/**`)."""
import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def entry_points() -> set[str]:
    text = (ROOT / "setup.py").read_text()
    return set(re.findall(r'"(\w+) = nsm\.[\w.]+:main"', text))


def launch_tree(name="bringup.launch.py"):
    return ast.parse((ROOT / "launch" / name).read_text())


def literal(tree, name):
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found")


def node_calls(tree):
    """(package, executable) of every Node(...) call with literal keywords."""
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Node", "node"):
            kw = {k.arg: k.value for k in node.keywords}
            exe = kw.get("executable", node.args[0] if node.args else None)
            if isinstance(exe, ast.Constant):  # the helper's Node(executable=<variable>) is NODE_PARAMS
                pkg = kw["package"].value if "package" in kw else "nsm"
                calls.append((pkg, exe.value))
    return calls


def test_every_nsm_executable_is_an_entry_point():
    tree = launch_tree()
    started = {exe for pkg, exe in node_calls(tree) if pkg == "nsm"} | set(literal(tree, "NODE_PARAMS"))
    assert started == {"camera_node", "arm_driver_node", "policy_node", "recorder_node", "db_bridge_node"}
    assert started <= entry_points()
    assert ("robot_state_publisher", "robot_state_publisher") in node_calls(tree)


def test_every_parameter_file_exists_and_applies_to_any_node_name():
    for exe, filename in literal(launch_tree(), "NODE_PARAMS").items():
        path = ROOT / "config" / filename
        assert path.exists(), f"{exe}: {path} missing"
        params = yaml.safe_load(path.read_text())
        assert list(params) == ["/**"] and "ros__parameters" in params["/**"], path


def test_parameter_files_match_what_the_nodes_declare():
    for exe, filename in literal(launch_tree(), "NODE_PARAMS").items():
        tree = ast.parse((ROOT / "src" / "nsm" / "ros" / f"{exe}.py").read_text())
        names = {kw.arg for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and getattr(node.func, "id", None) == "declare" for kw in node.keywords}
        in_file = set(yaml.safe_load((ROOT / "config" / filename).read_text())["/**"]["ros__parameters"])
        assert in_file <= names, f"{filename} sets {in_file - names}, which {exe} does not declare"


def test_urdf_for_robot_state_publisher_has_the_contract_joints(contract):
    from nsm.sim.scene import urdf_xml

    urdf = urdf_xml()
    for name in contract.joint_names:
        assert f'<joint name="{name}"' in urdf
    assert 'filename="file:///' in urdf and 'filename="assets/' not in urdf


def test_remote_db_bridge_launch_starts_only_the_bridge_with_its_parameters():
    tree = launch_tree("remote_db_bridge.launch.py")
    assert node_calls(tree) == [("nsm", "db_bridge_node")]
    assert set(literal(tree, "ARGUMENTS")) == {"namespace", "db_url", "robot_id"}
    assert "db_bridge.yaml" in (ROOT / "launch" / "remote_db_bridge.launch.py").read_text()


def test_rviz_config_shows_the_robot_model_and_every_camera_of_the_contract(contract):
    rviz = yaml.safe_load((ROOT / "config" / "nsm.rviz").read_text())
    displays = {d["Class"].rsplit("/", 1)[1]: d for d in rviz["Visualization Manager"]["Displays"]}
    assert displays["RobotModel"]["Description Topic"]["Value"] == "/nsm/robot_description"
    images = [d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if d["Class"].endswith("/Image")]
    assert images == [f"/nsm/camera/{c.name}/image_raw" for c in contract.cameras]
    from nsm.sim.scene import urdf_xml

    # the fixed frame is the URDF's root link, and bringup opens RViz with this file
    assert f'<link name="{rviz["Visualization Manager"]["Global Options"]["Fixed Frame"]}"' in urdf_xml()
    assert "nsm.rviz" in (ROOT / "launch" / "bringup.launch.py").read_text()

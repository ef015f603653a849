"""Static checks of the launch files (launch/launch_ros are not on PyPI, so they are parsed,
not run): every nsm executable bringup starts (`nsm.bringup.plan`) is a console entry
point of setup.py, every parameter file exists, applies to any node name (`/**`) and sets
exactly the parameters its node declares, and every launch override is declared."""
import ast
import re
from pathlib import Path

import pytest
import yaml

from nsm.bringup import ARGUMENTS, NODE_PARAMS, plan
from nsm.errors import NsmError
from nsm.settings import NODES

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


def declared(executable: str) -> set[str]:
    """Parameter names a node declares: its schema's fields, as its `declare(self, <Schema>)` call says."""
    tree = ast.parse((ROOT / "src" / "nsm" / "ros" / f"{executable}.py").read_text())
    schemas = [node.args[1].id for node in ast.walk(tree) if isinstance(node, ast.Call)
               and getattr(node.func, "id", None) == "declare"]
    assert schemas == [NODES[executable].__name__], f"{executable} declares {schemas}"
    return set(NODES[executable].model_fields)


def test_every_nsm_executable_is_an_entry_point():
    started = {n.executable for n in plan(models="models/collision-EP01", view="true")}
    assert started == set(NODE_PARAMS) == {"camera_node", "arm_driver_node", "policy_node", "recorder_node",
                                           "db_bridge_node", "predictor_node", "view_node"}
    assert {"predictor_node", "view_node"}.isdisjoint(n.executable for n in plan())  # only when asked for
    assert started <= entry_points()
    tree = launch_tree()
    assert "plan(**args)" in (ROOT / "launch" / "bringup.launch.py").read_text()
    assert ("robot_state_publisher", "robot_state_publisher") in node_calls(tree)
    assert ("rviz2", "rviz2") in node_calls(tree)


def test_every_parameter_file_exists_and_applies_to_any_node_name():
    for exe, filename in NODE_PARAMS.items():
        path = ROOT / "config" / filename
        assert path.exists(), f"{exe}: {path} missing"
        params = yaml.safe_load(path.read_text())
        assert list(params) == ["/**"] and "ros__parameters" in params["/**"], path


def test_parameter_files_and_nodes_declare_the_same_parameters():
    for exe, filename in NODE_PARAMS.items():
        in_file = set(yaml.safe_load((ROOT / "config" / filename).read_text())["/**"]["ros__parameters"])
        assert in_file == declared(exe), (f"{filename} sets {sorted(in_file - declared(exe))} which {exe} does not "
                                          f"declare; {exe} declares {sorted(declared(exe) - in_file)} not in the file")


@pytest.mark.parametrize("args", [{}, {"sim": "false", "cameras": "front"}, {"record": "false", "model_path": "m"},
                                  {"models": "a,b", "hub_url": "http://hub:5000"}, {"view": "true", "cameras": "wrist"}])
def test_launch_overrides_are_declared_parameters(args):
    nodes = plan(**args)
    for n in nodes:
        assert set(n.overrides) <= declared(n.executable), n
    assert any(n.executable == "recorder_node" for n in nodes) == (args.get("record", "true") == "true")
    if args.get("sim") == "false":
        assert {n.overrides.get("source") for n in nodes if n.executable == "camera_node"} == {"opencv"}
        assert next(n for n in nodes if n.executable == "arm_driver_node").overrides["backend"] == "so101"


def test_managed_nodes_are_driven_to_active_by_the_launch_file():
    from nsm.bringup import MANAGED

    text = (ROOT / "launch" / "bringup.launch.py").read_text()
    for needle in ("LifecycleNode(**options)", "Transition.TRANSITION_CONFIGURE", "Transition.TRANSITION_ACTIVATE",
                   'start_state="configuring"', 'goal_state="inactive"', "if n.managed"):
        assert needle in text, needle
    assert {n.executable for n in plan() if n.managed} == set(MANAGED) == {"arm_driver_node", "policy_node",
                                                                            "recorder_node"}
    for executable in MANAGED:  # each is a lifecycle node: rclpy's lifecycle services exist on it
        source = (ROOT / "src" / "nsm" / "ros" / f"{executable}.py").read_text()
        assert "(ManagedNode):" in source, executable


def test_launch_arguments_are_declared_and_bad_values_refused():
    assert "DeclareLaunchArgument(name" in (ROOT / "launch" / "bringup.launch.py").read_text()
    assert {"sim", "cameras", "model_path", "backend", "record", "db_url", "namespace", "use_rviz"} <= set(ARGUMENTS)
    with pytest.raises(NsmError, match="sim:=maybe must be true or false"):
        plan(sim="maybe")
    with pytest.raises(NsmError, match="unknown launch arguments"):
        plan(camera="front")


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


def test_rqt_perspective_shows_every_camera_the_joints_and_diagnostics(contract):
    import ast as python_ast
    import json

    perspective = json.loads((ROOT / "config" / "nsm.perspective").read_text())["groups"]["pluginmanager"]
    running = python_ast.literal_eval(perspective["keys"]["running-plugins"]["repr"])
    assert {"rqt_runtime_monitor/RuntimeMonitor", "rqt_plot/Plot", "rqt_service_caller/ServiceCaller"} <= set(running)

    def settings(plugin_id, instance):
        keys = perspective["groups"][f"plugin__{plugin_id.replace('/', '__')}__{instance}"]["groups"]["plugin"]["keys"]
        return {k: python_ast.literal_eval(v["repr"]) for k, v in keys.items()}

    images = [settings("rqt_image_view/ImageView", i)["topic"] for i in running["rqt_image_view/ImageView"]]
    assert images == [f"/nsm/camera/{c.name}/image_raw" for c in contract.cameras]
    plotted = settings("rqt_plot/Plot", running["rqt_plot/Plot"][0])["topics"]
    assert plotted == [f"/nsm/joint_states/position[{i}]" for i in range(len(contract.joints))]

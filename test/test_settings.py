"""One settings schema per node (nsm.settings) is the single source of every default: the
parameter files hold its values, the nodes declare it, the launch arguments and `nsm demo`'s
options take their defaults from it, and `nsm demo --config DIR` reads the nodes' files."""
import subprocess
import sys

import pytest
import yaml

from nsm.app.demo_settings import NODE_OPTIONS, SECTIONS, demo_config
from nsm.bringup import ARGUMENTS
from nsm.errors import NsmError
from nsm.paths import share_file
from nsm.settings import NODES, ArmDriverSettings, PolicySettings, RecorderSettings, yaml_text


@pytest.mark.parametrize("executable", list(NODES))
def test_each_parameter_file_holds_the_schema_defaults_by_value(executable):
    schema = NODES[executable]
    in_file = yaml.safe_load(share_file(f"config/{schema.yaml_name()}").read_text())["/**"]["ros__parameters"]
    assert in_file == schema.ros_defaults()  # names, values and types: change the schema, change the file
    assert yaml.safe_load(yaml_text(schema))["/**"]["ros__parameters"] == schema.ros_defaults()


@pytest.mark.ros
@pytest.mark.parametrize("executable", list(NODES))
def test_a_node_declares_the_schema_with_its_defaults_and_validates_overrides(executable):
    import rclpy
    from rclpy.parameter import Parameter

    from nsm.ros.node_main import declare

    schema = NODES[executable]
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("settings_test", context=context)
        assert declare(node, schema) == schema()  # nothing set: every value is the schema's default
        assert {p: node.get_parameter(p).value for p in schema.model_fields} == schema.ros_defaults()
        node.destroy_node()
        first = next(iter(schema.model_fields))  # a text or list parameter given a number: one error line
        node = rclpy.create_node("settings_test", context=context, parameter_overrides=[Parameter(first, value=12345)])
        with pytest.raises(NsmError, match=f"^{executable}: {first}=12345: "):
            declare(node, schema)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_launch_arguments_that_set_parameters_default_to_the_schema():
    derived = {"port": (ArmDriverSettings, "port"), "calibration": (ArmDriverSettings, "calibration"),
               "seed": (ArmDriverSettings, "seed"), "model_path": (PolicySettings, "model_path"),
               "backend": (PolicySettings, "backend"), "cameras": (RecorderSettings, "cameras"),
               "db_url": (NODES["db_bridge_node"], "db_url"), "robot_id": (NODES["db_bridge_node"], "robot_id"),
               "hub_url": (NODES["predictor_node"], "hub_url"), "models": (NODES["predictor_node"], "models")}
    for argument, (schema, name) in derived.items():
        default = schema.model_fields[name].default
        assert ARGUMENTS[argument][0] == (",".join(default) if isinstance(default, list) else str(default)), argument


def test_demo_defaults_are_the_node_defaults_and_config_files_are_read(tmp_path):
    cfg = demo_config()
    for section, schema in SECTIONS.items():
        assert getattr(cfg, section) == schema()
    folder = tmp_path / "config"
    folder.mkdir()
    for schema in SECTIONS.values():
        text = yaml_text(schema)
        if schema is PolicySettings:
            text = text.replace("chunk_size: 30", "chunk_size: 12")
        (folder / schema.yaml_name()).write_text(text)
    cfg = demo_config(folder, threshold=0.7)
    assert cfg.policy.chunk_size == 12 and cfg.policy.threshold == 0.7  # the file, then the option on top
    (folder / "arm_driver.yaml").write_text(yaml_text(ArmDriverSettings).replace("merge: replace", "merge: blender"))
    with pytest.raises(NsmError, match="unknown merge 'blender'; use one of replace, ensemble, blend"):
        demo_config(folder)
    with pytest.raises(NsmError, match="does not exist"):
        demo_config(tmp_path / "nowhere")


def test_every_demo_option_shows_the_schema_default():
    out = subprocess.run([sys.executable, "-m", "nsm.cli", "demo", "--help"], capture_output=True, text=True,
                         env={"COLUMNS": "300", "PATH": ""}).stdout
    for option, (section, name) in NODE_OPTIONS.items():
        default = SECTIONS[section].model_fields[name].default
        shown = ", ".join(default) if isinstance(default, list) else str(default).lower() if isinstance(default, bool) \
            else str(default)
        line = next(line for line in out.splitlines() if line.lstrip("│ ").startswith(f"--{option.replace('_', '-')} "))
        assert f"[default: {shown}]" in line, line

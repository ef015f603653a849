import mujoco
import numpy as np
import pytest

from nsm.contract import load_contract
from nsm.errors import NsmError
from nsm.sim.scene import build_model


def test_contract_limits_match_the_mjcf(contract):
    model = build_model(contract)
    for joint in contract.joints:
        lo, hi = model.joint(joint.name).range
        assert joint.lower == pytest.approx(lo, abs=1e-3) and joint.upper == pytest.approx(hi, abs=1e-3), joint.name
    assert np.all((contract.lower <= contract.home) & (np.asarray(contract.home) <= contract.upper))


def test_every_contract_camera_exists_in_the_scene(contract):
    model = build_model(contract)
    for cam in contract.cameras:
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, cam.name) >= 0


def test_unknown_camera_names_the_known_ones(contract):
    with pytest.raises(NsmError, match="unknown camera 'nope'.*front, wrist"):
        contract.camera("nope")


def test_bad_contract_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("robot: x\nfps: 30\njoints:\n  - {name: a, lower: 1, upper: 0, max_step: 0.1}\ncameras: []\nhome: [0]\n")
    with pytest.raises(NsmError, match="bad.yaml: joints.0.*lower 1.0 must be below upper 0.0"):
        load_contract(bad)

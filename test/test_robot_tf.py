"""The links' poses a bag carries on /tf (nsm.recording.robot_tf, from the URDF) against an
independent model of the same arm: MuJoCo's forward kinematics of the SO-101's MJCF."""
import mujoco
import numpy as np
import pytest

from nsm.errors import NsmError
from nsm.recording.robot_tf import RobotTf
from nsm.sim.scene import assets_dir, urdf_xml


def pose(transform) -> np.ndarray:
    matrix = np.eye(4)
    x, y, z, w = transform.rotation
    rotation = np.zeros(9)
    mujoco.mju_quat2Mat(rotation, np.array([w, x, y, z]))
    matrix[:3, :3], matrix[:3, 3] = rotation.reshape(3, 3), transform.translation
    return matrix


def in_base(link, parents) -> np.ndarray:
    """The link's pose in base_link, composed along the chain of (parent, pose in parent)."""
    parent, local = parents[link]
    return local if parent == "base_link" else in_base(parent, parents) @ local


def test_the_urdf_chain_puts_every_link_where_mujoco_does(contract):
    tf = RobotTf(urdf_xml(), contract.joint_names)
    model = mujoco.MjModel.from_xml_path(str(assets_dir() / "so101_new_calib.xml"))
    data = mujoco.MjData(model)
    rng = np.random.default_rng(7)
    for _ in range(5):
        q = rng.uniform(contract.lower, contract.upper)
        for name, value in zip(contract.joint_names, q, strict=True):
            data.qpos[model.joint(name).qposadr[0]] = value
        mujoco.mj_kinematics(model, data)
        parents = {t.child: (t.parent, pose(t)) for t in tf.fixed() + tf.moving(q)}

        base = data.body("base")
        for link, body in (("shoulder_link", "shoulder"), ("lower_arm_link", "lower_arm"), ("gripper_link", "gripper"),
                           ("moving_jaw_so101_v1_link", "moving_jaw_so101_v1")):
            expected = np.eye(4)
            expected[:3, :3] = base.xmat.reshape(3, 3).T @ data.body(body).xmat.reshape(3, 3)
            expected[:3, 3] = base.xmat.reshape(3, 3).T @ (data.body(body).xpos - base.xpos)
            # the URDF rounds its angles to 6 digits (1.5708 for pi/2: 3.7e-6 rad off, a dozen of them along the
            # chain), the MJCF has exact quaternions: within 1e-4 rad and 10 um; a wrong axis or sign is off by ~1
            actual = in_base(link, parents)
            np.testing.assert_allclose(actual[:3, :3], expected[:3, :3], atol=1e-4, err_msg=link)
            np.testing.assert_allclose(actual[:3, 3], expected[:3, 3], atol=1e-5, err_msg=link)


def test_a_urdf_of_another_robot_is_refused(contract):
    with pytest.raises(NsmError, match="no moving joint shoulder_pan"):
        RobotTf('<robot name="x"><link name="a"/></robot>', contract.joint_names)
    with pytest.raises(NsmError, match="does not parse"):
        RobotTf("<robot", contract.joint_names)

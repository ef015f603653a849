"""The simulated pick-and-place task: the scripted expert, the success check, the light meshes."""
import mujoco
import numpy as np
import pytest

from nsm.arm.safety import SafetyFilter
from nsm.sim.expert import PickPlaceExpert
from nsm.sim.ik import TopDownIK
from nsm.sim.meshes import read_stl
from nsm.sim.scene import CUBE_AREA, GOAL, SimScene, assets_dir, build_model

SEEDS = range(100, 106)  # not the seeds the README's numbers come from


@pytest.fixture(scope="module")
def scene(contract):
    return SimScene(contract, 0)


def run_plan(scene, plan, safety=None):
    for i, row in enumerate(plan):
        scene.step(row if safety is None else safety.filter(row, i * scene.contract.period))


@pytest.mark.parametrize("seed", SEEDS)
def test_the_expert_puts_the_cube_on_the_goal(scene, contract, seed):
    scene.reset(seed)
    expert = PickPlaceExpert(contract, scene)
    expert.reset()
    assert not scene.success()
    safety = SafetyFilter(contract, scene.joint_state()[0])
    run_plan(scene, expert.plan, safety)
    cube, _ = scene.cube_pose()
    assert scene.success(), f"seed {seed}: cube ended at {cube.round(3)}, goal {GOAL}"
    # the plan never needed the safety layer: inside the limits, within the per-step change
    assert safety.rejected == 0 and safety.clamped == 0


def test_the_plan_is_a_joint_trajectory_within_the_contract(scene, contract):
    scene.reset(7)
    expert = PickPlaceExpert(contract, scene, chunk_size=20)
    expert.reset()
    plan = expert.plan
    assert plan.shape[1] == len(contract.joints) and 8 < expert.seconds < 10
    assert np.all(plan >= contract.lower) and np.all(plan <= contract.upper)
    assert np.all(np.abs(np.diff(plan, axis=0)) <= contract.max_step)
    np.testing.assert_allclose(plan[-1], contract.home, atol=1e-9)  # ends at home
    from nsm.contract import Observation

    first = expert.predict_chunk(Observation(100, 0.0, plan[0]))  # row 0 is for the first step it is asked about
    assert np.array_equal(first, plan[:20])
    chunk = expert.predict_chunk(Observation(100 + len(plan) - 5, 0.0, plan[0]))
    assert chunk.shape == (20, 6) and np.all(chunk[5:] == plan[-1])  # holds the last pose past the plan


def test_pushing_the_cube_onto_the_goal_is_not_success(scene, contract):
    scene.reset(0)
    a = scene.model.joint("block").qposadr[0]
    with scene._lock:
        scene.data.qpos[a : a + 2] = GOAL  # slid there, never lifted
        mujoco.mj_forward(scene.model, scene.data)
    scene.step(np.asarray(contract.home))
    assert not scene.success()


def test_cube_placement_follows_the_seed(scene):
    positions = []
    for seed in (1, 2, 1):
        scene.reset(seed)
        positions.append(scene.cube_pose()[0][:2])
    assert np.array_equal(positions[0], positions[2]) and not np.array_equal(positions[0], positions[1])
    assert np.all(positions[0] >= CUBE_AREA[0]) and np.all(positions[0] <= CUBE_AREA[1])


def test_ik_reaches_the_workspace_top_down(scene):
    ik = TopDownIK(scene.model)
    for x, y in [(0.16, -0.1), (0.25, 0.04), (0.2, 0.13)]:
        for jaw in (np.array([0.0, 1.0, 0.0]), np.array([-0.6, 0.8, 0.0])):
            # either side of the cube: one of the two is within wrist_roll's range
            (q, miss, tilt), side = min(((ik.solve(np.array([x, y, 0.035]), side, np.zeros(5)), side)
                                         for side in (jaw, -jaw)), key=lambda r: r[0][1])
            assert miss < 1e-3 and tilt < 0.02
            assert np.allclose(ik.grasp_point(q), [x, y, 0.035], atol=1e-3)
            assert ik.jaw_axis(q) @ side > 0.99  # the jaws close the way they were asked to


def test_a_goal_out_of_reach_is_one_clear_error(scene, contract):
    scene.reset(0)
    expert = PickPlaceExpert(contract, scene)
    expert.goal = np.array([0.45, 0.3])
    with pytest.raises(RuntimeError, match="no top-down grasp reaches"):
        expert.reset()


def test_light_meshes_look_like_the_originals_and_render_fewer_triangles(contract):
    light, full = build_model(contract), build_model(contract, light_meshes=False)
    images = []
    for model in (light, full):
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        with mujoco.Renderer(model, 240, 320) as renderer:
            renderer.update_scene(data, camera="front")
            images.append(renderer.render().astype(float))
            drawn = [model.geom_dataid[g] for g in range(model.ngeom)
                     if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH and model.geom_group[g] < 3]
        images[-1] = (images[-1], sum(model.mesh_facenum[m] for m in drawn))
    (img_light, tri_light), (img_full, tri_full) = images
    assert tri_light < 0.4 * tri_full
    assert np.abs(img_light - img_full).mean() < 2.0  # of 255: the same picture at camera resolution


def test_read_stl_matches_mujocos_own_loader(contract):
    model = build_model(contract, light_meshes=False)
    vertices, faces = read_stl(assets_dir() / "assets" / "base_so101_v2.stl")
    assert faces.shape == (model.mesh_facenum[model.mesh("base_so101_v2").id], 3)
    assert faces.max() == len(vertices) - 1

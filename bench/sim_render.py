"""Sim camera render rate with the decimated visual meshes vs the originals, side by side.

One 240x320 renderer per camera (software GL here), the arm at home, --frames renders each.

    .venv/bin/python bench/sim_render.py [--frames 60]
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from nsm.contract import load_contract  # noqa: E402  (sets the headless GL backend before mujoco)
from nsm.sim.scene import build_model  # noqa: E402


def render_fps(model, camera: str, frames: int) -> float:
    import mujoco

    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    with mujoco.Renderer(model, 240, 320) as renderer:
        renderer.update_scene(data, camera=camera)
        renderer.render()  # warm-up
        started = time.perf_counter()
        for _ in range(frames):
            renderer.update_scene(data, camera=camera)
            renderer.render()
        return frames / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    contract = load_contract("so101")
    results = {}
    for label, light in (("decimated meshes (default)", True), ("original meshes", False)):
        model = build_model(contract, light_meshes=light)
        results[label] = {cam.name: round(render_fps(model, cam.name, args.frames), 1) for cam in contract.cameras}
        print(f"{label}: {results[label]} fps at 240x320")
    print(f"wrote {write_result('sim_render', results)}")


if __name__ == "__main__":
    main()

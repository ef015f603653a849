"""The closed loop, measured: expert demos -> LeRobotDataset -> ACT (LeRobot's training) ->
evaluation through the robot's runtime, on held-out seeds, via torch and via ONNX Runtime.

    .venv/bin/python bench/closed_loop.py [--demos 50] [--steps 3000] [--eval 20] [--work runs/closed_loop]

Each stage reuses what an earlier run left in --work (the dataset, the trained model), so a
long run can be continued. Published anchors for the same kind of task: ACT 90% on sim
transfer-cube from 50 scripted demos (ACT repository README); LeRobot's ACT 87.6% on aloha
transfer-cube (its model card).
"""
import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from nsm.app.collect import Collector  # noqa: E402
from nsm.app.evaluate import EVAL_SEED, Evaluator  # noqa: E402
from nsm.arm.safety import SafetyFilter  # noqa: E402
from nsm.contract import load_contract  # noqa: E402
from nsm.sim.expert import PickPlaceExpert  # noqa: E402
from nsm.sim.scene import SimScene  # noqa: E402
from nsm.stats import wilson_interval  # noqa: E402

ANCHORS = {"ACT, sim transfer-cube, 50 scripted demos (ACT repository README)": 0.90,
           "LeRobot ACT, aloha transfer-cube (model card)": 0.876}


def expert_on(seeds: range) -> dict:
    contract = load_contract("so101")
    scene = SimScene(contract, seeds.start)
    expert = PickPlaceExpert(contract, scene)
    wins = 0
    for seed in seeds:
        scene.reset(seed)
        expert.reset()
        safety = SafetyFilter(contract, scene.joint_state()[0])
        for step, row in enumerate(expert.plan):
            scene.step(safety.filter(row, step * contract.period))
        wins += scene.success()
    return {"successes": wins, "episodes": len(seeds), "success_rate": wins / len(seeds),
            "wilson95": [round(v, 3) for v in wilson_interval(wins, len(seeds))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demos", type=int, default=50)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("runs/closed_loop"))
    args = parser.parse_args()
    from nsm.policy.train import train_act

    collect_dir, model = args.work / "collect", args.work / "act"
    results: dict = {"anchors": ANCHORS}
    info = collect_dir / "lerobot" / "meta" / "info.json"
    if not info.exists():
        started = time.monotonic()
        c = Collector(args.demos, collect_dir).run()
        results["collection"] = {"episodes": len(c.summary.episodes), "successful": len(c.kept),
                                 "seconds": round(time.monotonic() - started, 1)}
        print(f"collected {len(c.kept)}/{len(c.summary.episodes)} successful demos")
    meta = json.loads(info.read_text())
    results["dataset"] = {"episodes": meta["total_episodes"], "frames": meta["total_frames"], "fps": meta["fps"],
                          "seeds": f"0..{meta['total_episodes'] - 1}"}
    if not (model / "model.safetensors").exists():
        train_act(collect_dir / "lerobot", model, steps=args.steps, batch_size=args.batch_size,
                  on_progress=lambda s, n, loss: print(f"\rtrain step {s}/{n} loss {loss:.3f}", end="", flush=True))
        print()
    results["training"] = json.loads((model / "training" / "train.json").read_text())
    seeds = range(EVAL_SEED, EVAL_SEED + args.eval)
    results["expert_on_eval_seeds"] = expert_on(seeds)
    results["policy"] = {}
    for backend in ("torch", "onnxruntime"):
        e = Evaluator(model, args.eval, args.work / f"eval-{backend}", backend=backend).run()
        results["policy"][backend] = asdict(e)
        print(f"{backend}: {e.successes}/{e.episodes} ({100 * e.success_rate:.0f}%), Wilson {e.wilson95}")
    print(f"wrote {write_result('closed_loop', results)}")


if __name__ == "__main__":
    main()

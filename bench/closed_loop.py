"""The closed loop, measured: expert demos -> LeRobotDataset -> ACT (LeRobot's training, nsm's
default CPU recipe) -> evaluation through the robot's runtime on held-out seeds.

    .venv/bin/python bench/closed_loop.py [--demos 50] [--eval 20] [--work runs/closed_loop] [--ros]

Stages, each reusing what an earlier run left in --work (so a long run can be continued):
1. `nsm sim collect` (96x128 model input, the default) and `nsm train` (default preset);
   the loss curve from lerobot-train's log.
2. Success vs training steps: every saved checkpoint on ONNX Runtime fp32, the same seeds.
3. The final model as the robot can run it — LeRobot's own `predict_action_chunk` (nsm's
   torch backend calls it), ONNX Runtime fp32, ONNX Runtime int8 (static quantization
   calibrated on the recorded episodes) — success rate on the same seeds, and latency side
   by side in one run on recorded frames.
4. `--ros`: the final model through the bringup graph as processes (nsm.ros.evaluate).
5. The final model on a second set of held-out seeds (2000.., `--more-seeds`), and both sets
   pooled: twenty episodes' rate moves with the seeds drawn (the headline model: 12/20 on
   1000..1019, 5/20 on 2000..2019), so a recipe is judged on forty.
6. `--add --curve`: every checkpoint of an --ablation folder (an ensemble's members together)
   on both held-out sets and a validation set (3000..): whether choosing the checkpoint by
   rollouts on seeds nobody reports would have chosen well.

Published anchors for the same kind of task: ACT 90% on sim transfer-cube from 50 scripted
demos (ACT repository README); LeRobot's ACT 87.6% on aloha transfer-cube (its model card).
"""
import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, add_to_result, run_expert_plan, write_result  # noqa: E402
from nsm.app.collect import Collector  # noqa: E402
from nsm.app.evaluate import EVAL_SEED, Evaluator  # noqa: E402
from nsm.contract import Observation, load_contract  # noqa: E402
from nsm.policy.ensemble import make_ensemble  # noqa: E402
from nsm.policy.image_input import FILE as IMAGE_INPUT_FILE  # noqa: E402
from nsm.policy.image_input import to_model_size  # noqa: E402
from nsm.policy.lerobot_policy import LeRobotChunkPolicy  # noqa: E402
from nsm.policy.model_dir import ENSEMBLE_FILE, PolicyDir  # noqa: E402
from nsm.policy.train import cores  # noqa: E402
from nsm.recording.episodes import episode_files, sampled_observations  # noqa: E402
from nsm.settings import ArmDriverSettings, PolicySettings  # noqa: E402
from nsm.sim.expert import PickPlaceExpert  # noqa: E402
from nsm.sim.scene import SimScene  # noqa: E402
from nsm.stats import wilson_interval  # noqa: E402
from policy_latency import lerobot_call, stats  # noqa: E402

ANCHORS = {"ACT, sim transfer-cube, 50 scripted demos (ACT repository README)": 0.90,
           "LeRobot ACT, aloha transfer-cube (model card)": 0.876}
LEROBOT = "lerobot predict_action_chunk (torch)"
MORE_SEED = 2000  # the second held-out set: collection uses 0.., the headline evaluation 1000..
SCORE = ("successes", "episodes", "success_rate", "wilson95", "seeds")  # an evaluation's score, as reported
# a third seed set, for choosing among checkpoints without looking at the held-out ones
VALIDATION_SEED = 3000
CURVE_SEEDS = (EVAL_SEED, MORE_SEED, VALIDATION_SEED)


def second_set(work: Path) -> Path:
    """Where a work folder's final model is evaluated on the second held-out set."""
    return work / f"eval-onnxruntime-seed{MORE_SEED}"


def pooled(evals: list[dict]) -> dict:
    """Several evaluations of one model on disjoint seed sets, as one success rate."""
    wins, n = sum(e["successes"] for e in evals), sum(e["episodes"] for e in evals)
    return {"successes": wins, "episodes": n, "seeds": " + ".join(e["seeds"] for e in evals)} | rate(wins, n)


def rate(wins: int, n: int) -> dict:
    return {"successes": wins, "episodes": n, "success_rate": wins / n,
            "wilson95": [round(v, 3) for v in wilson_interval(wins, n)]}


def expert_on(seeds: range) -> dict:
    contract = load_contract("so101")
    scene = SimScene(contract, seeds.start)
    expert = PickPlaceExpert(contract, scene)
    wins = 0
    for seed in seeds:
        scene.reset(seed)
        expert.reset()
        run_expert_plan(contract, scene, expert.plan)
        wins += scene.success()
    return rate(wins, len(seeds))


def evaluate(model: Path, backend: str, episodes: int, out: Path, merge: str | None = None,
             threshold: float | None = None, seed: int = EVAL_SEED) -> dict:
    """`nsm eval` (cached in out/eval.json)."""
    if (out / "eval.json").is_file():
        return json.loads((out / "eval.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    e = asdict(Evaluator(model, episodes, out, seed=seed, backend=backend, merge=merge, threshold=threshold).run())
    print(f"{model.name} {backend} {e['merge']}:{e['threshold']}: {e['successes']}/{e['episodes']} "
          f"Wilson {e['wilson95']}", flush=True)
    return e


def final_step(model: Path) -> int:
    """The step a model's training ended at (its last checkpoint is the model itself)."""
    return json.loads((model / "training" / "train.json").read_text())["steps"]


def checkpoints(model: Path) -> list[tuple[int, Path]]:
    """(step, policy folder) of every checkpoint lerobot-train saved, made loadable by nsm (the
    resize sidecar); an ensemble's checkpoint is its members' checkpoints of that step, as one
    policy (`nsm policy ensemble`), as they would have been had training stopped there."""
    found = []
    final = final_step(model)
    members = [model, *(m.path for m in PolicyDir(model).members)]
    for ckpt in sorted((model / "training" / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name)):
        if int(ckpt.name) == final:
            found.append((final, model))  # the last checkpoint is the model itself
            continue
        folder = model.parent / f"{model.name}-step{int(ckpt.name)}"
        if not folder.exists():
            saved = [m / "training" / "checkpoints" / ckpt.name / "pretrained_model" for m in members]
            for m, s in zip(members, saved, strict=True):
                if (m / IMAGE_INPUT_FILE).is_file():
                    shutil.copy2(m / IMAGE_INPUT_FILE, s / IMAGE_INPUT_FILE)
            if len(saved) == 1:
                shutil.copytree(saved[0], folder)
            else:
                make_ensemble(folder, saved)
        found.append((int(ckpt.name), folder))
    return found


def step_eval(work: Path, step: int, final: bool, seed: int = EVAL_SEED) -> Path:
    """Where a work folder's model at `step` is evaluated on the seeds from `seed` (the final
    model's folders are the headline's: eval-onnxruntime, eval-onnxruntime-seed2000)."""
    name = "eval-onnxruntime" if final else f"eval-step{step}"
    return work / (name if seed == EVAL_SEED else f"{name}-seed{seed}")


def evaluate_steps(work: Path, episodes: int, seeds: tuple[int, ...]) -> None:
    """Evaluate every checkpoint of work/act on each seed set (cached: what ran is kept)."""
    model = work / "act"
    final = final_step(model)
    for step, folder in checkpoints(model):
        for seed in seeds:
            evaluate(folder, "onnxruntime", episodes, step_eval(work, step, step == final, seed), seed=seed)


def steps_measured(work: Path) -> dict:
    """success_vs_steps of a work folder, from the evaluations its checkpoints have
    (`--curve`): per step, each seed set's score and the held-out sets pooled."""
    model = work / "act"
    final = final_step(model)
    steps = sorted(int(p.name) for p in (model / "training" / "checkpoints").glob("[0-9]*"))
    found = {}
    for step in steps:
        evals = {seed: step_eval(work, step, step == final, seed) / "eval.json" for seed in CURVE_SEEDS}
        done = {seed: json.loads(path.read_text()) for seed, path in evals.items() if path.is_file()}
        if not done:
            continue
        row = {e["seeds"]: {k: e[k] for k in SCORE} for e in done.values()}
        held_out = [e for seed, e in done.items() if seed != VALIDATION_SEED]
        if len(held_out) > 1:
            row["held_out_pooled"] = pooled(held_out)
        found[step] = row
    return found


def latency(model: Path, episodes: Path, calls: int) -> dict:
    """p50 per call on recorded frames, the variants interleaved (same machine state for each)."""
    sizes = PolicyDir(model).features.cameras
    lerobot = lerobot_call(model)
    variants = {LEROBOT: lambda obs: lerobot(Observation(0, 0.0, obs.state, {c: to_model_size(im, sizes[c])
                                                                             for c, im in obs.images.items()})),
                **{f"nsm {b}": LeRobotChunkPolicy(model, b, threads=2).predict_chunk
                   for b in ("torch", "onnxruntime", "onnxruntime-int8")}}
    frames = [Observation(0, 0.0, s, im) for path in episode_files(episodes)[:5] for s, im in sampled_observations(path, 20)]
    times = {name: [] for name in variants}
    for i in range(3 + calls):
        obs = frames[i % len(frames)]
        for name, call in variants.items():
            started = time.perf_counter()
            call(obs)
            if i >= 3:
                times[name].append(1e3 * (time.perf_counter() - started))
    out = {name: stats(ms) for name, ms in times.items()}
    for name in out:
        out[name]["speedup_vs_lerobot_p50"] = round(out[LEROBOT]["p50_ms"] / out[name]["p50_ms"], 2)
    return out


def int8_again(work: Path, episodes: int, calls: int) -> dict:
    """A work folder's model (collect/ and act/ as this script lays them out) exported to int8
    again by today's export, judged as the main run judges it: success beside fp32 on the
    eval seeds, and latency side by side with LeRobot's call. For when the export changes
    after the headline model's folder is gone."""
    from nsm.policy.quantize import quantize_int8

    model, recorded = work / "act", work / "collect" / "episodes"
    quantize_int8(PolicyDir(model), recorded)  # replaces an earlier export's file
    shutil.rmtree(work / "eval-onnxruntime-int8", ignore_errors=True)
    policy = {b: evaluate(model, b, episodes, work / f"eval-{b}") for b in ("onnxruntime", "onnxruntime-int8")}
    return {"int8_format": json.loads((model / "onnx" / "int8.json").read_text())["format"],
            "training": json.loads((model / "training" / "train.json").read_text()),
            "policy": {b: {k: e[k] for k in SCORE} for b, e in policy.items()},
            "latency_on_recorded_frames": latency(model, recorded, calls)}


def ablations(specs: list[str]) -> dict:
    """FOLDER[=WHAT DIFFERS] -> its training (train.json, lerobot-train's config), ONNX Runtime
    evaluation and, where FOLDER/eval-nodes holds one (`nsm eval --ros`), its run through the nodes."""
    found = {}
    for spec in specs:
        folder, _, differs = spec.partition("=")
        other = Path(folder)
        model = PolicyDir(other / "act")
        # each training run once: an ensemble of one run's checkpoints trained that run only
        trained = list({t["model"]: t for t in (json.loads((m.path / "training" / "train.json").read_text())
                                                 for m in (model, *model.members))}.values())
        # models that trained side by side (`nsm train --models N` on a CPU: fewer threads each than
        # cores) took the longest one's time, not the sum
        side_by_side = all(t.get("threads", cores()) < cores() for t in trained)
        train = trained[0] if len(trained) == 1 else {
            "models": trained, "side_by_side": side_by_side,
            "seconds": (max if side_by_side else sum)(t["seconds"] for t in trained),
            "ensemble": json.loads((model.path / ENSEMBLE_FILE).read_text())}
        cfg = json.loads((other / "act" / "train_config.json").read_text())  # what lerobot-train ran with
        e = json.loads((other / "eval-onnxruntime" / "eval.json").read_text())
        more = second_set(other) / "eval.json"
        found[str(other)] = {
            "differs": differs or "the training recipe (below)", "training": train,
            "augmentation": cfg["dataset"]["image_transforms"]["enable"],
            "optimizer_lr": cfg["policy"]["optimizer_lr"], "use_vae": cfg["policy"]["use_vae"],
            "kl_weight": cfg["policy"]["kl_weight"], "chunk_size": cfg["policy"]["chunk_size"],
            "lr_schedule": (cfg.get("scheduler") or {}).get("type", "constant"),
            "backbone_norm": trained[0].get("backbone_norm", "frozen (LeRobot's, never fitted: the identity)"),
            "image_input": (json.loads((other / "act" / IMAGE_INPUT_FILE).read_text())
                            if (other / "act" / IMAGE_INPUT_FILE).is_file() else "the cameras' own size"),
            "onnxruntime": {k: e[k] for k in SCORE}}
        pretrained = other / "backbone" / "pretrain.json"  # bench/backbone_pretrain.py's report
        if pretrained.is_file():
            found[str(other)]["backbone_pretraining"] = json.loads(pretrained.read_text())
        if more.is_file():
            found[str(other)]["onnxruntime_both_seed_sets"] = pooled([e, json.loads(more.read_text())])
        measured = steps_measured(other)
        if measured:
            found[str(other)]["success_vs_steps"] = measured
        nodes = other / "eval-nodes" / "eval_nodes.json"
        if nodes.is_file():
            n = json.loads(nodes.read_text())
            found[str(other)]["through_nodes"] = {k: n[k] for k in ("successes", "episodes", "success_rate", "wilson95",
                                                                    "seeds", "inference_ms_p50", "through")}
    return found


def earlier(model: Path, differs: str) -> tuple[dict, list]:
    """What the committed result measured and this run does not repeat (hours of CPU, their work
    folders possibly gone): its ablations and, when its headline model is not this run's, that
    model's rows as one more ablation, with the command that measured them. Returns (ablations,
    its `added` records)."""
    path = RESULTS / "closed_loop.json"
    if not path.is_file():
        return {}, []
    record = json.loads(path.read_text())
    old = record["results"]
    rows = {k: v for k, v in old.get("ablations", {}).items() if k != str(model.parent)}  # now the headline
    if old["training"]["model"] != str(model):
        rows[str(Path(old["training"]["model"]).parent)] = {
            "differs": differs, "measured_by": {k: record[k] for k in ("command", "date", "machine")},
            **{k: v for k, v in old.items() if k in ("training", "success_vs_steps", "policy", "latency_on_recorded_frames",
                                                     "through_nodes", "runtime_variants", "both_seed_sets")}}
    return rows, record.get("added", [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demos", type=int, default=50)
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--eval", type=int, default=20)
    parser.add_argument("--more-seeds", type=int, default=20,
                        help=f"episodes on the second held-out set ({MORE_SEED}..), reported pooled with --eval's")
    parser.add_argument("--checkpoint-eval", type=int, default=10, help="episodes per earlier checkpoint (the curve)")
    parser.add_argument("--ablation", action="append", default=[], metavar="FOLDER[=WHAT DIFFERS]",
                        help="another --work folder (a recipe variant) whose training and ONNX Runtime evaluation "
                             "are reported beside this one")
    parser.add_argument("--runtime", action="append", default=[], metavar="MERGE:THRESHOLD",
                        help="also evaluate the final model with another chunk runtime on the same seeds, e.g. "
                             "ensemble:1.0 (ACT's temporal ensembling, a chunk every step) or replace:0.9")
    parser.add_argument("--earlier-differs", default="the preset's model before this run",
                        help="what differs in the committed result's headline model, kept as an ablation when this "
                             "run's model is another")
    parser.add_argument("--calls", type=int, default=100, help="latency: calls per variant")
    parser.add_argument("--work", type=Path, default=Path("runs/closed_loop"))
    parser.add_argument("--ros", action="store_true", help="also evaluate through the bringup graph as processes")
    parser.add_argument("--add", action="store_true",
                        help="only add the --ablation folders to the committed bench/results/closed_loop.json "
                             "(the main run's work folder may be gone; its command stays, this one is recorded)")
    parser.add_argument("--curve", type=int, action="append", metavar="SEED", choices=CURVE_SEEDS,
                        help="with --add: first evaluate every checkpoint of each --ablation folder on --eval episodes "
                             f"from SEED (repeat it: {EVAL_SEED} and {MORE_SEED} held out, {VALIDATION_SEED} for "
                             "validation), reported as its success_vs_steps")
    parser.add_argument("--int8-again", type=Path, metavar="WORK",
                        help="only export WORK's model to int8 again with today's export, evaluate it beside fp32 "
                             "and time both; added to the committed result under int8_again")
    args = parser.parse_args()
    if args.int8_again:
        entry = {str(args.int8_again): int8_again(args.int8_again, args.eval, args.calls)}
        print(json.dumps(entry, indent=1))
        print(f"wrote {add_to_result('closed_loop', entry, 'int8_again')}")
        return
    if args.curve and not args.add:
        parser.error("--curve goes with --add: it evaluates the --ablation folders' checkpoints")
    if args.add:
        if not args.ablation:
            parser.error("--add needs the folders to add: --ablation W=what differs")
        if args.curve:
            for spec in args.ablation:
                evaluate_steps(Path(spec.partition("=")[0]), args.eval, tuple(args.curve))
        print(f"wrote {add_to_result('closed_loop', ablations(args.ablation), 'ablations')}")
        return
    from nsm.policy.quantize import quantize_int8
    from nsm.policy.train import train_act

    collect_dir, model = args.work / "collect", args.work / "act"
    results: dict = {"anchors": ANCHORS}
    info = collect_dir / "lerobot" / "meta" / "info.json"
    if not info.exists():
        started = time.monotonic()
        c = Collector(args.demos, collect_dir, image_size=(96, 128)).run()
        (args.work / "collection.json").write_text(json.dumps(
            {"episodes": len(c.summary.episodes), "successful": len(c.kept), "seconds": round(time.monotonic() - started, 1)}))
    if (args.work / "collection.json").is_file():
        results["collection"] = json.loads((args.work / "collection.json").read_text())
    meta = json.loads(info.read_text())
    results["dataset"] = {"episodes": meta["total_episodes"], "frames": meta["total_frames"], "fps": meta["fps"],
                          "seeds": f"0..{meta['total_episodes'] - 1}",
                          "image_input": json.loads((collect_dir / "lerobot" / "meta" / IMAGE_INPUT_FILE).read_text())}
    if not (model / "model.safetensors").exists():
        train_act(collect_dir / "lerobot", model, steps=args.steps,
                  on_progress=lambda s, n, loss: print(f"\rtrain step {s}/{n} loss {loss:.3f}", end="", flush=True))
        print()
    results["training"] = json.loads((model / "training" / "train.json").read_text())
    curve = np.loadtxt(model / "training" / "loss.csv", delimiter=",", skiprows=1, ndmin=2)
    results["training"]["loss_curve"] = [[int(s), round(float(v), 4)] for s, v in curve]
    seeds = range(EVAL_SEED, EVAL_SEED + args.eval)
    results["eval_seeds"] = f"{seeds.start}..{seeds.stop - 1}"
    results["expert_on_eval_seeds"] = expert_on(seeds)

    results["success_vs_steps"] = {}
    for step, folder in checkpoints(model):
        final = folder == model
        out = step_eval(args.work, step, final)
        e = evaluate(folder, "onnxruntime", args.eval if final else args.checkpoint_eval, out)
        results["success_vs_steps"][step] = {k: e[k] for k in ("successes", "episodes", "success_rate", "wilson95")}

    episodes = collect_dir / "episodes"
    if not (model / "onnx" / "int8.json").is_file():
        quantize_int8(PolicyDir(model), episodes)
    # torch (LeRobot's own call) is the same network within 1e-5 (the parity test): its speed is
    # compared below, its success rate would repeat ONNX Runtime's
    results["policy"] = {b: evaluate(model, b, args.eval, args.work / f"eval-{b}") for b in ("onnxruntime", "onnxruntime-int8")}
    more = evaluate(model, "onnxruntime", args.more_seeds, second_set(args.work), seed=MORE_SEED)
    results["both_seed_sets"] = {"onnxruntime": pooled([results["policy"]["onnxruntime"], more])}
    results["latency_on_recorded_frames"] = latency(model, episodes, args.calls)
    if args.ros:
        from nsm.ros.evaluate import evaluate_nodes

        out = args.work / "eval-nodes"
        cached = out / "eval_nodes.json"
        results["through_nodes"] = (json.loads(cached.read_text()) if cached.is_file() else
                                    evaluate_nodes(model, args.eval, out, seeds.start))
    final = results["success_vs_steps"][results["training"]["steps"]]
    results["runtime_variants"] = {f"{ArmDriverSettings().merge}:{PolicySettings().threshold} (the default)": final}
    for variant in args.runtime:
        merge, threshold = variant.split(":")
        e = evaluate(model, "onnxruntime", args.eval, args.work / f"eval-onnxruntime-{merge}-{threshold}", merge,
                     float(threshold))
        results["runtime_variants"][variant] = {k: e[k] for k in ("successes", "episodes", "success_rate", "wilson95")}
    kept, added = earlier(model, args.earlier_differs)
    results["ablations"] = kept | ablations(args.ablation)
    print(json.dumps({k: results[k] for k in ("success_vs_steps", "latency_on_recorded_frames")}, indent=1))
    print(f"wrote {write_result('closed_loop', results, added)}")


if __name__ == "__main__":
    main()

"""A trained policy evaluated through the deployed nodes: the bringup graph as processes.

What `ros2 launch nsm bringup.launch.py sim:=true model_path:=MODEL` starts — sim cameras,
arm_driver_node (the one simulated world), policy_node running MODEL on `backend`,
recorder_node, db_bridge_node — is driven episode by episode the way an operator would with
the ROS 2 tools, and each episode is scored by the scene's own check (`sim/success`, the
value at the episode's end, as `nsm eval` scores it in one process):

    per episode (seed s):  ros2 param set arm_driver_node seed s
                           ros2 lifecycle set arm_driver_node configure, activate   (a new world)
                           (wait for frames of the new world)
                           recorder/start_episode; ros2 lifecycle set policy_node activate
                           ... `seconds` ...
                           policy_node deactivate; recorder/stop_episode
                           arm_driver_node deactivate, cleanup

    .venv/bin/python -m nsm.ros.evaluate --model MODEL [--episodes 20] [--seed 1000] [--out DIR]
"""
import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from nsm.bringup import NodeLaunch, plan
from nsm.errors import NsmError
from nsm.policy.export import ensure_onnx_export
from nsm.policy.model_dir import PolicyDir
from nsm.ros import convert
from nsm.ros.graph import Graph
from nsm.ros.node_main import COMMANDS_QOS, LATCHED_QOS, SENSOR_QOS
from nsm.settings import RecorderSettings
from nsm.stats import wilson_interval

NAMESPACE = "/nsm_eval"


def graph_nodes(model: Path | None, cameras: list[str], backend: str, seed: int, out: Path) -> list[NodeLaunch]:
    """bringup's plan for a simulated robot running `model` (None: the scripted expert);
    episodes and telemetry into `out`."""
    nodes = plan(namespace=NAMESPACE, cameras=",".join(cameras), model_path=str(model or ""), backend=backend,
                 seed=str(seed), db_url=f"sqlite:///{out / 'telemetry.db'}", robot_id="eval")
    policy = model.name if model else "scripted"
    return [replace(n, overrides=n.overrides | {"out": str(out / "episodes"), "policy": policy})
            if n.executable == "recorder_node" else n for n in nodes]


class World:
    """What the client sees of the simulated world: the newest task check, when the cube's
    pose and each camera's frame last arrived (header stamps), the policy node's diagnostics."""

    def __init__(self, graph: Graph, cameras: list[str]):
        self.success: bool | None = None
        self.success_at: float | None = None  # client time the check last turned true
        self.cube_stamp = 0.0
        self.first_cube_stamp: float | None = None  # the first pose of the newest world seen by `missing`
        self.frame_stamps = dict.fromkeys(cameras, 0.0)
        self.policy_values: dict[str, str] = {}
        graph.subscribe(Bool, "sim/success", self.on_success, LATCHED_QOS)
        graph.subscribe(PoseStamped, "sim/cube_pose", lambda m: setattr(self, "cube_stamp", convert.from_time(m.header.stamp)),
                        COMMANDS_QOS)
        for cam in cameras:
            graph.subscribe(Image, f"camera/{cam}/image_raw",
                            lambda m, c=cam: self.frame_stamps.__setitem__(c, convert.from_time(m.header.stamp)), SENSOR_QOS)
        graph.subscribe(DiagnosticArray, "/diagnostics", self.on_diagnostics, COMMANDS_QOS)

    def on_success(self, msg: Bool) -> None:
        if msg.data and not self.success:
            self.success_at = time.monotonic()
        self.success = msg.data

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == f"{NAMESPACE}/policy_node":
                self.policy_values = {kv.key: kv.value for kv in status.values}

    def missing(self, since: float) -> list[str]:
        """What of the world made after `since` has not arrived: its cube pose, its task check, and
        a frame of each camera taken once the camera had the new world (its first pose + 0.1 s)."""
        if self.cube_stamp <= since:
            return ["sim/cube_pose"]
        if self.first_cube_stamp is None or self.first_cube_stamp <= since:
            self.first_cube_stamp = self.cube_stamp
        late = [f"camera/{name}" for name, stamp in self.frame_stamps.items() if stamp <= self.first_cube_stamp + 0.1]
        return late + (["sim/success"] if self.success is None else [])


def evaluate_nodes(model: Path | None, episodes: int, out: Path, seed: int = 1000, seconds: float = 12.0,
                   backend: str = "onnxruntime", on_episode: Callable[[int, bool], None] | None = None) -> dict:
    """Run `episodes` episodes (seeds seed..) through the bringup graph; the scene's check scores
    each. `model` None: the scripted expert (what the task allows, through the same graph)."""
    if model is not None:
        model = model.resolve()
        if backend in ("onnxruntime", "tensorrt"):
            ensure_onnx_export(PolicyDir(model))  # once, here, rather than inside the node's configure
        cameras = list(PolicyDir(model).features.cameras)
    else:
        cameras = list(RecorderSettings().cameras)
    out = out.resolve()
    nodes = graph_nodes(model, cameras, backend, seed, out)
    outcomes, times, latencies, recorded = [], [], [], []
    with Graph(nodes, NAMESPACE, out / "graph", client="nsm_eval_client") as g:
        world = World(g, cameras)
        g.transition("recorder_node", "configure", "activate")
        # recorder/episodes is volatile (a restarted bridge must not log old episodes again), so an
        # announcement made before db_bridge_node is discovered would be lost to the telemetry
        g.spin_until(lambda: g.node.count_subscribers("recorder/episodes") > 0, 60,
                     "db_bridge_node's subscription to recorder/episodes")
        g.transition("policy_node", "configure")  # loads the model (and exports it for ONNX Runtime)
        for k in range(episodes):
            g.set_parameters("arm_driver_node", seed=seed + k)
            world.success, world.success_at = None, None  # the new world's check arrives during the transitions
            since = g.node.get_clock().now().nanoseconds * 1e-9
            g.transition("arm_driver_node", "configure", "activate")  # the world of seed + k, the arm at rest
            try:
                g.spin_until(lambda since=since: not world.missing(since), 30, "the new world's pose, frames and task check")
            except NsmError as exc:
                raise NsmError(f"{exc}; missing: {', '.join(world.missing(since))}") from None
            recorded.append(g.call("recorder/start_episode", Trigger).message)
            g.transition("policy_node", "activate")
            started = time.monotonic()
            g.spin_for(seconds)
            g.transition("policy_node", "deactivate")
            g.call("recorder/stop_episode", Trigger)
            ok = bool(world.success)
            outcomes.append(ok)
            if ok and world.success_at is not None:
                times.append(world.success_at - started)
            if "inference_ms_p50" in world.policy_values:
                latencies.append(float(world.policy_values["inference_ms_p50"]))
            g.transition("arm_driver_node", "deactivate", "cleanup")
            if on_episode is not None:
                on_episode(k, ok)
    wins = sum(outcomes)
    result = {"model": str(model) if model else "scripted pick_place expert", "backend": backend,
              "through": "bringup graph as processes: " + ", ".join(n.name for n in nodes),
              "episodes": episodes, "successes": wins,
              "success_rate": wins / episodes, "wilson95": [round(v, 3) for v in wilson_interval(wins, episodes)],
              "seeds": f"{seed}..{seed + episodes - 1}", "outcomes": outcomes,
              "mean_seconds_to_success": round(float(np.mean(times)), 2) if times else None,
              "inference_ms_p50": round(float(np.median(latencies)), 1) if latencies else None,
              "recorded": recorded}
    (out / "eval_nodes.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="trained policy folder (from `nsm train`); none: the scripted expert")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="first seed (collection uses 0.., so 1000.. are held out)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each episode")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--out", type=Path, help="default: MODEL/eval-nodes-<backend>")
    a = parser.parse_args()
    out = a.out or (a.model / f"eval-nodes-{a.backend}" if a.model else Path("runs/eval-nodes-expert"))
    try:
        r = evaluate_nodes(a.model, a.episodes, out, a.seed, a.seconds, a.backend,
                           lambda k, ok: print(f"episode {k + 1}/{a.episodes} (seed {a.seed + k}): "
                                               f"{'success' if ok else 'failure'}", flush=True))
    except NsmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"{r['successes']}/{r['episodes']} successes through the nodes, Wilson 95% {r['wilson95']}: {out}/eval_nodes.json")


if __name__ == "__main__":
    main()

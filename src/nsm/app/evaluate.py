"""`nsm eval`: a trained policy on the simulated pick-and-place task, through the robot's path.

The policy runs exactly as on the robot — the async chunk runtime, the chosen backend
(ONNX Runtime by default), the safety filter, the recorder — on seeds that training did
not see (collection starts at seed 0, evaluation at 1000), and the scene's own check
scores each episode. Reported: success rate with a Wilson 95% interval, time to success,
and a contact sheet of one success and one failure.
"""
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nsm.app.demo import Demo
from nsm.app.demo_settings import demo_config
from nsm.errors import NsmError
from nsm.plots import contact_sheet, episode_frames
from nsm.policy.model_dir import PolicyDir
from nsm.stats import wilson_interval

EVAL_SEED = 1000  # first held-out seed: `nsm sim collect` starts at 0


@dataclass
class Evaluation:
    model: str
    backend: str
    episodes: int
    successes: int
    success_rate: float
    wilson95: tuple[float, float]
    mean_seconds_to_success: float | None
    seeds: str
    merge: str
    threshold: float
    inference_ms_p50: float
    out: str
    sheet: str | None


class Evaluator:
    """Checks the model against the robot (cameras, image sizes, joints) when built; `run()` evaluates."""

    def __init__(self, model: Path, episodes: int, out: Path, seed: int = EVAL_SEED, backend: str = "onnxruntime",
                 seconds: float = 12.0, robot: str = "so101", merge: str | None = None, threshold: float | None = None):
        """`merge` and `threshold`: the runtime's chunk merging and when it asks for the next
        chunk (the arm driver's and policy node's settings of the same names; None: their defaults)."""
        policy_dir = PolicyDir(model)
        if backend in ("onnxruntime", "tensorrt"):
            from nsm.policy.export import ensure_onnx_export

            ensure_onnx_export(policy_dir)  # the robot's default backend needs the export: make it once
        self.model, self.backend, self.out = model, backend, out
        # Demo builds the policy and checks its cameras and sizes against the contract
        self.demo = Demo(demo_config(robot=robot, camera=list(policy_dir.features.cameras), episodes=episodes,
                                     seconds=seconds, out=out, seed=seed, policy=model, backend=backend, bag=False,
                                     db_url=f"sqlite:///{out / 'telemetry.db'}",
                                     **{k: v for k, v in (("merge", merge), ("threshold", threshold)) if v is not None}))

    @property
    def total_steps(self) -> int:
        return self.demo.total_steps

    def run(self, on_step: Callable[[int], None] | None = None) -> Evaluation:
        s = self.demo.run(on_step)
        wins = sum(bool(ok) for ok in s.successes)
        fps = self.demo.contract.fps
        times = [step / fps for step in s.success_steps if step is not None]
        cfg = self.demo.cfg
        result = Evaluation(str(self.model), self.backend, len(s.successes), wins, wins / len(s.successes),
                            tuple(round(v, 3) for v in wilson_interval(wins, len(s.successes))),
                            round(float(np.mean(times)), 2) if times else None,
                            f"{cfg.arm.seed}..{cfg.arm.seed + cfg.episodes - 1}", cfg.arm.merge, cfg.policy.threshold,
                            round(float(np.median(s.inference_ms)), 1) if len(s.inference_ms) else float("nan"),
                            str(self.out), None)
        result.sheet = self._sheet(s.episodes, s.successes)
        (self.out / "eval.json").write_text(json.dumps(asdict(result), indent=2))
        return result

    def _sheet(self, episodes: list[Path], successes: list[bool]) -> str | None:
        """Front-camera frames of the first success and the first failure, one row each."""
        rows, captions = {}, None
        for outcome, label in ((True, "success"), (False, "failure")):
            picked = next((p for p, ok in zip(episodes, successes, strict=True) if bool(ok) == outcome), None)
            if picked is not None:
                frames, captions = episode_frames(picked)
                camera = next(iter(frames))
                rows[f"{label}: {picked.name} ({camera})"] = frames[camera]
        if not rows:
            raise NsmError("no episodes to show")
        return str(contact_sheet(self.out / "eval_sheet.png", rows, captions))

"""`nsm sim collect`: expert demonstrations recorded through the real pipeline, as a LeRobotDataset.

The scripted pick-place expert drives the simulated SO-101 through the same runtime,
safety filter, cameras and recorder as any policy (`Demo`); every episode is kept as HDF5,
and the successful ones become a LeRobotDataset (v3) to train on.
"""
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nsm.app.demo import Demo, DemoSummary
from nsm.app.demo_settings import demo_config
from nsm.contract import load_contract
from nsm.errors import NsmError
from nsm.recording.lerobot_convert import hdf5_to_lerobot

EPISODE_SECONDS = 10.0  # the expert's plan takes 9.5 s; the rest is holding at home
TASK = "pick up the cube and put it on the green goal"


@dataclass
class Collection:
    summary: DemoSummary
    dataset: Path
    kept: list[Path]  # the successful episodes, in the dataset


class Collector:
    """Checks every input when built (nothing moves on bad input); `run()` records and converts."""

    def __init__(self, episodes: int, out: Path, seed: int = 0, robot: str = "so101", cameras: list[str] | None = None,
                 repo_id: str = "local/nsm_sim_pick_place", videos: bool = True,
                 image_size: tuple[int, int] | None = None):
        """`image_size` (height, width): the dataset's images at that size (the model's input),
        resized by nsm.policy.image_input; the HDF5 episodes keep the cameras' own size."""
        self.dataset = out / "lerobot"
        if self.dataset.exists():
            raise NsmError(f"{self.dataset} already exists; collect into a new --out folder")
        self.repo_id, self.videos, self.image_size = repo_id, videos, image_size
        contract_cameras = cameras or [c.name for c in load_contract(robot).cameras]
        self.demo = Demo(demo_config(robot=robot, camera=contract_cameras, episodes=episodes, seconds=EPISODE_SECONDS,
                                     out=out / "episodes", seed=seed, db_url=f"sqlite:///{out / 'telemetry.db'}",
                                     bag=False))

    @property
    def total_steps(self) -> int:
        return self.demo.total_steps

    def run(self, on_step: Callable[[int], None] | None = None,
            on_frame: Callable[[], None] | None = None) -> Collection:
        summary = self.demo.run(on_step)
        kept = [path for path, ok in zip(summary.episodes, summary.successes, strict=True) if ok]
        if not kept:
            raise NsmError(f"the expert succeeded in none of the {len(summary.episodes)} episodes (kept in "
                           f"{self.demo.out}); no dataset written")
        hdf5_to_lerobot(kept, self.dataset, self.repo_id, TASK, self.videos, on_frame, self.image_size)
        return Collection(summary, self.dataset, kept)

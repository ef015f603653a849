"""`nsm dataset ...`: the recorded episodes of a folder, listed, checked and gathered for the
converters and viewers, through the one episode reader (nsm.recording.episodes and, for
any recorded format, nsm.recording.sources)."""
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py

from nsm.errors import NsmError
from nsm.recording.bag_convert import episode_to_bag
from nsm.recording.episodes import EpisodeInfo, episode_files, episode_info, frame_count
from nsm.recording.hdf5_writer import sha256_of
from nsm.recording.sources import EpisodeSource, is_bag, open_source


@dataclass(frozen=True)
class InspectedEpisode:
    path: Path
    info: EpisodeInfo | None  # None: a partial episode (recording, or a crash)
    integrity: str  # "ok", "MISMATCH", the stored digest (not verified), "" (none stored)


def inspect_folder(folder: Path, verify: bool = False) -> list[InspectedEpisode]:
    """Every episode of `folder` in numeric order; `verify` recomputes each SHA-256."""
    rows = []
    for path in episode_files(folder, partial=True):
        if path.suffix == ".partial":
            rows.append(InspectedEpisode(path, None, ""))
            continue
        info = episode_info(path)
        integrity = info.sha256
        if verify and info.sha256:
            with h5py.File(path) as f:
                integrity = "ok" if sha256_of(f, info.frames) == info.sha256 else "MISMATCH"
        rows.append(InspectedEpisode(path, info, integrity))
    return rows


def closed_episodes(sources: list[Path]) -> list[Path]:
    """Episode files named directly or found in folders, in numeric order per folder; one error
    when there are none or a named file is missing."""
    files = []
    for source in sources:
        if source.is_dir():
            files += episode_files(source)
        elif source.is_file():
            files.append(source)
        else:
            raise NsmError(f"{source} does not exist")
    if not files:
        raise NsmError(f"no episode_<n>.hdf5 files in {', '.join(map(str, sources))}")
    return files


def total_frames(files: list[Path]) -> int:
    total = 0
    for path in files:
        with h5py.File(path) as f:
            total += frame_count(f)
    return total


def partial_episodes(source: Path) -> list[Path]:
    partials = [p for p in episode_files(source, partial=True) if p.suffix == ".partial"] if source.is_dir() else [source]
    if not partials:
        raise NsmError(f"no *.hdf5.partial episodes in {source}")
    return partials


def to_bags(sources: list[EpisodeSource], out: Path, image_format: str = "jpeg", compression: str | None = None,
            on_episode: Callable[[Path], None] | None = None) -> list[Path]:
    """Each episode as a bag `out/<episode>/`. Stamps start when the episode was recorded, as
    far as the source says (the file's modification time minus the episode's length): RViz
    and `ros2 bag play` then see times of the recording, not of the conversion."""
    bags = []
    for source in sources:
        if source.index is None and is_bag(source.path):
            raise NsmError(f"{source.path} is a bag already")
        with open_source(source) as episode:
            times = episode.joints["state"][0]
            recorded_ns = int(os.stat(source.path).st_mtime_ns - (times[-1] - times[0]) * 1e9) if len(times) else 0
            bags.append(episode_to_bag(episode, out / source.name, start_ns=recorded_ns, image_format=image_format,
                                       compression=compression))
        if on_episode is not None:
            on_episode(bags[-1])
    return bags

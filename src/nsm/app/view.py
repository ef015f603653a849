"""`nsm dataset view`: recorded episodes (HDF5 episodes, rosbag2 bags, LeRobotDatasets) as
Rerun recordings, saved as .rrd files and shown in Rerun's native viewer or its web viewer
on localhost.

A source is an episode_<n>.hdf5 file, a bag folder, a LeRobotDataset, or a folder of HDF5
episodes or bags; each episode becomes one .rrd (one recording). Files are written under a temporary name and renamed when
complete, so a bad or truncated input never leaves half a recording behind.
"""
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from nsm.errors import NsmError
from nsm.recording.sources import EpisodeSource, open_source
from nsm.viewer.rerun_log import save_episode, send_episode
from nsm.viewer.server import viewer_command


def rrd_targets(episodes: list[EpisodeSource], save: Path) -> list[Path]:
    """`save` is the .rrd file for one episode, or a folder that gets <episode>.rrd for each."""
    if save.suffix == ".rrd":
        if len(episodes) > 1:
            raise NsmError(f"{len(episodes)} episodes: --save takes a folder for them, or pick one with --episode")
        return [save]
    return [save / f"{source.name}.rrd" for source in episodes]


def save_views(episodes: list[EpisodeSource], save: Path, on_episode: Callable[[Path], None] | None = None,
               on_frame: Callable[[], None] | None = None) -> list[Path]:
    """One .rrd per episode (see rrd_targets); each complete or not there at all."""
    written = []
    for source, target in zip(episodes, rrd_targets(episodes, save), strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        try:
            with open_source(source) as episode:
                save_episode(episode, partial, on_frame)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        written.append(target)
        if on_episode is not None:
            on_episode(target)
    return written


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def show(rrds: list[Path]) -> subprocess.Popen:
    """The native viewer on the files."""
    return subprocess.Popen(viewer_command(rrds, web=False))


def send_views(episodes: list[EpisodeSource], url: str, on_episode: Callable[[str], None] | None = None) -> None:
    """Each episode as its own recording, sent to the (live) Rerun server at `url`: the server
    then needs no files (serving a file, Rerun 0.41's server keeps a core busy while idle)."""
    for source in episodes:
        with open_source(source) as episode:
            send_episode(episode, url)
        if on_episode is not None:
            on_episode(source.name)

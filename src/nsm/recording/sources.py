"""Where episodes come from: an HDF5 episode, a rosbag2 bag, a LeRobotDataset's episode, or a
folder of HDF5 episodes or bags — each read as EpisodeStreams, so viewers, converters and
the replay node take any of them."""
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nsm.errors import NsmError
from nsm.recording.bag_convert import bag_streams
from nsm.recording.episodes import EpisodeStreams, episode_files, episode_index, open_episode
from nsm.recording.lerobot_convert import is_lerobot_dataset, lerobot_episode_count, lerobot_episode_streams


def is_bag(path: Path) -> bool:
    return path.is_dir() and (path / "metadata.yaml").is_file()


@dataclass(frozen=True)
class EpisodeSource:
    name: str  # episode_<n>: the recording's id and its .rrd's name
    path: Path  # the HDF5 file, the bag folder, or the LeRobotDataset's root
    index: int | None = None  # the episode within a LeRobotDataset


def find_episodes(source: Path, episode: int | None = None) -> list[EpisodeSource]:
    """The episodes `source` names (an HDF5 file, a bag, a LeRobotDataset, a folder of HDF5
    episodes or of bags), in numeric order; `episode`: only episode_<episode>."""
    if not source.exists():
        raise NsmError(f"{source} does not exist")
    if is_lerobot_dataset(source):
        found = [EpisodeSource(f"episode_{k}", source, k) for k in range(lerobot_episode_count(source))]
    elif source.is_file() or is_bag(source):
        found = [EpisodeSource(source.name.removesuffix(".hdf5"), source)]
    else:
        paths = episode_files(source) or sorted((p for p in source.iterdir() if is_bag(p)), key=_bag_order)
        found = [EpisodeSource(p.name.removesuffix(".hdf5"), p) for p in paths]
    if not found:
        raise NsmError(f"{source} holds no episodes: give an episode_<n>.hdf5 file, a rosbag2 bag folder, a "
                       "LeRobotDataset, or a folder of episodes or bags (e.g. runs/episodes)")
    if episode is not None:
        found = [s for s in found if s.name == f"episode_{episode}"]
        if not found:
            raise NsmError(f"{source} has no episode_{episode}; `nsm dataset inspect {source}` lists them")
    return found


def _bag_order(bag: Path) -> tuple[int, str]:
    try:
        return episode_index(bag.with_name(bag.name + ".hdf5")), bag.name
    except NsmError:
        return 1 << 30, bag.name


@contextmanager
def open_source(source: EpisodeSource) -> Iterator[EpisodeStreams]:
    if source.index is not None:
        yield lerobot_episode_streams(source.path, source.index)
    elif is_bag(source.path):
        yield bag_streams(source.path)
    else:
        with open_episode(source.path) as episode:
            yield episode

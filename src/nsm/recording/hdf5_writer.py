"""HDF5 episodes in the ACT/ALOHA layout, written off the control path.

Layout (one file per episode, `episode_<n>.hdf5`, so the ACT repo's loader and LeRobot's
ALOHA converter read a folder of them unchanged):

    /observations/qpos            (T, n) float64
    /observations/qvel            (T, n) float64
    /observations/images/<cam>    (T, H, W, 3) uint8, one chunk per frame
    /action                       (T, n) float64
    /timestamp                    (T,)   float64, seconds since the episode started
    /chunks/actions               (M, n) float64, every action chunk received, one after the other
    /chunks/length                (K,)   int32, actions in each chunk (chunk k: rows sum(length[:k]) on)
    /chunks/observed, /chunks/arrived  (K,) float64, seconds: the observation it was predicted from,
                                  and when it arrived (arrived - observed: its latency as the arm saw it)
    attrs: sim, fps, robot, joint_names, policy, success, contract (YAML), frames

Frames are written off the control path (BackgroundEpisodeWriter). The writer thread appends
to `episode_<n>.hdf5.partial` in HDF5's SWMR mode (single writer, multiple readers: the
file on disk is consistent after every flush),
flushing every `flush_every` frames; `close()` stores the frame count and a SHA-256 of
everything written (attrs `frames`, `sha256`) and renames it. A crash therefore leaves every
closed episode intact and verifiable, and the partial one readable up to its last flush:
`nsm dataset recover` turns it into a valid, truncated episode.
"""
import hashlib
from pathlib import Path

import h5py
import numpy as np

from nsm.contract import RobotContract
from nsm.errors import NsmError
from nsm.recording.background import MIN_FREE_BYTES, BackgroundEpisodeWriter, ChunkRecord, EpisodeFrame

DATASETS = ["observations/qpos", "observations/qvel", "action", "timestamp"]  # then images/<cam>, in order
CHUNK_DATASETS = ["chunks/actions", "chunks/length", "chunks/observed", "chunks/arrived"]  # not in the checksum


COMPRESSIONS = (None, "lzf")

def episode_datasets(f: h5py.File) -> list[str]:
    """The per-frame datasets of an episode file, in the order frames are hashed (cameras by name)."""
    return DATASETS + [f"observations/images/{cam}" for cam in sorted(f["observations/images"])]


def sha256_of(f: h5py.File, frames: int) -> str:
    """The SHA-256 the writer computes: each frame's rows, dataset by dataset, frame by frame."""
    digest = hashlib.sha256()
    names = episode_datasets(f)
    for t in range(frames):
        for name in names:
            digest.update(f[name][t].tobytes())
    return digest.hexdigest()


class Hdf5EpisodeWriter(BackgroundEpisodeWriter):
    def __init__(self, path: Path, contract: RobotContract, cameras: list[str], *, sim: bool, policy: str,
                 queue_size: int = 256, flush_every: int = 30, compression: str | None = None,
                 min_free_bytes: int = MIN_FREE_BYTES):
        """`compression`: None (raw; the default: camera images barely compress and lzf on two 480x640
        cameras runs at 1x real time, see bench/recording.py) or "lzf" (lossless; rendered sim
        images shrink ~20x) for the image datasets."""
        super().__init__(queue_size, min_free_bytes)
        if compression not in COMPRESSIONS:
            raise NsmError(f"unknown HDF5 compression '{compression}'; use one of {', '.join(map(str, COMPRESSIONS))}")
        self._compression = compression
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._contract, self._cameras = contract, cameras
        self._attrs = {"sim": sim, "fps": contract.fps, "robot": contract.robot, "policy": policy,
                       "joint_names": contract.joint_names, "contract": contract.to_yaml()}
        self._flush_every = flush_every
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self.partial, "w", libver="latest")
        except OSError as exc:
            raise NsmError(f"cannot write episodes to {self.path.parent}: {exc.strerror or exc}; choose a writable output "
                           "folder") from None
        self._create_datasets()
        self._file.swmr_mode = True  # from here on the file stays readable whatever happens to this process
        self._digest = hashlib.sha256()
        self._start()

    def _finish(self, success: bool | None) -> Path:
        """Set the outcome and the checksum, rename to the final path."""
        self._file.close()
        if self.error is not None:
            raise self._failed(self.partial) from self.error
        with h5py.File(self.partial, "r+") as f:  # attributes cannot change in SWMR mode
            f.attrs.update({"frames": self.frames, "dropped_frames": self.dropped, "sha256": self._digest.hexdigest()})
            if success is not None:
                f.attrs["success"] = success
        self.partial.rename(self.path)
        return self.path

    def _discard(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)

    def _create_datasets(self) -> None:
        n = len(self._contract.joints)
        f = self._file
        f.attrs.update(self._attrs)
        for name in ("observations/qpos", "observations/qvel", "action"):
            f.create_dataset(name, (0, n), maxshape=(None, n), dtype="f8", chunks=(256, n))
        f.create_dataset("timestamp", (0,), maxshape=(None,), dtype="f8", chunks=(256,))
        f.create_dataset("chunks/actions", (0, n), maxshape=(None, n), dtype="f8", chunks=(1024, n))
        f.create_dataset("chunks/length", (0,), maxshape=(None,), dtype="i4", chunks=(256,))
        for name in ("chunks/observed", "chunks/arrived"):
            f.create_dataset(name, (0,), maxshape=(None,), dtype="f8", chunks=(256,))
        for cam in self._cameras:
            spec = self._contract.camera(cam)
            shape = (spec.height, spec.width, 3)
            f.create_dataset(f"observations/images/{cam}", (0, *shape), maxshape=(None, *shape),
                             dtype="u1", chunks=(1, *shape), compression=self._compression)

    def _append(self, frame: EpisodeFrame) -> None:
        f, t = self._file, self.frames
        rows = {"observations/qpos": frame.qpos, "observations/qvel": frame.qvel, "action": frame.action,
                "timestamp": frame.timestamp}
        rows.update({f"observations/images/{cam}": frame.images[cam] for cam in sorted(self._cameras)})  # hash order
        for name, value in rows.items():
            ds = f[name]
            ds.resize(t + 1, axis=0)
            ds[t] = value
            self._digest.update(np.asarray(value, dtype=ds.dtype).tobytes())
        if (t + 1) % self._flush_every == 0:
            f.flush()

    def _append_chunk(self, chunk: ChunkRecord) -> None:
        """Actions first, then the chunk's row: a crash between them leaves no row pointing past the actions."""
        f, actions = self._file, np.asarray(chunk.actions, float)
        _extend(f["chunks/actions"], actions)
        for name, value in (("chunks/length", len(actions)), ("chunks/observed", chunk.observed),
                            ("chunks/arrived", chunk.arrived)):
            _extend(f[name], np.asarray([value]))


def _extend(ds: h5py.Dataset, rows: np.ndarray) -> None:
    n = ds.shape[0]
    ds.resize(n + len(rows), axis=0)
    ds[n:] = rows

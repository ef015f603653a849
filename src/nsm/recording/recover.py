"""Turn the `*.partial` episode a crash left behind into a valid, truncated episode.

The writer keeps the partial file in HDF5 SWMR mode, so it is readable as of its last
flush even after SIGKILL. Datasets are resized one after the other, so a crash can leave
them one frame apart: the episode is cut to the shortest. The result is a normal episode
file (attrs `frames`, `sha256`, `recovered = True`); the partial file is removed only
after the copy is complete.
"""
from pathlib import Path

import h5py
import numpy as np

from nsm.errors import NsmError
from nsm.recording.hdf5_writer import CHUNK_DATASETS, episode_datasets, sha256_of


def recover(partial: Path) -> Path:
    """Write `episode_<n>.hdf5` from `episode_<n>.hdf5.partial`; returns the new path."""
    if partial.suffix != ".partial":
        raise NsmError(f"{partial} is not a .partial episode")
    final = partial.with_suffix("")
    if final.exists():
        raise NsmError(f"{final} already exists; move it away before recovering {partial.name}")
    try:
        source = h5py.File(partial, "r", libver="latest", swmr=True)
    except OSError as exc:
        raise NsmError(f"{partial} cannot be read ({exc}); it crashed before its first flush") from None
    tmp = final.with_name(final.name + ".recovering")
    with source, h5py.File(tmp, "w") as out:
        names = episode_datasets(source)
        frames = min(source[name].shape[0] for name in names)
        out.attrs.update(dict(source.attrs))
        for name in names:
            ds = source[name]
            out.create_dataset(name, data=ds[:frames], maxshape=(None, *ds.shape[1:]), chunks=ds.chunks)
        out.attrs.update({"frames": frames, "recovered": True, "sha256": sha256_of(out, frames)})
        if "chunks" in source:  # the chunks whose row and actions were both flushed
            lengths = source["chunks/length"][:min(source[n].shape[0] for n in CHUNK_DATASETS[1:])]
            complete = int(np.searchsorted(np.cumsum(lengths), source["chunks/actions"].shape[0], side="right"))
            rows = int(lengths[:complete].sum())
            for name in CHUNK_DATASETS:
                ds = source[name]
                out.create_dataset(name, data=ds[:rows if name == "chunks/actions" else complete],
                                   maxshape=(None, *ds.shape[1:]), chunks=ds.chunks)
    tmp.rename(final)
    partial.unlink()
    return final

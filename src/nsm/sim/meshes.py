"""Lighter copies of the SO-101 visual meshes, for the simulated cameras.

The SO-101 STL meshes hold ~320k triangles; software GL renders them at ~14 fps per
240x320 camera. The visual geoms (not the collision geoms, whose convex hulls stay those
of the original meshes) get copies decimated by `fast_simplification` (quadric error) to
~30% of their triangles (the meshes' many small parts stop it there), which look the same
at camera resolution and render at 30+ fps. The decimated vertices are
cached per source file, so only the first scene on a machine pays the ~5 s.
"""
import hashlib
import os
from pathlib import Path

import mujoco
import numpy as np

REDUCTION = 0.9  # fraction of triangles asked to be removed


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nsm" / "meshes"


def read_stl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (n, 3) and triangles (m, 3) of a binary STL, shared corners merged."""
    raw = path.read_bytes()
    count = int(np.frombuffer(raw, np.uint32, 1, 80)[0])
    if len(raw) != 84 + 50 * count:
        raise ValueError(f"{path} is not a binary STL")
    records = np.frombuffer(raw, np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attr", "<u2")]), count, 84)
    vertices, faces = np.unique(records["corners"].reshape(-1, 3), axis=0, return_inverse=True)
    return vertices.astype(np.float64), faces.reshape(-1, 3).astype(np.int32)


def decimated(path: Path, reduction: float = REDUCTION) -> tuple[np.ndarray, np.ndarray]:
    import fast_simplification

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cached = cache_dir() / f"{path.stem}-{digest}-{reduction}.npz"
    if cached.exists():
        with np.load(cached) as z:
            return z["vertices"], z["faces"]
    vertices, faces = fast_simplification.simplify(*read_stl(path), target_reduction=reduction)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.npz")
    np.savez(tmp, vertices=vertices, faces=faces)
    tmp.replace(cached)  # atomic: parallel test processes may build the same file
    return vertices, faces


def lighten_visual_meshes(spec: mujoco.MjSpec, folder: Path) -> None:
    """Point every visual-only mesh geom of `spec` at a decimated copy of its mesh."""
    meshes = {m.name: m for m in spec.meshes}
    copies: dict[str, str] = {}
    for geom in spec.geoms:
        if geom.type != mujoco.mjtGeom.mjGEOM_MESH or geom.contype or geom.conaffinity:
            continue
        source = meshes[geom.meshname]
        if source.name not in copies:
            vertices, faces = decimated(folder / spec.meshdir / source.file)
            copy = spec.add_mesh(name=f"{source.name}_light", scale=source.scale)
            copy.uservert, copy.userface = vertices.ravel(), faces.ravel()
            copies[source.name] = copy.name
        geom.meshname = copies[source.name]

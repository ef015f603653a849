"""PNG plots people would rather look at than numbers: curves, joint traces, contact sheets.

matplotlib with the Agg backend (no display needed); every function writes one PNG.
"""
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_PYPLOT = threading.Lock()


@contextmanager
def _figure(**subplots):
    """A pyplot figure and its axes (plt.subplots' arguments), closed after. One at a time: pyplot's
    state and matplotlib's text parser are not thread-safe, and `nsm train --models N` finishes its
    models' loss plots from side-by-side threads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with _PYPLOT:
        fig, axes = plt.subplots(**subplots)
        try:
            yield fig, axes
        finally:
            plt.close(fig)


def line_plot(path: Path, series: dict[str, tuple], xlabel: str, ylabel: str, title: str, log_y: bool = False) -> Path:
    """One axis, one line per `series` entry (name -> (x, y))."""
    with _figure(figsize=(8, 4.5), dpi=100) as (fig, ax):
        for name, (x, y) in series.items():
            ax.plot(x, y, label=name)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
    return path


def joint_traces(path: Path, t: np.ndarray, names: list[str], state: np.ndarray, action: np.ndarray,
                 title: str) -> Path:
    """One panel per joint: the measured position and the commanded action over time."""
    rows = (len(names) + 1) // 2
    with _figure(nrows=rows, ncols=2, figsize=(10, 2.2 * rows), dpi=100, sharex=True, squeeze=False) as (fig, axes):
        for k, (ax, name) in enumerate(zip(axes.flat, names, strict=False)):
            ax.plot(t, state[:, k], label="state")
            ax.plot(t, action[:, k], "--", label="action")
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
        for ax in axes.flat[len(names):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=8)
        for ax in axes[-1]:
            ax.set_xlabel("s")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path)
    return path


def contact_sheet(path: Path, rows: dict[str, list[np.ndarray]], captions: list[str] | None = None) -> Path:
    """A grid of frames: one row per entry (label -> images of equal size), written as PNG."""
    from PIL import Image, ImageDraw

    height, width = next(iter(rows.values()))[0].shape[:2]
    columns = max(len(images) for images in rows.values())
    label_h = 16
    sheet = Image.new("RGB", (columns * width, len(rows) * (height + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, images) in enumerate(rows.items()):
        y = r * (height + label_h)
        draw.text((4, y + 2), label, fill="black")
        for c, image in enumerate(images):
            sheet.paste(Image.fromarray(image), (c * width, y + label_h))
            if captions and r == 0:
                draw.text((c * width + 4, y + label_h + 2), captions[c], fill="white")
    sheet.save(path)
    return path


def episode_frames(path: Path, count: int = 8) -> tuple[dict[str, list[np.ndarray]], list[str]]:
    """`count` evenly spaced frames of every camera of an HDF5 episode, and their times."""
    import h5py

    from nsm.recording.episodes import frame_count

    with h5py.File(path) as f:
        frames = frame_count(f)
        picks = np.linspace(0, frames - 1, min(count, frames)).round().astype(int)
        t = f["timestamp"][:frames]
        rows = {cam: [f[f"observations/images/{cam}"][i] for i in picks] for cam in f["observations/images"]}
    return rows, [f"{t[i]:.1f} s" for i in picks]


def plot_episode(path: Path, out: Path, count: int = 8) -> list[Path]:
    """`<episode>_joints.png` (state vs action per joint) and `<episode>_frames.png` (contact sheet)."""
    import h5py

    from nsm.recording.episodes import frame_count

    out.mkdir(parents=True, exist_ok=True)
    stem = path.name.split(".")[0]
    with h5py.File(path) as f:
        frames = frame_count(f)
        names = [str(n) for n in f.attrs["joint_names"]]
        success = f.attrs.get("success", "unknown")
        traces = joint_traces(out / f"{stem}_joints.png", f["timestamp"][:frames], names,
                              f["observations/qpos"][:frames], f["action"][:frames],
                              f"{path.name}: {frames} frames, policy {f.attrs.get('policy', '?')}, success {success}")
    rows, captions = episode_frames(path, count)
    return [traces, contact_sheet(out / f"{stem}_frames.png", rows, captions)]

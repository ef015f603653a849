"""Where the package's shared files (config/, launch/) live.

In a source checkout they sit at the repository root; `pip install` and `colcon build`
install them under `<prefix>/share/nsm/`. Both are searched so the CLI and the nodes find
the same files however nsm was installed.
"""
import os
import sys
from pathlib import Path

from nsm.errors import NsmError

_REPO_ROOT = Path(__file__).resolve().parents[2]


def share_dirs() -> list[Path]:
    """Candidate share folders, most specific first."""
    dirs = []
    if env := os.environ.get("NSM_SHARE_DIR"):
        dirs.append(Path(env))
    dirs.append(_REPO_ROOT)
    dirs.append(Path(sys.prefix) / "share" / "nsm")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / "nsm")
    return dirs


def share_file(relative: str) -> Path:
    """The first existing `relative` path (e.g. 'config/robots/so101.yaml') in share_dirs()."""
    for folder in share_dirs():
        if (folder / relative).exists():
            return folder / relative
    searched = ", ".join(str(d) for d in share_dirs())
    raise NsmError(f"{relative} not found (searched {searched}); set NSM_SHARE_DIR to nsm's share folder")


def prepare_out(out: Path) -> Path:
    """Create `out` and prove it is writable, or fail with one clear line."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".nsm-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise NsmError(f"cannot write to output folder {out}: {exc.strerror or exc}; pass a writable --out") from None
    return out

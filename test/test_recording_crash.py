"""SIGKILL of a recording process mid-episode: closed episodes stay intact and verifiable,
and the partial one is recovered into a valid, truncated episode."""
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from nsm.errors import NsmError
from nsm.recording.episodes import read_chunks
from nsm.recording.hdf5_writer import sha256_of
from nsm.recording.recover import recover

RECORDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from nsm.contract import load_contract
    from nsm.recording.background import ChunkRecord, EpisodeFrame
    from nsm.recording.episodes import next_episode_path
    from nsm.recording.hdf5_writer import Hdf5EpisodeWriter

    out, contract = Path(sys.argv[1]), load_contract("so101")
    rng = np.random.default_rng(0)

    def frame(t):
        image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        return EpisodeFrame(rng.normal(size=6), rng.normal(size=6), rng.normal(size=6), {"wrist": image}, t / 30)

    def writer():
        return Hdf5EpisodeWriter(next_episode_path(out), contract, ["wrist"], sim=True, policy="test", flush_every=30)

    first = writer()
    for t in range(40):
        first.add_frame(frame(t))
    first.close(success=True)
    second = writer()
    for t in range(100):
        second.add_frame(frame(t))
        if t % 10 == 0:
            second.add_chunk(ChunkRecord(np.full((30, 6), t / 10), t / 30, t / 30 + 0.02))
    while second.frames < 100:
        time.sleep(0.01)
    print("recording", flush=True)
    time.sleep(60)
""")


def test_sigkill_keeps_closed_episodes_and_recovers_the_partial_one(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", RECORDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "recording"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    with h5py.File(tmp_path / "episode_0.hdf5") as f:  # closed before the crash: intact and verifiable
        assert f.attrs["frames"] == 40 and f.attrs["success"]
        assert f.attrs["sha256"] == sha256_of(f, 40)
        assert f["observations/images/wrist"].shape == (40, 240, 320, 3)
    partial = tmp_path / "episode_1.hdf5.partial"
    assert partial.exists() and not (tmp_path / "episode_1.hdf5").exists()

    inspect = subprocess.run([sys.executable, "-m", "nsm.cli", "dataset", "inspect", str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
    assert "partial" in inspect.stdout and "recover" in inspect.stdout, inspect.stdout
    cli = subprocess.run([sys.executable, "-m", "nsm.cli", "dataset", "recover", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "recovered" in cli.stdout, cli.stderr
    recovered = tmp_path / "episode_1.hdf5"
    assert recovered.exists() and not partial.exists()
    with h5py.File(recovered) as f:
        frames = f.attrs["frames"]
        assert 90 <= frames <= 100  # everything up to the last flush (every 30 frames) survives
        assert f.attrs["recovered"] and f.attrs["sha256"] == sha256_of(f, frames)
        for name in ("observations/qpos", "observations/qvel", "action", "timestamp", "observations/images/wrist"):
            assert f[name].shape[0] == frames
        assert np.all(np.diff(f["timestamp"][:]) > 0) and list(f.attrs["joint_names"])[0] == "shoulder_pan"
        chunks = read_chunks(f)  # the action chunks flushed with the frames survive too, whole
        assert 9 <= len(chunks) <= 10 and all(c.actions.shape == (30, 6) for c in chunks)
        assert [c.actions[0, 0] for c in chunks] == list(range(len(chunks)))
    with pytest.raises(NsmError, match="not a .partial episode"):
        recover(recovered)



def test_a_full_disk_stops_recording_with_one_error_while_the_robot_keeps_running(tmp_path, monkeypatch):
    """The disk has 2 MB left above the recorder's reserve. The episode stops growing there
    and closes cleanly (HDF5 cannot survive a failed write), the control loop runs to the
    end (every telemetry row is there), the run ends with one error naming the fix, and the
    frames written before are recovered."""
    import shutil

    from sqlalchemy import create_engine, text

    import nsm.recording.background as background
    from nsm.app.demo import Demo
    from nsm.app.demo_settings import demo_config

    out = tmp_path / "run"

    def nearly_full(path):
        used = sum(p.stat().st_size for p in out.glob("episode_*.partial"))
        return shutil._ntuple_diskusage(10**12, used, background.MIN_FREE_BYTES + 2_000_000 - used)

    monkeypatch.setattr(background.shutil, "disk_usage", nearly_full)
    with pytest.raises(NsmError, match=r"recording stopped at frame \d+ .*the disk is full.*nsm dataset recover"):
        Demo(demo_config(seconds=3, camera=["wrist"], hdf5_compression="none", out=out,
                         db_url=f"sqlite:///{out / 'telemetry.db'}", bag=False)).run()
    engine = create_engine(f"sqlite:///{out / 'telemetry.db'}")
    with engine.connect() as conn:
        ticks = conn.execute(text("SELECT count(*) FROM robot_telemetry WHERE data_type = 'joint_states'")).scalar()
    assert ticks == 90  # 3 s at 30 Hz: the loop never stopped for the recorder
    with h5py.File(recover(out / "episode_0.hdf5.partial")) as f:
        assert 0 < f.attrs["frames"] < 90

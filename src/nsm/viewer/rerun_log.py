"""An episode as a Rerun recording: every camera and every joint on one time axis.

The time axis is `time`: seconds since the episode started, as recorded (the control ticks'
times in an HDF5 episode, each message's header stamp in a bag), so a late frame or a
stalled stream shows as a gap instead of being hidden by frame numbering. Entities:

    cameras/<camera>            one JPEG image per recorded frame
    joints/<joint>/<series>     state, command (and more where recorded), one line each
    joints/<joint>/chunks/<k>   where recorded: action chunk k as the trajectory it predicted,
                                from the observation it was predicted from on
    policy/latency_ms           where recorded: each chunk's arrival minus its observation
    episode                     the episode's metadata (robot, policy, success, ...), static

Each episode is its own recording (application `nsm`, recording id = the episode's name),
as LeRobot's dataset viewer shows one episode at a time.
"""
from collections.abc import Callable

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from nsm.image_codec import encode_jpeg
from nsm.recording.episodes import EpisodeStreams

APPLICATION = "nsm"
TIMELINE = "time"
JPEG_QUALITY = 85  # the viewer's images: ~12x smaller than raw frames, artefacts below what a reviewer sees
# one colour per series, the same in every joint's plot
SERIES_COLORS = {"state": (31, 119, 180), "command": (255, 127, 14), "action": (44, 160, 44)}
CHUNK_COLOR = (150, 150, 150)  # predictions in grey under what happened
LATENCY = "policy/latency_ms"


def chunk_entity(joint: str, k: int) -> str:
    return f"joints/{joint}/chunks/{k}"


def camera_entity(camera: str) -> str:
    return f"cameras/{camera}"


def joint_entity(joint: str, series: str) -> str:
    return f"joints/{joint}/{series}"


def layout(cameras: list[str], joint_names: list[str], chunks: bool) -> rrb.Blueprint:
    """Cameras side by side on top, one time-series plot per joint below, the metadata beside."""
    views = [rrb.Spatial2DView(origin=camera_entity(c), name=c) for c in cameras]
    # no legends: a chunk per line would fill them; state blue, command orange, chunks grey
    joints = [rrb.TimeSeriesView(origin=f"joints/{j}", name=j, plot_legend=rrb.PlotLegend(visible=False))
              for j in joint_names]
    if chunks:
        joints.append(rrb.TimeSeriesView(origin="policy", name="chunk latency (ms)",
                                          plot_legend=rrb.PlotLegend(visible=False)))
    top = rrb.Horizontal(*views, rrb.TextDocumentView(origin="episode", name="episode"))
    return rrb.Blueprint(rrb.Vertical(top, rrb.Grid(*joints), row_shares=[2, 3]),
                         rrb.TimePanel(timeline=TIMELINE), collapse_panels=True)


def log_episode(rec: rr.RecordingStream, episode: EpisodeStreams, on_frame: Callable[[], None] | None = None) -> None:
    """Send `episode` into `rec`; `on_frame()` after each camera image (the long part)."""
    rec.log("episode", rr.TextDocument(_metadata(episode), media_type=rr.MediaType.MARKDOWN), static=True)
    for series, (times, values) in episode.joints.items():
        if series not in SERIES_COLORS:
            continue  # positions only (rad): velocities would need a plot of their own
        style_series(rec, episode.joint_names, series)
        log_series(rec, episode.joint_names, series, times, values)
    for k, chunk in enumerate(episode.chunks):
        log_chunk(rec, episode.joint_names, k, chunk.actions, chunk.observed, episode.period)
    if episode.chunks:
        rec.send_columns(LATENCY, indexes=[rr.TimeColumn(TIMELINE, duration=[c.arrived for c in episode.chunks])],
                         columns=rr.Scalars.columns(scalars=[1e3 * (c.arrived - c.observed) for c in episode.chunks]))
    for camera, (times, frames) in episode.cameras.items():
        for t, frame in zip(times, frames, strict=True):
            log_image(rec, camera, t, frame)
            if on_frame is not None:
                on_frame()
    rec.reset_time()


# the pieces a recorded episode (log_episode) and a live run (nsm.viewer.live) are both sent as
def style_series(rec: rr.RecordingStream, joint_names: list[str], series: str) -> None:
    for joint in joint_names:
        rec.log(joint_entity(joint, series), rr.SeriesLines(names=series, colors=SERIES_COLORS.get(series)), static=True)


def log_series(rec: rr.RecordingStream, joint_names: list[str], series: str, times, values) -> None:
    """One series (state, command, ...) of every joint, as columns on the time axis."""
    values = np.asarray(values, float)
    index = [rr.TimeColumn(TIMELINE, duration=np.asarray(times, float))]
    for j, joint in enumerate(joint_names):
        rec.send_columns(joint_entity(joint, series), indexes=index, columns=rr.Scalars.columns(scalars=values[:, j]))


def log_chunk(rec: rr.RecordingStream, joint_names: list[str], k: int, actions: np.ndarray, observed: float,
              period: float) -> None:
    """Chunk `k` as the trajectory it predicted: action i at `observed + i * period`."""
    index = [rr.TimeColumn(TIMELINE, duration=observed + period * np.arange(len(actions)))]
    for j, joint in enumerate(joint_names):
        rec.log(chunk_entity(joint, k), rr.SeriesLines(names=f"chunk {k}", colors=CHUNK_COLOR, widths=1.0), static=True)
        rec.send_columns(chunk_entity(joint, k), indexes=index, columns=rr.Scalars.columns(scalars=actions[:, j]))


def log_image(rec: rr.RecordingStream, camera: str, t: float, frame: np.ndarray) -> None:
    rec.set_time(TIMELINE, duration=float(t))
    rec.log(camera_entity(camera), rr.EncodedImage(contents=encode_jpeg(frame, JPEG_QUALITY).tobytes(),
                                                   media_type="image/jpeg"))


def _metadata(episode: EpisodeStreams) -> str:
    rows = "\n".join(f"| {key} | {value} |" for key, value in episode.meta.items())
    cameras = ", ".join(f"{c} ({len(frames)} frames)" for c, (_, frames) in episode.cameras.items())
    return (f"# {episode.name}\n\n| | |\n|---|---|\n{rows}\n| cameras | {cameras} |\n"
            f"| action chunks | {len(episode.chunks)} |\n")


def save_episode(episode: EpisodeStreams, path, on_frame: Callable[[], None] | None = None) -> None:
    """`episode` as its own recording in the .rrd file `path`, with the default layout."""
    _emit(episode, lambda rec, blueprint: rec.save(path, default_blueprint=blueprint), on_frame)


def send_episode(episode: EpisodeStreams, url: str, on_frame: Callable[[], None] | None = None) -> None:
    """`episode` as its own recording, sent to the Rerun server at `url` (rerun+http://.../proxy)."""
    _emit(episode, lambda rec, blueprint: rec.connect_grpc(url, default_blueprint=blueprint), on_frame)


def _emit(episode: EpisodeStreams, open_sink, on_frame: Callable[[], None] | None) -> None:
    rec = rr.RecordingStream(APPLICATION, recording_id=episode.name)
    rec.set_log_time_enabled(False)  # recorded time is the axis; when this was sent is not
    rec.set_log_tick_enabled(False)
    open_sink(rec, layout(list(episode.cameras), episode.joint_names, bool(episode.chunks)))
    try:
        log_episode(rec, episode, on_frame)
    finally:
        rec.flush()
        rec.disconnect()

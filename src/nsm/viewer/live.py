"""A running robot streamed to Rerun, the same entities as a recorded episode's view, never on
the control path.

The control loop's sink (`tick`), like view_node's topic callbacks, only appends to a
bounded hand-over queue and returns; when the queue is full the item is dropped and counted
(`dropped`), never waited for. A thread of the view's own sends what gathered every `every` seconds: each joint
series as one column (a handful of calls, not one per value) and each camera's newest
image (JPEG). Action chunks are sent as they arrive. The Rerun server that buffers the
stream and serves the web viewer is a process of its own (`rerun --serve-web`), so its
work never holds this interpreter.
"""
import queue
import threading

import numpy as np
import rerun as rr

from nsm.image_codec import encode_jpeg
from nsm.viewer import rerun_log as rl

QUEUE_ITEMS = 1000  # ~10 s of a robot's ticks or topics: a view thread stalled longer drops items (counted)


class LiveView:
    def __init__(self, joint_names: list[str], cameras: list[str], url: str, period: float, every: float = 0.1):
        """Streams to the Rerun server at `url` (rerun+http://host:port/proxy); `period`: the
        control period (a chunk's actions are that far apart)."""
        self.joint_names, self.cameras, self.period, self.every = joint_names, cameras, period, every
        self.rec = rr.RecordingStream(rl.APPLICATION, recording_id="live")
        self.rec.set_log_time_enabled(False)
        self.rec.set_log_tick_enabled(False)
        self.rec.connect_grpc(url, default_blueprint=rl.layout(cameras, joint_names, chunks=True))
        for joint in joint_names:
            for series in ("state", "command"):
                self.rec.log(rl.joint_entity(joint, series), rr.SeriesLines(names=series, colors=rl.SERIES_COLORS[series]),
                             static=True)
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_ITEMS)
        self._offset = 0.0  # seconds from the view's start to the running episode's start
        self.dropped = 0  # items the view had no room for (never waited for)
        self.sent = 0  # joint values and images sent
        self.chunks_sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-view", daemon=True)
        self._thread.start()

    def episode(self, offset: float) -> None:
        """A new episode starts `offset` seconds into the view: one time axis across episodes
        (each episode's own times start at 0)."""
        self._offset = offset

    # what a control loop hands over (nsm demo): one item a tick
    def tick(self, tick) -> None:
        """The control loop's sink: hand over, never wait."""
        t = self._offset + tick.t
        self._put(("tick", t, (tick.reading.position, tick.command, tick.images)))

    # what arrives on topics (view_node), each on its own, times in seconds on the view's axis
    def state(self, t: float, position: np.ndarray) -> None:
        self._put(("state", t, position))

    def command(self, t: float, position: np.ndarray) -> None:
        self._put(("command", t, position))

    def image(self, camera: str, t: float, image: np.ndarray) -> None:
        self._put(("image", t, (camera, image)))

    def chunk(self, actions: np.ndarray, observed: float, arrived: float) -> None:
        """A predicted chunk (times on the episode's axis, as the recorder keeps them)."""
        self._put(("chunk", self._offset + arrived, (np.asarray(actions, float), self._offset + observed)))

    def _put(self, item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._send()
        self.rec.flush()
        self.rec.disconnect()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._send()

    def _send(self) -> None:
        series: dict[str, list] = {"state": [], "command": []}
        images: dict[str, tuple[float, np.ndarray]] = {}
        for kind, t, payload in _drain(self._queue):
            if kind == "tick":
                position, command, frames = payload
                series["state"].append((t, position))
                series["command"].append((t, command))
                images.update({camera: (t, image) for camera, image in frames.items()})
            elif kind in series:
                series[kind].append((t, payload))
            elif kind == "image":
                images[payload[0]] = (t, payload[1])
            else:
                self._send_chunk(t, *payload)
        for name, rows in series.items():
            if rows:
                self._send_series(name, rows)
        for camera, (t, image) in images.items():  # each camera's newest image
            self.rec.set_time(rl.TIMELINE, duration=t)
            self.rec.log(rl.camera_entity(camera), rr.EncodedImage(
                contents=encode_jpeg(image, rl.JPEG_QUALITY).tobytes(), media_type="image/jpeg"))
            self.sent += 1

    def _send_series(self, name: str, rows: list) -> None:
        times, values = [t for t, _ in rows], np.array([v for _, v in rows], float)
        for j, joint in enumerate(self.joint_names):
            self.rec.send_columns(rl.joint_entity(joint, name), indexes=[rr.TimeColumn(rl.TIMELINE, duration=times)],
                                  columns=rr.Scalars.columns(scalars=values[:, j]))
        self.sent += len(rows)

    def _send_chunk(self, arrived: float, actions: np.ndarray, observed: float) -> None:
        index = [rr.TimeColumn(rl.TIMELINE, duration=observed + self.period * np.arange(len(actions)))]
        k, self.chunks_sent = self.chunks_sent, self.chunks_sent + 1
        for j, joint in enumerate(self.joint_names):
            self.rec.log(rl.chunk_entity(joint, k), rr.SeriesLines(colors=rl.CHUNK_COLOR, widths=1.0), static=True)
            self.rec.send_columns(rl.chunk_entity(joint, k), indexes=index, columns=rr.Scalars.columns(scalars=actions[:, j]))
        self.rec.set_time(rl.TIMELINE, duration=arrived)
        self.rec.log(rl.LATENCY, rr.Scalars(1e3 * (arrived - observed)))


def _drain(q: queue.Queue) -> list:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items

"""A running robot streamed to Rerun, the same entities as a recorded episode's view, never on
the control path.

The control loop's sink (`tick`), like view_node's topic callbacks, only appends to a
bounded hand-over queue and returns; when the queue is full the item is dropped and counted
(`dropped`), never waited for. A thread gathers what arrived every `every` seconds into one
batch — each joint series as one column, each camera's newest image, the chunks — and hands
it to the view's own process, which encodes the images (JPEG) and makes the Rerun calls.
That work holds an interpreter for milliseconds a batch; in the loop's process it delayed
the loop's wake-ups (the GIL) and showed in its p99 (bench/live_view.py). The Rerun server
that buffers the stream and serves the web viewer is a process of its own too
(`rerun --serve-web`).
"""
import multiprocessing as mp
import queue
import threading

import numpy as np

QUEUE_ITEMS = 1000  # ~10 s of a robot's ticks or topics: a view thread stalled longer drops items (counted)


class LiveView:
    def __init__(self, joint_names: list[str], cameras: list[str], url: str, period: float, every: float = 0.1):
        """Streams to the Rerun server at `url` (rerun+http://host:port/proxy); `period`: the
        control period (a chunk's actions are that far apart)."""
        self.every = every
        receive, self._send_end = mp.get_context("spawn").Pipe(duplex=False)
        self._process = mp.get_context("spawn").Process(
            target=_stream, args=(receive, joint_names, cameras, url, period), name="nsm-live-view", daemon=True)
        self._process.start()
        receive.close()
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_ITEMS)
        self._offset = 0.0  # seconds from the view's start to the running episode's start
        self.dropped = 0  # items the view had no room for (never waited for)
        self.sent = 0  # joint values and images handed to the view's process
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
        """Send what is left, then wait for the view's process to hand it all to the server."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._hand_over()
        self._send_end.send(None)
        self._send_end.close()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._hand_over()

    def _hand_over(self) -> None:
        """One batch to the view's process (pickling arrays: microseconds of this interpreter)."""
        series: dict[str, list] = {"state": [], "command": []}
        images: dict[str, tuple[float, np.ndarray]] = {}
        chunks = []
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
                chunks.append((t, *payload))
        columns = {name: (np.array([t for t, _ in rows]), np.array([v for _, v in rows], float))
                   for name, rows in series.items() if rows}
        if columns or images or chunks:
            values = sum(len(times) for times, _ in columns.values()) + len(images)
            try:
                self._send_end.send((columns, images, chunks))
            except (BrokenPipeError, OSError):  # the view's process is gone: the robot goes on without it
                self.dropped += values + len(chunks)
            else:
                self.sent, self.chunks_sent = self.sent + values, self.chunks_sent + len(chunks)


def _stream(receive, joint_names: list[str], cameras: list[str], url: str, period: float) -> None:
    """The view's process: batches from the pipe to Rerun's server until None arrives."""
    _Streamer(joint_names, cameras, url, period).run(receive)


class _Streamer:
    def __init__(self, joint_names: list[str], cameras: list[str], url: str, period: float):
        import rerun as rr

        from nsm.viewer import rerun_log

        self.rr, self.log = rr, rerun_log  # imported here: the robot's process never loads Rerun
        self.joint_names, self.period, self.chunks = joint_names, period, 0
        self.rec = rr.RecordingStream(rerun_log.APPLICATION, recording_id="live")
        self.rec.set_log_time_enabled(False)
        self.rec.set_log_tick_enabled(False)
        self.rec.connect_grpc(url, default_blueprint=rerun_log.layout(cameras, joint_names, chunks=True))
        for series in ("state", "command"):
            rerun_log.style_series(self.rec, joint_names, series)

    def run(self, receive) -> None:
        while (batch := _receive(receive)) is not None:
            self.send(*batch)
        self.rec.flush()
        self.rec.disconnect()

    def send(self, columns: dict, images: dict, chunks: list) -> None:
        for arrived, actions, observed in chunks:
            self.log.log_chunk(self.rec, self.joint_names, self.chunks, actions, observed, self.period)
            self.chunks += 1
            self.rec.set_time(self.log.TIMELINE, duration=arrived)
            self.rec.log(self.log.LATENCY, self.rr.Scalars(1e3 * (arrived - observed)))
        for name, (times, values) in columns.items():
            self.log.log_series(self.rec, self.joint_names, name, times, values)
        for camera, (t, image) in images.items():  # each camera's newest image
            self.log.log_image(self.rec, camera, t, image)


def _receive(receive):
    try:
        return receive.recv()
    except EOFError:  # the robot's process ended without closing the view
        return None


def _drain(q: queue.Queue) -> list:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items

"""Helpers the tests share (one module, instead of tests importing each other): a free
port, ROS 2 node processes started the way launch_ros starts them, an observing rclpy node
(topics, diagnostics, services, lifecycle transitions), waiting with a deadline while
watching the processes. The database fixtures live in conftest.py."""
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from nsm.bringup import NODE_PARAMS, NodeLaunch

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(executable, *params, env, cwd, namespace="/nsmtest"):
    """The node's console script with its parameter file and `-p name:=value` overrides."""
    args = [str(BIN / executable), "--ros-args", "-r", f"__ns:={namespace}",
            "--params-file", str(ROOT / "config" / NODE_PARAMS[executable])]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def launch(node: NodeLaunch, env: dict, cwd: Path, namespace: str) -> subprocess.Popen:
    """What launch_ros does for a Node (nsm.bringup.NodeLaunch.command)."""
    return subprocess.Popen(node.command(namespace, cwd), env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stop(proc):
    """SIGINT (as Ctrl-C / launch does), then the exit code and everything it printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out


def wait_for(condition, timeout: float, procs: dict, what: str):
    """`condition()`'s first truthy value; fails at once when one of `procs` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        dead = {name: p for name, p in procs.items() if p.poll() is not None}
        assert not dead, f"{what}: {list(dead)} exited: " + " | ".join(stop(p)[1][-2000:] for p in dead.values())
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


class Observer:
    """The test's own node: joint_states (arrival times, positions), /diagnostics (newest per
    node), any other topic's messages (`watch`), services."""

    def __init__(self, namespace: str):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import JointState

        from nsm.ros.node_main import COMMANDS_QOS

        self.namespace = namespace
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("test_observer", namespace=namespace, context=self.context)
        self.lock = threading.Lock()
        self.states: list[tuple[float, np.ndarray]] = []
        self.diagnostics: dict[str, tuple[int, str, dict]] = {}
        self.messages: dict[str, deque] = {}
        self.node.create_subscription(JointState, "joint_states", self._on_state, COMMANDS_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, COMMANDS_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def watch(self, msg_type, topic: str, qos=None, keep: int | None = None) -> deque:
        """Keep the messages of `topic` (the newest `keep`, or all) in the deque returned."""
        from nsm.ros.node_main import COMMANDS_QOS

        received = self.messages.setdefault(topic, deque(maxlen=keep))
        self.node.create_subscription(msg_type, topic, lambda msg: received.append(msg), qos or COMMANDS_QOS)
        return received

    def _on_state(self, msg) -> None:
        with self.lock:
            self.states.append((time.monotonic(), np.array(msg.position)))

    def _on_diag(self, msg) -> None:
        with self.lock:
            for s in msg.status:
                self.diagnostics[s.name] = (s.level[0], s.message, {kv.key: kv.value for kv in s.values})

    def diag(self, node: str) -> tuple[int, str, dict]:
        with self.lock:
            return self.diagnostics.get(f"{self.namespace}/{node}", (-1, "", {}))

    def states_since(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            recent = [(s, p) for s, p in self.states if s >= t]
        return np.array([s for s, _ in recent]), np.array([p for _, p in recent])

    def call(self, srv_type, service: str, request, timeout: float = 30.0, attempts: int = 1):
        """The service's answer. A request sent right after discovery can lose its response (the
        server has not matched this client's response reader yet, a known DDS race): an
        idempotent call may be sent again, `attempts` times within `timeout`."""
        client = self.node.create_client(srv_type, service)
        assert client.wait_for_service(timeout_sec=timeout), f"{service} not available"
        for _ in range(attempts):
            future = client.call_async(request)
            deadline = time.monotonic() + timeout / attempts
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.05)
            if future.done():
                return future.result()
        raise AssertionError(f"{service} did not answer")

    def transition(self, node: str, transition: str, timeout: float = 60.0) -> bool:
        """Ask lifecycle node `node` (its name in this namespace) for `transition` (configure,
        activate, deactivate, cleanup, unconfigured_shutdown) over lifecycle_msgs' change_state
        service. A lost answer is settled by asking the node's state (the transition is not
        sent twice)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(id=getattr(Transition, f"TRANSITION_{transition.upper()}")))
        try:
            return self.call(ChangeState, f"{self.namespace}/{node}/change_state", request, timeout).success
        except AssertionError:
            goal = {"configure": "inactive", "activate": "active", "deactivate": "inactive",
                    "cleanup": "unconfigured"}.get(transition, "finalized")
            return self.state(node) == goal

    def state(self, node: str) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call(GetState, f"{self.namespace}/{node}/get_state", GetState.Request(), 60.0,
                         attempts=6).current_state.label

    def bring_up(self, nodes) -> None:
        """What bringup.launch.py does for each managed node of the plan: configure, then activate."""
        for node in nodes:
            if node.managed:
                assert self.transition(node.name, "configure"), f"{node.name} failed to configure"
                assert self.transition(node.name, "activate"), f"{node.name} failed to activate"

    def trigger(self, service: str, timeout: float = 30.0):
        from std_srvs.srv import Trigger

        return self.call(Trigger, service, Trigger.Request(), timeout)

    def publish(self, msg_type, topic: str, msg) -> None:
        from nsm.ros.node_main import COMMANDS_QOS

        pub = self.node.create_publisher(msg_type, topic, COMMANDS_QOS)
        for _ in range(10):
            pub.publish(msg)
            time.sleep(0.05)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def first_frames_match_their_worlds(episodes: list[Path], first_seed: int, camera: str = "front") -> list[np.ndarray]:
    """Each recorded episode's first `camera` frame against SimScene(first_seed + k) rendered
    with the arm where the episode recorded it: an episode must start in its own world, not
    with the previous world's last frame. Returns the first frames."""
    import h5py

    from nsm.camera.sim import SimCamera
    from nsm.contract import load_contract
    from nsm.sim.scene import SimScene

    contract = load_contract("so101")
    firsts = []
    for k, episode in enumerate(episodes):
        with h5py.File(episode) as f:
            first, qpos = f[f"observations/images/{camera}"][0], f["observations/qpos"][0]
        scene = SimScene(contract, first_seed + k)
        scene.set_joint_positions(qpos)
        cam = SimCamera(scene, contract.camera(camera)).start()
        try:
            expected = cam.latest().image
        finally:
            cam.stop()
        assert np.abs(first.astype(int) - expected.astype(int)).mean() < 1.0, episode
        firsts.append(first)
    return firsts


def synthetic_episode(path: Path, contract, frames: int = 45, cameras=("front", "wrist")) -> Path:
    """A closed HDF5 episode at exactly 30 Hz with camera-like images (gradients: JPEG keeps
    them close) and three action chunks, written by the recorder's writer."""
    from nsm.recording.background import ChunkRecord, EpisodeFrame
    from nsm.recording.hdf5_writer import Hdf5EpisodeWriter

    y, x = np.mgrid[0:240, 0:320]
    rng = np.random.default_rng(7)
    writer = Hdf5EpisodeWriter(path, contract, list(cameras), sim=True, policy="test-policy")
    for k in range(3):
        writer.add_chunk(ChunkRecord(rng.normal(size=(30, 6)), k / 2, k / 2 + 0.04), block=True)
    for t in range(frames):
        images = {cam: np.stack([(x + t + k * 40) % 256, y, (x + y) // 2], axis=-1).astype(np.uint8)
                  for k, cam in enumerate(cameras)}
        writer.add_frame(EpisodeFrame(rng.normal(size=6), rng.normal(size=6), rng.normal(size=6), images, t / 30),
                         block=True)
    return writer.close(success=True)


def read_rrd(path):
    """(recording id, {entity path: its rows' times in s, sorted}, the metadata text, {camera
    entity: its image at time 0, decoded}) of the single recording in `path`; static rows are
    left out, rows gathered over Rerun's chunks."""
    import rerun.chunk as rrc

    from nsm.image_codec import decode_image

    reader = rrc.RrdReader(path)
    (entry,) = reader.recordings()
    entities: dict[str, list] = {}
    texts, blobs = [], {}
    for chunk in reader.stream():
        batch = chunk.to_record_batch()
        if chunk.entity_path == "/episode":
            texts += [t for row in batch.column("TextDocument:text").to_pylist() for t in row]
        if chunk.is_static:
            continue
        times = batch.column("time").cast("int64").to_numpy() / 1e9
        entities.setdefault(chunk.entity_path, []).append(times)
        if chunk.entity_path.startswith("/cameras/"):
            rows = batch.column("EncodedImage:blob").to_pylist()
            blobs.setdefault(chunk.entity_path, []).extend(zip(times, (bytes(row[0]) for row in rows), strict=True))
    first = {e: decode_image(np.frombuffer(min(rows)[1], np.uint8)) for e, rows in blobs.items()}
    return entry.recording_id, {e: np.sort(np.concatenate(t)) for e, t in entities.items()}, "\n".join(texts), first


def save_stream(grpc_port: int, path: Path, timeout: float = 60.0) -> None:
    """What a Rerun server on localhost holds, saved to `path` by Rerun's own client (`rerun
    URL --save`), once the file stops growing."""
    import rerun_cli

    saver = subprocess.Popen([str(Path(rerun_cli.__file__).parent / "rerun"), f"rerun+http://127.0.0.1:{grpc_port}/proxy",
                              "--save", str(path), "--port", str(free_port())],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    size, deadline = -1, time.monotonic() + timeout
    while time.monotonic() < deadline and (not path.exists() or path.stat().st_size != size or size == 0):
        size = path.stat().st_size if path.exists() else -1
        time.sleep(1.0)
    saver.send_signal(signal.SIGINT)
    saver.wait(timeout=30)


@contextmanager
def web_view(source: Path):
    """`nsm dataset view SOURCE --web` on free localhost ports until the block ends (SIGTERM);
    yields (the URL it printed, web port, gRPC port)."""
    import re

    web, grpc = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nsm.cli", "dataset", "view", str(source), "--web", "--port", str(web),
                             "--grpc-port", str(grpc)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        while "Rerun web viewer" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "nsm dataset view ended before serving"
        yield re.search(r"http://\S+", line).group(0), web, grpc
    finally:
        proc.terminate()
        proc.wait(timeout=30)

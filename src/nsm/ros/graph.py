"""The bringup plan as processes, driven from outside the way an operator's tools drive it.

`Graph` starts each node of `nsm.bringup.plan(...)` as the process launch_ros would start
(`NodeLaunch.command`), and holds one client node that does what `ros2 lifecycle set`,
`ros2 param set`, `ros2 service call` and `ros2 topic echo` do. Benchmarks and the
evaluation through the nodes use it, so what they measure is what `ros2 launch` deploys.
"""
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter

from nsm.bringup import NodeLaunch
from nsm.errors import NsmError

# transition -> (its id, the state it ends in)
TRANSITIONS = {"configure": (Transition.TRANSITION_CONFIGURE, "inactive"),
               "activate": (Transition.TRANSITION_ACTIVATE, "active"),
               "deactivate": (Transition.TRANSITION_DEACTIVATE, "inactive"),
               "cleanup": (Transition.TRANSITION_CLEANUP, "unconfigured")}


class Graph:
    """`with Graph(nodes, namespace, folder) as g:` the processes run (in `folder`, their output
    in folder/<node>.log) until the block ends (SIGINT, as Ctrl-C on `ros2 launch`)."""

    def __init__(self, nodes: list[NodeLaunch], namespace: str, folder: Path, client: str = "nsm_graph_client"):
        self.nodes, self.ns, self.folder, self.client_name = nodes, namespace, folder, client
        self.procs: list[subprocess.Popen] = []
        self._clients: dict[str, object] = {}

    def __enter__(self) -> "Graph":
        env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE=os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"))
        self.folder.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            log = (self.folder / f"{node.name}.log").open("w")
            self.procs.append(subprocess.Popen(node.command(self.ns, self.folder), env=env, cwd=self.folder, stdout=log,
                                               stderr=subprocess.STDOUT))
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(self.client_name, namespace=self.ns, context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        return self

    def __exit__(self, *exc) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        for p in self.procs:
            p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    def spin_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Spin the client until `condition()`; a node process that exits, or the timeout, is an error."""
        if not self._spin(condition, timeout):
            raise NsmError(f"the node graph: waiting for {what}: nothing after {timeout:.0f} s (logs in {self.folder})")

    def _spin(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Spin until `condition()` (True) or the timeout (False); a node process that exits is an error."""
        deadline = time.monotonic() + timeout
        while not condition():
            dead = [f"{n.name} exited {p.poll()}" for n, p in zip(self.nodes, self.procs, strict=True) if p.poll() is not None]
            if dead:
                raise NsmError(f"the node graph: {', '.join(dead)} (logs in {self.folder})")
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self._spin(lambda: time.monotonic() >= end, seconds + 1)

    def subscribe(self, msg_type, topic: str, callback: Callable, qos) -> None:
        self.node.create_subscription(msg_type, topic, callback, qos)

    def _client(self, service: str, srv_type, timeout: float):
        name = f"{self.ns}/{service}"
        if name not in self._clients:
            self._clients[name] = self.node.create_client(srv_type, name)
        self.spin_until(self._clients[name].service_is_ready, timeout, f"service {name}")
        return self._clients[name]

    def call(self, service: str, srv_type, request=None, timeout: float = 60.0, idempotent: bool = False):
        """`ros2 service call`: the answer of `service` (relative to the namespace). A request sent
        right after discovery can lose its answer (a known DDS race: the server has not matched
        this client's reader yet); an `idempotent` request is then sent again."""
        client = self._client(service, srv_type, timeout)
        attempts = 6 if idempotent else 1
        for _ in range(attempts):
            future = client.call_async(request or srv_type.Request())
            if self._spin(future.done, timeout / attempts):
                return future.result()
        raise NsmError(f"the node graph: {self.ns}/{service} did not answer in {timeout:.0f} s (logs in {self.folder})")

    def state(self, node: str) -> str:
        """`ros2 lifecycle get NODE`: its state's label."""
        return self.call(f"{node}/get_state", GetState, timeout=30, idempotent=True).current_state.label

    def transition(self, node: str, *transitions: str, timeout: float = 300.0) -> None:
        """`ros2 lifecycle set NODE T` for each transition; a refused one is an error. An answer
        lost to the DDS race is settled by the node's state (the transition is not sent twice)."""
        for t in transitions:
            client = self._client(f"{node}/change_state", ChangeState, 60)
            future = client.call_async(ChangeState.Request(transition=Transition(id=TRANSITIONS[t][0])))
            deadline = time.monotonic() + timeout
            while not self._spin(future.done, 5.0):
                try:
                    if self.state(node) == TRANSITIONS[t][1]:
                        break
                except NsmError:
                    pass  # busy in the transition (it answers after): wait on; a node that died fails the next spin
                if time.monotonic() > deadline:
                    raise NsmError(f"{node}: lifecycle transition {t} did not finish in {timeout:.0f} s")
            else:
                if not future.result().success:
                    raise NsmError(f"{node}: lifecycle transition {t} failed (its log: {self.folder / node}.log)")

    def set_parameters(self, node: str, **values) -> None:
        """`ros2 param set NODE NAME VALUE` for each value; a refused one is an error."""
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        answer = self.call(f"{node}/set_parameters", SetParameters, request, idempotent=True)
        for name, result in zip(values, answer.results, strict=True):
            if not result.successful:
                raise NsmError(f"{node}: parameter {name} refused: {result.reason}")

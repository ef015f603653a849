"""`nsm dataset play`: a recorded episode published again on the robot's topics, at its
recorded pace, for RViz, rqt and any node on a machine with only nsm (no ros2cli, no
rosbag2): `ros2 bag play` for every format nsm reads (HDF5, bags, LeRobotDatasets).

Topics and QoS are the live robot's: `joint_states` and `joint_commands` (JointState,
reliable), `camera/<cam>/image_raw` (Image rgb8, sensor-data QoS), `action_chunk`
(JointTrajectory, reliable, stamped with its observation, sent when it arrived). Stamps are
now plus the recorded time (divided by `--rate`), so RViz and the recorder see a live
robot. Within one control tick the state and images go out before the command: a recorder
pairing each command with the newest inputs (as recorder_node does) gets the recorded frame.
"""
import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from rclpy.duration import Duration
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from nsm.errors import NsmError
from nsm.recording.episodes import EpisodeStreams
from nsm.recording.sources import find_episodes, open_source
from nsm.ros import convert
from nsm.ros.node_main import COMMANDS_QOS, SENSOR_QOS

COMMAND_AFTER_S = 0.010  # a tick's command follows its state and images by a third of a period (topics are not ordered)
ACK_WAIT_S = 5.0  # the longest wait at the end for subscribers to have the last messages
DISCOVERY_S = 5.0  # the longest wait for every topic's subscribers to match (a late match misses the start)


@dataclass(frozen=True, order=True)
class Event:
    t: float  # seconds since the episode started, as recorded: when it is published
    topic: str
    index: int  # which frame / chunk of the episode


def schedule(episode: EpisodeStreams) -> list[Event]:
    """Every message of the episode, in the order and at the times it is published."""
    events = [Event(float(t), "joint_states", i) for i, t in enumerate(episode.joints["state"][0])]
    events += [Event(float(t) + COMMAND_AFTER_S, "joint_commands", i) for i, t in enumerate(episode.joints["command"][0])]
    for camera, (times, _) in episode.cameras.items():
        events += [Event(float(t), f"camera/{camera}", i) for i, t in enumerate(times)]
    events += [Event(c.arrived, "action_chunk", i) for i, c in enumerate(episode.chunks)]
    return sorted(events)


class Player:
    """Publishes episodes on `node`'s topics; one publisher per topic, made when first needed."""

    def __init__(self, node):
        self.node = node
        self.pubs: dict[str, object] = {}

    def topics(self, episode: EpisodeStreams) -> dict:
        """The publishers `episode` needs (made once per topic)."""
        wanted = {"joint_states": (JointState, "joint_states", COMMANDS_QOS),
                  "joint_commands": (JointState, "joint_commands", COMMANDS_QOS),
                  "action_chunk": (JointTrajectory, "action_chunk", COMMANDS_QOS)}
        wanted |= {f"camera/{c}": (Image, f"camera/{c}/image_raw", SENSOR_QOS) for c in episode.cameras}
        for key, (msg_type, topic, qos) in wanted.items():
            if key not in self.pubs:
                self.pubs[key] = self.node.create_publisher(msg_type, topic, qos)
        return {key: self.pubs[key] for key in wanted}

    def wait_for_subscribers(self, episode: EpisodeStreams, timeout: float) -> None:
        """Until every topic has a subscriber (a recorder), or `timeout` s (RViz listens to a few)."""
        deadline = time.monotonic() + timeout
        pubs = self.topics(episode).values()
        while time.monotonic() < deadline and any(p.get_subscription_count() == 0 for p in pubs):
            time.sleep(0.05)

    def wait_for_acks(self, timeout: float) -> None:
        """Until every subscriber has the reliable topics' last messages (or `timeout` s): a
        process that exits right after publishing can take them with it."""
        for pub in self.pubs.values():
            pub.wait_for_all_acked(Duration(seconds=timeout))

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def play(self, episode: EpisodeStreams, rate: float) -> None:
        """Publish every message of `episode` at its time / rate from now; returns when done."""
        pubs, events = self.topics(episode), schedule(episode)
        wall0, stamp0 = time.monotonic(), self.now()
        first = events[0].t if events else 0.0

        def stamp(t: float) -> float:
            return stamp0 + (t - first) / rate

        for event in events:
            delay = wall0 + (event.t - first) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pubs[event.topic].publish(message(episode, event, stamp))


def message(e: EpisodeStreams, event: Event, stamp_of):
    """The ROS message of `event`, stamped on the playback's clock (`stamp_of(recorded time)`)."""
    if event.topic == "action_chunk":
        chunk = e.chunks[event.index]
        return convert.chunk_to_msg(e.joint_names, chunk.actions, stamp_of(chunk.observed), e.period)
    if event.topic.startswith("camera/"):
        camera = event.topic.removeprefix("camera/")
        image = np.ascontiguousarray(e.cameras[camera][1][event.index])
        return convert.image_to_msg(image, stamp_of(event.t), f"{camera}_camera")
    if event.topic == "joint_commands":
        return convert.joint_state_to_msg(e.joint_names, stamp_of(event.t - COMMAND_AFTER_S),
                                          e.joints["command"][1][event.index])
    velocity = e.joints["velocity"][1][event.index] if "velocity" in e.joints else None
    return convert.joint_state_to_msg(e.joint_names, stamp_of(event.t), e.joints["state"][1][event.index], velocity)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="an episode_<n>.hdf5, a bag, a LeRobotDataset or a folder of episodes")
    parser.add_argument("--episode", type=int, help="only episode_<n>")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed (2: twice as fast)")
    parser.add_argument("--loop", action="store_true", help="play again and again until Ctrl-C")
    parser.add_argument("--namespace", default="/nsm", help="the robot's namespace (bringup's default: /nsm)")
    a = parser.parse_args()
    try:
        if a.rate <= 0:
            raise NsmError(f"--rate must be above 0, got {a.rate}")
        sources = find_episodes(a.source, a.episode)
    except NsmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    rclpy.init()
    node = rclpy.create_node("episode_player", namespace=a.namespace)
    player = Player(node)
    try:
        while True:
            for source in sources:
                with open_source(source) as episode:
                    player.wait_for_subscribers(episode, DISCOVERY_S)
                    print(f"playing {source.name} at {a.rate:g}x", flush=True)
                    player.play(episode, a.rate)
            if not a.loop:
                break
        player.wait_for_acks(ACK_WAIT_S)
    except NsmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print("done", flush=True)


if __name__ == "__main__":
    main()

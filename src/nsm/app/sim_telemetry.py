"""Telemetry of the simulated robot at simulation speed, with known collisions: the
training data of the telemetry models (nsm.ai) without waiting for real time.

The scripted expert does pick-and-place episodes back to back in the MuJoCo scene (no
cameras: nothing renders). Every control step logs the rows the robot logs live —
`joint_states` (position, velocity, effort), `joint_commands` (position) — and once a
second `battery`; rows carry the simulated clock as created_at, so an hour of robot time
lands in the database in a couple of minutes. Collisions are external pushes on the
gripper (random direction, 4-12 N, 0.2-0.6 s, Poisson in time); each is logged as a
`collision` row (start, end, force): the ground truth for the collision-risk model. The
battery is small on purpose (`battery_ah`) so runs contain whole discharges; an empty pack
is swapped for a full one, as an operator would.
"""
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nsm.contract import Observation, RobotContract
from nsm.sim.battery import SimBattery
from nsm.sim.expert import PickPlaceExpert
from nsm.sim.scene import SimScene
from nsm.telemetry import rows

PUSH_NEWTONS = (4.0, 12.0)
PUSH_SECONDS = (0.2, 0.6)


@dataclass(frozen=True)
class SimTelemetrySummary:
    steps: int
    episodes: int
    collisions: int
    battery_swaps: int
    start: float  # Unix time of the first row
    end: float


def simulate_telemetry(contract: RobotContract, log: Callable[[str, dict, float], None], seconds: float, start: float,
                       seed: int = 0, battery_ah: float = 0.05, pushes_per_minute: float = 6.0,
                       on_step: Callable[[int], None] | None = None) -> SimTelemetrySummary:
    """Run `seconds` of robot time from Unix time `start`, calling `log(data_type, payload, stamp)` per row."""
    rng = np.random.default_rng(seed)
    scene = SimScene(contract, seed)
    expert = PickPlaceExpert(contract, scene)
    expert.reset()
    battery = SimBattery(capacity_ah=battery_ah)
    period, names = contract.period, contract.joint_names
    steps = int(round(seconds * contract.fps))
    episode, episode_step, collisions, swaps, push_until = 0, 0, 0, 0, -1.0
    for step in range(steps):
        t = start + step * period
        if push_until < 0 and rng.random() < pushes_per_minute / 60.0 * period:
            direction = rng.normal(size=3)
            force = rng.uniform(*PUSH_NEWTONS) * direction / np.linalg.norm(direction)
            push_until = t + rng.uniform(*PUSH_SECONDS)
            scene.push(force)
            collisions += 1
            log("collision", {"value": 1.0, "start": t, "end": push_until, "force": force.tolist()}, t)
        elif push_until >= 0 and t >= push_until:
            scene.push(None)
            push_until = -1.0
        if episode_step >= len(expert.plan):
            episode += 1
            episode_step = 0
            scene.reset(seed + episode)
            expert.reset()
        command = expert.predict_chunk(Observation(episode_step, t, None, {}))[0]
        scene.step(command)
        episode_step += 1
        position, velocity = scene.joint_state()
        effort = scene.actuator_effort()
        log("joint_states", rows.joint_states(names, position, velocity, effort), t)
        log("joint_commands", rows.joint_commands(names, command), t)
        battery.update(period, effort)
        if step % int(round(contract.fps)) == 0:
            log("battery", rows.battery(battery.voltage, battery.current, battery.charge), t)
        if battery.charge <= 0.0:
            battery, swaps = SimBattery(capacity_ah=battery_ah), swaps + 1
        if on_step is not None:
            on_step(step)
    return SimTelemetrySummary(steps, episode + 1, collisions, swaps, start, start + steps * period)

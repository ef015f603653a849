"""What every benchmark records beside its numbers: the command and the machine."""
import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()}


def _this_run() -> dict:
    return {"command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}


def write_result(name: str, results: dict, added: list | None = None) -> Path:
    """`added`: the `add_to_result` records of entries carried over from the result this replaces."""
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, **_this_run(), "results": results} | ({"added": added} if added else {})
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def add_to_result(name: str, entries: dict, key: str | None = None) -> Path:
    """Add entries to the results (or under results[key]) of a committed result whose own run
    cannot be repeated cheaply (hours of CPU, its work folders possibly gone): its command
    stays, and this run's command, date and machine are recorded under "added" with the
    entries' names."""
    path = RESULTS / f"{name}.json"
    record = json.loads(path.read_text())
    (record["results"].setdefault(key, {}) if key else record["results"]).update(entries)
    record.setdefault("added", []).append(_this_run() | {"entries": sorted(entries)})
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def run_expert_plan(contract, scene, plan):
    """Play a scripted expert's plan through the safety filter into the simulated arm, as `nsm
    sim collect` does (physics only, no cameras); the filter is returned for its counts."""
    from nsm.arm.safety import SafetyFilter

    safety = SafetyFilter(contract, scene.joint_state()[0])
    for step, row in enumerate(plan):
        scene.step(safety.filter(row, step * contract.period))
    return safety

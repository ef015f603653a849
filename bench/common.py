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


def write_result(name: str, results: dict) -> Path:
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "command": shlex.join([Path(sys.executable).name, *sys.argv]),
              "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(), "results": results}
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

"""Preprocessing declared once and saved beside the model, so training and live inference
run the same code on the same parameters.

A model reads *channels* (`data_type.field` of telemetry rows, e.g.
`joint_states.effort`). For each window end time the channels are resampled onto a fixed
grid (`window` samples at `rate_hz`, linear interpolation between the raw rows, whatever
rate they arrived at), median-filtered inside the window, reduced to features by the
kind's feature function, and scaled with the mean/std fitted on the training span.
Training calls `transform` with thousands of window ends over the whole history; the live
predictor calls the very same `transform` with one end over its short buffer, so a
window's features are identical in both (test_ai_preprocess checks it).
"""
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict

from nsm.errors import NsmError

Signals = dict[str, tuple[np.ndarray, np.ndarray]]  # channel -> (times (N,), values (N, k)), times ascending


def signals_from_rows(rows: Iterable[tuple[str, float, dict]], channels: list[str]) -> Signals:
    """Channel arrays from (data_type, unix time, payload) rows; rows without a channel's
    field (or with a non-numeric one) are skipped for that channel."""
    wanted: dict[str, list[str]] = {}
    for channel in channels:
        data_type, field = channel.split(".", 1)
        wanted.setdefault(data_type, []).append(field)
    times: dict[str, list[float]] = {c: [] for c in channels}
    values: dict[str, list] = {c: [] for c in channels}
    for data_type, stamp, payload in rows:
        for field in wanted.get(data_type, ()):
            value = payload.get(field)
            if isinstance(value, (int, float)) or (isinstance(value, list) and value
                                                   and all(isinstance(v, (int, float)) for v in value)):
                times[f"{data_type}.{field}"].append(stamp)
                values[f"{data_type}.{field}"].append(value if isinstance(value, list) else [value])
    out = {}
    for channel in channels:
        t = np.asarray(times[channel], float)
        v = np.asarray(values[channel], float).reshape(len(t), -1)
        order = np.argsort(t, kind="stable")
        out[channel] = (t[order], v[order])
    return out


def resample(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Values at the grid times (any shape G), linear between samples, held at the ends: G + (k,)."""
    flat = grid.ravel()
    return np.stack([np.interp(flat, times, values[:, j]) for j in range(values.shape[1])], axis=-1) \
        .reshape(*grid.shape, values.shape[1])


def median_filter(windows: np.ndarray, kernel: int) -> np.ndarray:
    """Running median along axis 1 (time inside each window), edges repeated: spikes of a
    single sample (a lost servo packet) do not become features."""
    if kernel <= 1:
        return windows
    half = kernel // 2
    padded = np.pad(windows, ((0, 0), (half, half), (0, 0)), mode="edge")
    return np.median(sliding_window_view(padded, kernel, axis=1), axis=-1)


def _slope(windows: np.ndarray, rate_hz: float) -> np.ndarray:
    """Least-squares slope per second along axis 1: (N, W, k) -> (N, k)."""
    x = np.arange(windows.shape[1]) / rate_hz
    x = x - x.mean()
    return np.einsum("w,nwk->nk", x, windows - windows.mean(axis=1, keepdims=True)) / (x @ x)


def battery_features(w: dict[str, np.ndarray], rate_hz: float) -> tuple[np.ndarray, list[str]]:
    percent, volts, amps = w["battery.value"], w["battery.voltage"], w["battery.current"]
    columns = [percent[:, -1, 0], volts[:, -1, 0], amps.mean(axis=1)[:, 0], amps.max(axis=1)[:, 0],
               _slope(percent, rate_hz)[:, 0], _slope(volts, rate_hz)[:, 0]]
    names = ["percent", "voltage", "current_mean", "current_max", "percent_per_s", "voltage_per_s"]
    return np.stack(columns, axis=1), names


def collision_features(w: dict[str, np.ndarray], rate_hz: float) -> tuple[np.ndarray, list[str]]:
    """Per joint: tracking error (command - position) mean/max magnitude, effort mean/max
    magnitude and swing, speed max: a push shows as effort and error no planned move explains."""
    error = np.abs(w["joint_commands.position"] - w["joint_states.position"])
    effort = w["joint_states.effort"]
    speed = np.abs(w["joint_states.velocity"])
    parts = {"error_mean": error.mean(axis=1), "error_max": error.max(axis=1),
             "effort_mean": np.abs(effort).mean(axis=1), "effort_max": np.abs(effort).max(axis=1),
             "effort_swing": effort.max(axis=1) - effort.min(axis=1), "speed_max": speed.max(axis=1)}
    names = [f"{name}_{j}" for name, block in parts.items() for j in range(block.shape[1])]
    return np.concatenate(list(parts.values()), axis=1), names


FeatureFn = Callable[[dict[str, np.ndarray], float], tuple[np.ndarray, list[str]]]
KINDS: dict[str, tuple[list[str], FeatureFn]] = {
    "battery": (["battery.value", "battery.voltage", "battery.current"], battery_features),
    "collision": (["joint_states.position", "joint_states.velocity", "joint_states.effort",
                   "joint_commands.position"], collision_features),
}


class Preprocessing(BaseModel):
    """Everything between telemetry rows and the model's input, saved as preprocessing.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["battery", "collision"]
    rate_hz: float
    window: int  # samples per window
    stride: int = 1  # a window every `stride` samples: training windows, and live predictions
    median: int = 1  # median filter kernel inside the window (1: off)
    mean: list[float] = []  # fitted on the training span
    std: list[float] = []

    @classmethod
    def for_kind(cls, kind: str, **overrides) -> "Preprocessing":
        defaults = {"battery": {"rate_hz": 1.0, "window": 30, "stride": 1, "median": 5},
                    "collision": {"rate_hz": 30.0, "window": 15, "stride": 3, "median": 1}}
        if kind not in defaults:
            raise NsmError(f"unknown model type '{kind}'; use one of {', '.join(defaults)}")
        return cls(kind=kind, **(defaults[kind] | overrides))

    @property
    def channels(self) -> list[str]:
        return KINDS[self.kind][0]

    @property
    def span(self) -> float:
        """Seconds of history one window covers."""
        return (self.window - 1) / self.rate_hz

    @property
    def every(self) -> float:
        """Seconds between windows."""
        return self.stride / self.rate_hz

    def features(self, signals: Signals, ends: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Unscaled features (N, F) of the windows ending at `ends` (N,)."""
        ends = np.asarray(ends, float)
        grid = ends[:, None] - (np.arange(self.window)[::-1] / self.rate_hz)[None, :]
        windows = {}
        for channel in self.channels:
            times, values = signals[channel]
            if len(times) == 0:
                raise NsmError(f"no '{channel}' telemetry: the {self.kind} model needs it")
            windows[channel] = median_filter(resample(times, values, grid), self.median)
        return KINDS[self.kind][1](windows, self.rate_hz)

    def fit(self, signals: Signals, ends: np.ndarray) -> "Preprocessing":
        x, _ = self.features(signals, ends)
        std = x.std(axis=0)
        return self.model_copy(update={"mean": x.mean(axis=0).tolist(), "std": np.where(std > 1e-9, std, 1.0).tolist()})

    def transform(self, signals: Signals, ends: np.ndarray) -> np.ndarray:
        """Scaled float32 features, the model's input."""
        if not self.mean:
            raise NsmError("preprocessing is not fitted (no mean/std): fit it on the training span first")
        x, _ = self.features(signals, ends)
        return ((x - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / "preprocessing.json"
        path.write_text(json.dumps(self.model_dump(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> "Preprocessing":
        path = Path(folder) / "preprocessing.json"
        if not path.is_file():
            raise NsmError(f"{path} not found: not a telemetry model folder (train one with `nsm ai train`)")
        return cls.model_validate_json(path.read_text())

"""One telemetry model, live: rows in, a prediction whenever a window is due.

The predictor keeps the last few seconds of each channel the model reads, and when every
channel has data `prep.every` seconds past the previous window end, it runs the saved
Preprocessing's `transform` on that buffer (the same function training ran over the
history) and the ONNX model on ONNX Runtime.
"""
import json
import math
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nsm.ai.preprocess import Preprocessing
from nsm.ai.train import model_output
from nsm.errors import NsmError


@dataclass(frozen=True)
class Prediction:
    robot_id: str
    model: str
    value: float
    confidence: float | None
    unit: str
    message: str
    sample_time: float  # Unix s: the end of the window (the newest sample it used)
    received_at: float  # Unix s: when that sample reached the worker
    predicted_at: float  # Unix s

    def update_data(self) -> dict:
        """The hub message (README "Live predictions" documents it)."""
        data = asdict(self)
        timestamps = {"sample": data.pop("sample_time"), "received": data.pop("received_at"),
                      "predicted": data.pop("predicted_at")}
        return {"type": "update_data", "data": {"type": "ai_prediction", **data, "timestamps": timestamps}}


class MalformedRow(ValueError):
    """A telemetry row the model cannot use (missing field, wrong width, not a number)."""


def _message(kind: str, value: float) -> str:
    if kind == "collision":
        return f"collision risk {value:.0%}"
    return f"battery empty in {value / 60:.1f} min"


class LivePredictor:
    def __init__(self, folder: Path):
        import onnxruntime as ort

        folder = Path(folder)
        self.prep = Preprocessing.load(folder)
        card_path = folder / "card.json"
        if not (folder / "model.onnx").is_file() or not card_path.is_file():
            raise NsmError(f"{folder} lacks model.onnx or card.json: train it with `nsm ai train`")
        self.card = json.loads(card_path.read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # small models: a thread pool costs more than it saves
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.name = self.card["model"]
        self.keep = self.prep.span + 2 * self.prep.every + 1.0  # seconds of history held
        self.buffers: dict[str, deque] = {c: deque() for c in self.prep.channels}
        self.widths: dict[str, int] = {}
        self.fields: dict[str, list[tuple[str, str]]] = {}
        for channel in self.prep.channels:
            data_type, field = channel.split(".", 1)
            self.fields.setdefault(data_type, []).append((channel, field))
        self.last_end = -math.inf

    @property
    def data_types(self) -> set[str]:
        return set(self.fields)

    def update(self, robot_id: str, data_type: str, stamp: float, payload: dict,
               received_at: float | None = None) -> Prediction | None:
        """Take one row; a Prediction when a window is due. MalformedRow for a row it cannot use."""
        rows = [(channel, self._parse(channel, stamp, payload.get(field)))
                for channel, field in self.fields.get(data_type, ())]  # all fields checked before any is kept
        for channel, row in rows:
            buffer = self.buffers[channel]
            buffer.append((stamp, row))
            while buffer[0][0] < stamp - self.keep:
                buffer.popleft()
        end = min((b[-1][0] for b in self.buffers.values() if b), default=-math.inf)
        if not all(self.buffers.values()) or end < self.last_end + self.prep.every - 1e-6:
            return None
        if end - max(b[0][0] for b in self.buffers.values()) < self.prep.span:
            return None  # still filling the first window
        self.last_end = end
        signals = {c: (np.array([t for t, _ in b]), np.array([v for _, v in b])) for c, b in self.buffers.items()}
        value = float(model_output(self.session, self.prep.transform(signals, np.array([end])))[0])
        if self.name == "battery":
            value = max(value, 0.0)
        confidence = max(value, 1 - value) if self.name == "collision" else self.card.get("confidence")
        return Prediction(robot_id, self.name, value, confidence, self.card["unit"], _message(self.name, value),
                          end, time.time() if received_at is None else received_at, time.time())

    def _parse(self, channel: str, stamp: float, value) -> list:
        row = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        if not isinstance(row, list) or not row or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in row):
            raise MalformedRow(f"{channel}: {value!r} is not a finite number or list of numbers")
        width = self.widths.setdefault(channel, len(row))
        if len(row) != width:
            raise MalformedRow(f"{channel}: {len(row)} values, this stream had {width}")
        buffer = self.buffers[channel]
        if buffer and stamp < buffer[-1][0]:
            raise MalformedRow(f"{channel}: row at {stamp} is older than the previous one ({buffer[-1][0]})")
        return row

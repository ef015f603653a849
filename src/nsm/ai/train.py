"""`nsm ai train`: a telemetry model from `robot_telemetry`, exported to ONNX with a model card.

Data comes through the export API (nsm.telemetry.export, the AI team's query), is turned
into windows by the model's Preprocessing (fitted on the training span only) and split
by time: the last `holdout` of the time range is never seen in training and gives the
card's metrics, so they say how the model does on the robot's future, not on shuffled
neighbours of its training windows.

- battery: seconds until the pack is down to EMPTY_PERCENT, from the battery rows
  (scikit-learn gradient boosting); compared with extrapolating the recent discharge slope.
- collision: probability that the arm is being pushed / has hit something, from tracking
  error, effort and speed (random forest, labels from the `collision` rows the simulator
  logs); AUROC, precision, recall, collisions caught and false alarms per minute.

The folder holds model.onnx, preprocessing.json, card.json, MODEL_CARD.md, heldout.png.
"""
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nsm.ai.preprocess import Preprocessing, Signals, signals_from_rows
from nsm.errors import NsmError

EMPTY_PERCENT = 5.0  # "empty": the pack should be swapped
SWAP_JUMP = 20.0  # percent rising by more than this between rows: a fresh pack
ONNX_INPUT = "features"
UNITS = {"battery": "s", "collision": "probability"}


@dataclass(frozen=True)
class Dataset:
    signals: Signals
    ends: np.ndarray  # window end times (Unix s)
    y: np.ndarray
    rows: dict[str, int]  # rows read per data type
    events: np.ndarray  # collision intervals (n, 2), empty for battery


def read_rows(db_url: str, robot_id: str, data_types: list[str]) -> tuple[list[tuple[str, float, dict]], dict[str, int]]:
    """(data_type, unix time, payload) rows through the export API, and counts per type."""
    import pandas as pd

    from nsm.telemetry.db import connect
    from nsm.telemetry.export import to_dataframe

    epoch = pd.Timestamp(0, tz="UTC")

    engine = connect(db_url)
    rows, counts = [], {}
    try:
        for data_type in data_types:
            frame = to_dataframe(engine, robot_id, data_type, with_payload=True)
            counts[data_type] = len(frame)
            if len(frame):
                stamps = (frame["created_at"] - epoch).dt.total_seconds().to_numpy()
                rows += [(data_type, float(t), json.loads(p)) for t, p in zip(stamps, frame["payload"], strict=True)]
    finally:
        engine.dispose()
    return rows, counts


def battery_dataset(signals: Signals, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Window ends at the battery rows and seconds from there to EMPTY_PERCENT in the same pack."""
    t, v = signals["battery.value"]
    percent = v[:, 0]
    cycle = np.concatenate([[0], np.cumsum(np.diff(percent) > SWAP_JUMP)])
    ends, y = [], []
    for c in np.unique(cycle):
        idx = np.flatnonzero(cycle == c)
        empty = idx[percent[idx] <= EMPTY_PERCENT]
        if not len(empty):
            continue  # this pack never ran down in the data: its remaining time is unknown
        t_empty = t[empty[0]]
        keep = idx[(t[idx] <= t_empty) & (t[idx] - t[idx[0]] >= prep.span)]
        ends.append(t[keep])
        y.append(t_empty - t[keep])
    if not ends:
        raise NsmError(f"no battery pack ran down to {EMPTY_PERCENT:g}% in this telemetry: the remaining time cannot be "
                       "learned; record longer runs (nsm sim telemetry --seconds ... --battery-ah ...)")
    return np.concatenate(ends), np.concatenate(y)


def collision_dataset(signals: Signals, prep: Preprocessing, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window ends every `prep.stride` joint_states rows; 1 when the window overlaps a push."""
    t = signals["joint_states.position"][0]
    ends = t[(t - t[0]) >= prep.span][::prep.stride]
    if not len(events):
        raise NsmError("no `collision` rows for this robot: the collision model learns from labelled collisions; "
                       "record them with `nsm sim telemetry` (pushes) or log them as data_type 'collision'")
    starts, stops = events[:, 0], events[:, 1]
    overlap = (ends[:, None] - prep.span <= stops[None, :]) & (ends[:, None] >= starts[None, :])
    return ends, overlap.any(axis=1).astype(np.int64)


def build_dataset(db_url: str, robot_id: str, prep: Preprocessing) -> Dataset:
    data_types = sorted({c.split(".")[0] for c in prep.channels} | ({"collision"} if prep.kind == "collision" else set()))
    rows, counts = read_rows(db_url, robot_id, data_types)
    missing = [d for d in data_types if not counts.get(d)]
    if missing and missing != ["collision"]:
        raise NsmError(f"no {', '.join(missing)} rows for robot '{robot_id}' in the database; check --robot "
                       f"(`nsm telemetry export` lists what is there) or record telemetry first")
    signals = signals_from_rows(rows, prep.channels)
    if prep.kind == "battery":
        ends, y = battery_dataset(signals, prep)
        events = np.empty((0, 2))
    else:
        events = np.array([[p["start"], p["end"]] for d, _, p in rows if d == "collision"
                           and isinstance(p.get("start"), (int, float)) and isinstance(p.get("end"), (int, float))],
                          dtype=float).reshape(-1, 2)
        ends, y = collision_dataset(signals, prep, events)
    return Dataset(signals, ends, y, counts, events)


def split_by_time(ends: np.ndarray, holdout: float, gap: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Boolean masks (train, test) and the cut time: test = the last `holdout` of the time range;
    training windows end at least `gap` s before it, so no window straddles the cut."""
    cut = ends.min() + (1 - holdout) * (ends.max() - ends.min())
    return ends < cut - gap, ends >= cut, float(cut)


def _estimator(kind: str):
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier

    if kind == "battery":
        return GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05, random_state=0)
    return RandomForestClassifier(n_estimators=100, max_depth=10, min_samples_leaf=2, class_weight="balanced",
                                  random_state=0, n_jobs=1)


def export_onnx(model, n_features: int, path: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    onx = convert_sklearn(model, initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))], options=options,
                          target_opset={"": 17, "ai.onnx.ml": 3})
    path.write_bytes(onx.SerializeToString())


def onnx_predict(path: Path, x: np.ndarray) -> np.ndarray:
    """The exported model's output: seconds (battery) or probability of a collision."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return model_output(session, x)


def model_output(session, x: np.ndarray) -> np.ndarray:
    outputs = session.run(None, {ONNX_INPUT: x})
    names = [o.name for o in session.get_outputs()]
    if "probabilities" in names:
        return np.asarray(outputs[names.index("probabilities")])[:, 1]
    return np.asarray(outputs[0]).reshape(-1)


def battery_metrics(y: np.ndarray, pred: np.ndarray, raw: np.ndarray, names: list[str]) -> dict:
    percent, slope = raw[:, names.index("percent")], raw[:, names.index("percent_per_s")]
    baseline = np.where(slope < -1e-6, (percent - EMPTY_PERCENT) / -np.minimum(slope, -1e-6), np.nan)
    within = np.abs(pred - y) <= 0.2 * np.maximum(y, 60.0)
    return {"mae_s": float(np.mean(np.abs(pred - y))),
            "baseline_slope_mae_s": float(np.nanmean(np.abs(baseline - y))),
            "within_20pct": float(within.mean()), "windows": len(y)}


def collision_metrics(ends: np.ndarray, y: np.ndarray, p: np.ndarray, events: np.ndarray, span: float) -> dict:
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    alarm = p >= 0.5
    in_test = events[(events[:, 0] >= ends.min()) & (events[:, 1] <= ends.max())]
    caught = [bool(np.any(alarm & (ends >= s) & (ends - span <= e))) for s, e in in_test]
    minutes = (ends.max() - ends.min()) / 60
    false = alarm & (y == 0)
    false_alarms = int(false[0]) + int(np.sum(false[1:] & ~false[:-1]))  # runs of alarming windows
    return {"auroc": float(roc_auc_score(y, p)) if len(set(y)) == 2 else None,
            "precision": float(precision_score(y, alarm, zero_division=0)),
            "recall": float(recall_score(y, alarm, zero_division=0)),
            "collisions": len(in_test), "collisions_caught": int(sum(caught)),
            "false_alarms_per_min": false_alarms / max(minutes, 1e-9),
            "windows": len(y), "positive_windows": int(y.sum())}


def _plot(path: Path, kind: str, ends: np.ndarray, y: np.ndarray, pred: np.ndarray) -> None:
    from nsm.plots import line_plot

    t = (ends - ends[0]) / 60
    if kind == "battery":
        line_plot(path, {"true remaining": (t, y / 60), "predicted": (t, pred / 60)}, "held-out time (min)",
                  "minutes to empty", "battery model on the held-out span")
    else:
        line_plot(path, {"collision (label)": (t, y), "predicted risk": (t, pred)}, "held-out time (min)",
                  "probability", "collision model on the held-out span")


def train(db_url: str, robot_id: str, kind: str, out: Path, holdout: float = 0.25) -> dict:
    """Train, check the ONNX export against scikit-learn, write the model folder; returns the card."""
    if not 0.05 <= holdout <= 0.5:
        raise NsmError(f"--holdout {holdout} must be between 0.05 and 0.5 (the share of the time range held out)")
    started = time.time()
    prep = Preprocessing.for_kind(kind)
    data = build_dataset(db_url, robot_id, prep)
    train_mask, test_mask, cut = split_by_time(data.ends, holdout, prep.span)
    if train_mask.sum() < 20 or test_mask.sum() < 5 or (kind == "collision" and (
            len(set(data.y[train_mask])) < 2 or len(set(data.y[test_mask])) < 2)):
        raise NsmError(f"not enough telemetry to train and hold out: {int(train_mask.sum())} training and "
                       f"{int(test_mask.sum())} held-out windows (collision: both classes in each); record longer runs")
    prep = prep.fit(data.signals, data.ends[train_mask])
    x = prep.transform(data.signals, data.ends)
    model = _estimator(kind).fit(x[train_mask], data.y[train_mask])
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, x.shape[1], out / "model.onnx")
    x_test, y_test, ends_test = x[test_mask], data.y[test_mask], data.ends[test_mask]
    pred = onnx_predict(out / "model.onnx", x_test)
    reference = model.predict_proba(x_test)[:, 1] if kind == "collision" else model.predict(x_test)
    if not np.allclose(pred, reference, atol=1e-3 * max(1.0, float(np.abs(reference).max()))):
        raise NsmError("the ONNX export disagrees with scikit-learn on the held-out windows; report this with "
                       "the versions of skl2onnx and onnxruntime")
    raw, names = prep.features(data.signals, ends_test)
    metrics = (battery_metrics(y_test, pred, raw, names) if kind == "battery"
               else collision_metrics(ends_test, y_test, pred, data.events, prep.span))
    prep.save(out)
    _plot(out / "heldout.png", kind, ends_test, y_test, pred)
    card = model_card(kind, robot_id, data, names, prep, metrics, cut, type(model).__name__, time.time() - started)
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(card_markdown(card))
    return card


def model_card(kind, robot_id, data: Dataset, names, prep, metrics, cut, estimator, seconds) -> dict:
    import skl2onnx
    import sklearn

    def iso(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    confidence = metrics["within_20pct"] if kind == "battery" else None
    return {"model": kind, "unit": UNITS[kind], "robot_id": robot_id, "estimator": estimator,
            "data": {"from": iso(data.ends.min()), "to": iso(data.ends.max()), "rows": data.rows,
                     "windows": len(data.ends), "held_out_from": iso(cut)},
            "features": names, "channels": prep.channels,
            "preprocessing": {"rate_hz": prep.rate_hz, "window": prep.window, "median": prep.median},
            "metrics_held_out": metrics, "confidence": confidence,
            "target": (f"seconds until the battery is down to {EMPTY_PERCENT:g}%" if kind == "battery"
                       else "probability that the arm is colliding (window overlaps a logged collision)"),
            "versions": {"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__},
            "train_seconds": round(seconds, 1)}


def card_markdown(card: dict) -> str:
    metrics = "\n".join(f"| {k} | {v if not isinstance(v, float) else round(v, 3)} |"
                        for k, v in card["metrics_held_out"].items())
    return f"""# {card['model']} model for {card['robot_id']}

- Predicts: {card['target']} (unit: {card['unit']}).
- Estimator: scikit-learn {card['estimator']}, exported to ONNX (model.onnx, input `{ONNX_INPUT}`).
- Data: `robot_telemetry` from {card['data']['from']} to {card['data']['to']}; rows {card['data']['rows']};
  the time after {card['data']['held_out_from']} was held out (never trained on).
- Preprocessing (preprocessing.json, used live too): {card['preprocessing']}; channels {card['channels']}.
- Features ({len(card['features'])}): {', '.join(card['features'])}.

## Held-out metrics

| metric | value |
|---|---|
{metrics}

heldout.png plots the prediction against the truth over the held-out span.
"""

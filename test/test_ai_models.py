"""Telemetry models trained on simulator telemetry in PostgreSQL (`nsm sim telemetry` ->
`nsm ai train`, the `sim_models` fixture): what the folder holds, how well the models do
on the held-out span, and that live inference computes exactly what training computed."""
import json
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest

from nsm.ai.predictor import LivePredictor
from nsm.ai.preprocess import Preprocessing, median_filter, resample, signals_from_rows
from nsm.ai.train import onnx_predict, read_rows
from nsm.app.sim_telemetry import simulate_telemetry
from nsm.contract import load_contract

pytestmark = pytest.mark.postgres


def simulated_rows(seconds: float, seed: int) -> list[tuple[str, float, dict]]:
    rows = []
    simulate_telemetry(load_contract("so101"), lambda d, p, t: rows.append((d, t, p)), seconds,
                       start=time.time(), seed=seed, battery_ah=0.03)
    return rows


def test_resample_and_median_filter():
    t = np.array([0.0, 1.0, 3.0])
    v = np.array([[0.0], [10.0], [30.0]])
    np.testing.assert_allclose(resample(t, v, np.array([[-1.0, 0.5, 2.0, 5.0]]))[0, :, 0], [0, 5, 20, 30])
    spiky = np.array([[[1.0], [1.0], [50.0], [1.0], [1.0]]])
    np.testing.assert_array_equal(median_filter(spiky, 3)[0, :, 0], [1, 1, 1, 1, 1])


def test_model_folders_hold_onnx_preprocessing_and_a_card(sim_models):
    _, models = sim_models
    for kind, folder in models.items():
        card = json.loads((folder / "card.json").read_text())
        assert card["model"] == kind and card["robot_id"] == "EP01"
        assert card["data"]["rows"]["battery" if kind == "battery" else "joint_states"] > 0
        assert card["data"]["from"] < card["data"]["held_out_from"] < card["data"]["to"]
        prep = Preprocessing.load(folder)
        assert len(prep.mean) == len(card["features"]) == len(prep.std)
        session = ort.InferenceSession(str(folder / "model.onnx"))
        assert session.get_inputs()[0].shape[1] == len(card["features"])
        assert "Held-out metrics" in (folder / "MODEL_CARD.md").read_text()
        assert (folder / "heldout.png").stat().st_size > 10_000


def test_held_out_metrics_are_useful(sim_models):
    _, models = sim_models
    battery = json.loads((models["battery"] / "card.json").read_text())["metrics_held_out"]
    # a pack lasts ~1 min here; the forecast is off by a few seconds at most
    assert battery["windows"] >= 10 and battery["mae_s"] < 10
    collision = json.loads((models["collision"] / "card.json").read_text())["metrics_held_out"]
    assert collision["positive_windows"] > 0 and collision["auroc"] > 0.9
    assert collision["collisions_caught"] >= 0.6 * collision["collisions"] > 0


def test_live_predictions_equal_the_training_computation(sim_models):
    """Rows streamed one by one through LivePredictor give the values the training path
    (Preprocessing.transform over the whole history + the ONNX model) gives at the same window ends."""
    _, models = sim_models
    rows = simulated_rows(45.0, seed=7)  # unseen: another seed than the training data
    for kind, folder in models.items():
        predictor = LivePredictor(folder)
        live = [p for d, t, payload in rows if (p := predictor.update("EP01", d, t, payload)) is not None]
        assert len(live) >= (300 if kind == "collision" else 10)
        prep = Preprocessing.load(folder)
        ends = np.array([p.sample_time for p in live])
        batch = onnx_predict(folder / "model.onnx", prep.transform(signals_from_rows(rows, prep.channels), ends))
        if kind == "battery":
            batch = np.maximum(batch, 0.0)
        np.testing.assert_allclose([p.value for p in live], batch, rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(ends) >= prep.every - 1e-6)


def test_training_reads_through_the_export_api(sim_models):
    dsn, _ = sim_models
    rows, counts = read_rows(dsn, "EP01", ["battery", "collision"])
    assert counts["battery"] == 240 and counts["collision"] > 5
    stamps = [t for d, t, _ in rows if d == "battery"]
    assert np.all(np.diff(stamps) == pytest.approx(1.0, abs=1e-3))  # the simulated clock, not insert time


@pytest.mark.parametrize("args, error", [
    (["--robot", "NOPE", "--type", "battery"], "no battery rows for robot 'NOPE'"),
    (["--robot", "EP01", "--type", "weather"], "unknown model type 'weather'; use one of battery, collision"),
    (["--robot", "EP01", "--type", "collision", "--holdout", "0.9"], "--holdout 0.9 must be between"),
])
def test_bad_training_input_is_one_error(sim_models, tmp_path, args, error):
    dsn, _ = sim_models
    done = subprocess.run([sys.executable, "-m", "nsm.cli", "ai", "train", "--db-url", dsn, "--out", str(tmp_path / "m"),
                           *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert error in " ".join(done.stderr.split()), done.stderr

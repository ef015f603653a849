"""Telemetry models (DESIGN.md section 4's AI loop): preprocessing declared once
(preprocess), training from `robot_telemetry` with ONNX export and a model card (train),
live predictions (predictor) and the Brain Worker that sends them to the hub (worker, hub)."""

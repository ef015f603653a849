"""The application: what the CLI runs, composed from the cores (demo, collect, eval, sim telemetry,
the worker loop, dataset commands). Nothing below it imports it."""

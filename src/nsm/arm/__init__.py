"""Arms: one interface for the simulated and the real SO-101, and the safety filter."""

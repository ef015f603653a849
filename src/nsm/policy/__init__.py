"""Policies produce action chunks; the async runtime feeds them to the control loop."""

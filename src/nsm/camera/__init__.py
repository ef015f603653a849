"""Cameras: a capture thread per camera keeps the latest frame and its capture time."""
from nsm.camera.base import Camera, Frame

__all__ = ["Camera", "Frame"]

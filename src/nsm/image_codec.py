"""Compressed images the way image_transport's `compressed` plugin makes them: a JPEG of
the bgr8 image, format string "rgb8; jpeg compressed bgr8" (rqt_image_view, Foxglove and
`ros2 bag` tools read it). One home for the camera node's topic, the recorder's bags and
the bag converter.
"""
import cv2
import numpy as np

from nsm.errors import NsmError

FORMAT = "rgb8; jpeg compressed bgr8"
QUALITY = 90


def encode_jpeg(image: np.ndarray, quality: int = QUALITY) -> np.ndarray:
    """(H, W, 3) RGB uint8 -> JPEG bytes as a 1-D uint8 array."""
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise NsmError(f"JPEG encoding failed for an image of shape {image.shape}")
    return jpeg.reshape(-1)


def decode_image(data, fmt: str = FORMAT) -> np.ndarray:
    """JPEG/PNG bytes (what a CompressedImage carries) -> (H, W, 3) RGB uint8."""
    bgr = cv2.imdecode(np.asarray(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise NsmError(f"a compressed image in format '{fmt}' does not decode; JPEG or PNG expected")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

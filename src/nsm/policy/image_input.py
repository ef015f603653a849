"""How a camera frame becomes a model's image input, in one place.

A model may take smaller images than the cameras give (96x128 from 240x320 trains ~4x
faster on a CPU). Dataset conversion and the robot's runtime both call `to_model_size`, and
the resize is recorded beside the data (`meta/nsm_image_input.json` in a LeRobotDataset,
copied into the policy folder by `nsm train`), so a model is never fed another size or
another resize than the one it was trained on.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from nsm.errors import NsmError

FILE = "nsm_image_input.json"
METHOD = "cv2.resize INTER_AREA"  # area averaging: the right filter for downscaling


def to_model_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` (H, W, 3) uint8 RGB at (height, width) `size`; unchanged when it already is."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class ImageInput:
    """The cameras' own sizes, and the one resize that makes the model's input from them."""

    camera_sizes: dict[str, tuple[int, int]]  # camera -> (height, width) as the camera gives it
    model_size: tuple[int, int]  # (height, width) the model takes
    method: str = METHOD

    def write(self, folder: Path) -> Path:
        path = folder / FILE
        path.write_text(json.dumps({"camera_sizes": {c: list(s) for c, s in self.camera_sizes.items()},
                                    "model_size": list(self.model_size), "method": self.method}, indent=2))
        return path

    @classmethod
    def read(cls, folder: Path) -> "ImageInput | None":
        """The recorded resize in `folder`, or None when images go in at the cameras' size."""
        path = folder / FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        if data.get("method") != METHOD:
            raise NsmError(f"{path}: images were resized with '{data.get('method')}', this nsm resizes with "
                           f"'{METHOD}'; convert the dataset and train again")
        return cls({c: tuple(s) for c, s in data["camera_sizes"].items()}, tuple(data["model_size"]))

"""Real media files generated on the fly: images with Pillow, MP4 videos with PyAV. Small and fast."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import av
import numpy
from PIL import Image


def image_bytes(width: int, height: int, fmt: str = "PNG", *, noise: bool = False) -> bytes:
    """A real image. `noise` makes it incompressible, to exceed a KB cap at a small pixel size."""
    if noise:
        pixels = numpy.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=numpy.uint8)
        image = Image.fromarray(pixels, "RGB")
    else:
        image = Image.new("RGB", (width, height), (230, 90, 20))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png(width: int, height: int, **kwargs: bool) -> bytes:
    return image_bytes(width, height, "PNG", **kwargs)


def jpeg(width: int, height: int, **kwargs: bool) -> bytes:
    return image_bytes(width, height, "JPEG", **kwargs)


def mp4(seconds: float, width: int = 64, height: int = 36, *, fps: int = 1) -> bytes:
    """A real H.264 MP4 of black frames; a low frame rate keeps long durations cheap."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        with av.open(str(path), "w", format="mp4") as container:
            stream = container.add_stream("h264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            frame_pixels = numpy.zeros((height, width, 3), dtype=numpy.uint8)
            for _ in range(max(1, round(seconds * fps))):
                frame = av.VideoFrame.from_ndarray(frame_pixels, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path.read_bytes()

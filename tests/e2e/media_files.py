"""Real media files made on the fly: PNG/JPEG with Pillow, MP4 with PyAV."""

from __future__ import annotations

import io
from fractions import Fraction

import av
from PIL import Image


def png(width: int, height: int, color: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def mp4(seconds: float, width: int = 320, height: int = 240, fps: int = 10) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for index in range(int(seconds * fps)):
            frame = av.VideoFrame.from_image(Image.new("RGB", (width, height), (index * 7 % 255, 80, 160)))
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()

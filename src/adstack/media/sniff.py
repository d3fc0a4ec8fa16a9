"""What a file really is, read from its bytes: Pillow for images, MediaInfo for video containers.

Neither the file name nor the client's content type is consulted.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from pymediainfo import MediaInfo

from adstack.core.errors import ValidationFailed
from adstack.media.models import MediaFormat, MediaKind

ACCEPTED_FORMATS = tuple(f.value for f in MediaFormat)
# Pillow may open these so an unsupported image is named in the error instead of called unknown.
_PILLOW_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
_IMAGE_FORMATS = {"JPEG": MediaFormat.JPEG, "PNG": MediaFormat.PNG, "GIF": MediaFormat.GIF}
# Images larger than this are refused before decoding: no ad format comes near it, and it stops pixel bombs.
MAX_IMAGE_PIXELS = 40_000_000


@dataclass(frozen=True)
class SniffedMedia:
    kind: MediaKind
    format: MediaFormat
    width: int
    height: int
    duration_ms: int | None = None
    video_codec: str = ""


def _refuse(rule: str, message: str, actual: object, field: str) -> ValidationFailed:
    return ValidationFailed.single(field, rule, message, limit=list(ACCEPTED_FORMATS), actual=actual)


def _sniff_image(path: Path, field: str) -> SniffedMedia | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=_PILLOW_FORMATS) as image:
                pillow_format = image.format or ""
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ValidationFailed.single(field, "max_pixels", "the image has too many pixels",
                                                  limit=MAX_IMAGE_PIXELS, actual=width * height)
                image.verify()  # walks the data: catches truncated and corrupt files
    except UnidentifiedImageError:
        return None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValidationFailed.single(field, "max_pixels", "the image has too many pixels",
                                      limit=MAX_IMAGE_PIXELS) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _refuse("corrupt_file", "the image is truncated or corrupt", "corrupt", field) from exc
    media_format = _IMAGE_FORMATS.get(pillow_format)
    if media_format is None:
        raise _refuse("file_format", f"{pillow_format} images are not accepted", pillow_format.lower(), field)
    return SniffedMedia(kind=MediaKind.IMAGE, format=media_format, width=width, height=height)


def _sniff_video(path: Path, field: str) -> SniffedMedia:
    try:
        info = MediaInfo.parse(path)
    except (OSError, RuntimeError, ValueError) as exc:  # unreadable for the library: treated as unknown
        raise _refuse("file_format", "the file is not a recognised image or video", "unknown", field) from exc
    general = info.general_tracks[0] if info.general_tracks else None
    container = str(getattr(general, "format", None) or "unknown")
    profile = str(getattr(general, "format_profile", None) or "")
    if container != "MPEG-4" or "QuickTime" in profile:
        actual = "mov" if "QuickTime" in profile else container.lower()
        raise _refuse("file_format", "videos must be MP4; the file is not a recognised image or MP4 video",
                      actual, field)
    if not info.video_tracks:
        raise _refuse("file_format", "the MP4 file has no video track", "mp4 without video", field)
    video = info.video_tracks[0]
    duration = getattr(general, "duration", None) or getattr(video, "duration", None)
    try:
        duration_ms = round(float(duration)) if duration is not None else None
        width, height = int(video.width or 0), int(video.height or 0)
    except (TypeError, ValueError) as exc:
        raise _refuse("corrupt_file", "the video's duration or dimensions cannot be read", "corrupt", field) from exc
    if duration_ms is None or width <= 0 or height <= 0:
        raise _refuse("corrupt_file", "the video's duration or dimensions cannot be read", "corrupt", field)
    return SniffedMedia(kind=MediaKind.VIDEO, format=MediaFormat.MP4, width=width, height=height,
                        duration_ms=duration_ms, video_codec=str(video.format or "")[:40])


def sniff(path: Path, *, field: str = "file") -> SniffedMedia:
    """Identify an image (JPEG, PNG, GIF) or an MP4 video from its content, or refuse it naming `field`."""
    image = _sniff_image(path, field)
    if image is not None:
        return image
    return _sniff_video(path, field)

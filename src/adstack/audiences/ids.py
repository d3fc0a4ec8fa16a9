"""Device ids in audience files: normalisation, validation and the 64-bit keys membership is stored under.

Pure: no database, no I/O. A raw GAID is never kept; it is hashed on sight.

Keys. Serving sees the raw GAID in an ad request, so every key must be computable from it:

- `device_key(gaid)` is the first 64 bits of MD5 of the normalised GAID. An MD5 upload holds exactly that
  digest, so a raw file and an MD5 file of the same devices give the same keys.
- SHA-256 uploads cannot be mapped to MD5 keys (a hash cannot be inverted), so they live in a second key
  space: `sha256_device_key(gaid)`, the first 64 bits of SHA-256 of the normalised GAID.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from pyroaring import BitMap64

from adstack.core.errors import FieldError, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

MIN_VALID_IDS = 1000
# A line longer than this cannot be any id type; it is counted invalid without being buffered further.
MAX_LINE_BYTES = 512
MAX_INVALID_EXAMPLES = 10
MAX_EXAMPLE_CHARS = 64
# Membership is built per partition (the top bits of the key), so building never holds a whole audience's
# bitmap at once; see bitmaps.py.
PARTITION_BITS = 4
PARTITIONS = 1 << PARTITION_BITS
_PARTITION_SHIFT = 64 - PARTITION_BITS
_KEY_MASK = (1 << 64) - 1

# The all-zero GAID is what a device sends when the user limited ad tracking: it identifies nobody.
ZERO_GAID = b"00000000-0000-0000-0000-000000000000"


class IdType(StrEnum):
    GAID = "gaid"  # raw Google Advertising ID (a UUID), hashed with MD5 on upload
    GAID_MD5 = "gaid_md5"  # MD5 hex of the normalised GAID
    SHA256 = "sha256"  # SHA-256 hex of the normalised GAID


class KeySpace(StrEnum):
    MD5 = "md5"
    SHA256 = "sha256"


KEY_SPACE_OF: dict[IdType, KeySpace] = {
    IdType.GAID: KeySpace.MD5,
    IdType.GAID_MD5: KeySpace.MD5,
    IdType.SHA256: KeySpace.SHA256,
}

_PATTERNS: dict[IdType, re.Pattern[bytes]] = {
    IdType.GAID: re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    IdType.GAID_MD5: re.compile(rb"[0-9a-f]{32}"),
    IdType.SHA256: re.compile(rb"[0-9a-f]{64}"),
}
_DESCRIPTIONS = {
    IdType.GAID: "a GAID (UUID, 8-4-4-4-12 hex digits)",
    IdType.GAID_MD5: "an MD5 digest (32 hex digits)",
    IdType.SHA256: "a SHA-256 digest (64 hex digits)",
}


def normalise(value: str | bytes) -> bytes:
    """Ids compare trimmed and lowercased, as advertisers' exports differ in case and whitespace."""
    raw = value.encode() if isinstance(value, str) else value
    return raw.strip().lower()


def device_key(gaid_raw: str) -> int:
    """The MD5-space key of a device, from the GAID an ad request carries."""
    return int.from_bytes(hashlib.md5(normalise(gaid_raw), usedforsecurity=False).digest()[:8], "big")


def sha256_device_key(gaid_raw: str) -> int:
    """The SHA-256-space key of a device, for audiences uploaded as SHA-256 digests."""
    return int.from_bytes(hashlib.sha256(normalise(gaid_raw)).digest()[:8], "big")


@dataclass(frozen=True)
class DeviceKeys:
    """Both keys of one device; serving computes them once per request."""

    md5: int
    sha256: int

    @classmethod
    def of(cls, gaid_raw: str) -> DeviceKeys:
        return cls(md5=device_key(gaid_raw), sha256=sha256_device_key(gaid_raw))


def key_of(id_type: IdType, value: str | bytes) -> int | None:
    """The key of one id in a file of `id_type`, or None when the value is not a valid id of that type."""
    normalised = normalise(value)
    if not _PATTERNS[id_type].fullmatch(normalised):
        return None
    if id_type is IdType.GAID:
        if normalised == ZERO_GAID:
            return None
        return int.from_bytes(hashlib.md5(normalised, usedforsecurity=False).digest()[:8], "big")
    return int(normalised[:16], 16)


def partition_of(key: int) -> int:
    return key >> _PARTITION_SHIFT


def to_signed(key: int) -> int:
    """Keys are unsigned 64-bit; SQL BIGINT is signed, so they are stored two's-complement."""
    return key - (1 << 64) if key >= 1 << 63 else key


def to_unsigned(stored: int) -> int:
    return stored & _KEY_MASK


def guess_id_type(value: bytes) -> IdType | None:
    normalised = normalise(value)
    return next((t for t, pattern in _PATTERNS.items() if pattern.fullmatch(normalised)), None)


# ---------- reading a file of ids ----------


class ImportRefused(ValidationFailed):
    """A file that breaks a rule; the error carries the validation report so the advertiser can fix it."""

    def __init__(self, message: str, *, fields: list[FieldError], report: ValidationReport):
        super().__init__(message, fields=fields)
        self.report = report

    def as_dict(self) -> dict[str, object]:
        body = super().as_dict()
        error = body["error"]
        assert isinstance(error, dict)
        error["report"] = self.report.as_dict()
        return body


@dataclass
class ValidationReport:
    bytes_read: int = 0
    lines: int = 0
    blank_lines: int = 0
    valid_lines: int = 0
    invalid_lines: int = 0
    distinct_ids: int = 0
    invalid_examples: list[dict[str, object]] = field(default_factory=list)

    @property
    def duplicate_lines(self) -> int:
        return self.valid_lines - self.distinct_ids

    def as_dict(self) -> dict[str, object]:
        return {
            "bytes_read": self.bytes_read,
            "lines": self.lines,
            "blank_lines": self.blank_lines,
            "valid_lines": self.valid_lines,
            "invalid_lines": self.invalid_lines,
            "duplicate_lines": self.duplicate_lines,
            "distinct_ids": self.distinct_ids,
            "invalid_examples": list(self.invalid_examples),
        }


def _looks_binary(sample: bytes) -> bool:
    if b"\x00" in sample:
        return True
    control = sum(1 for byte in sample if byte < 0x09 or 0x0E <= byte < 0x20 or byte == 0x7F)
    return control > len(sample) // 100


# Whole-chunk scanning: one regex pass finds every valid line of a (lowercased) chunk, so Python only
# loops over valid ids, to hash them. Lines are counted with bytes.count; the per-line slow path runs only
# on chunks with invalid lines, and only until enough examples are collected.
_SPACE = rb"[ \t\r\x0b\x0c]*"
_LINE_PATTERNS: dict[IdType, re.Pattern[bytes]] = {
    id_type: re.compile(rb"(?m)^" + _SPACE + b"(" + pattern.pattern + b")" + _SPACE + rb"\n")
    for id_type, pattern in _PATTERNS.items()
}
_BLANK_LINE = re.compile(rb"(?m)^" + _SPACE + rb"\n")


# The first bytes of a file, gathered before anything is scanned: enough for its byte-order mark, its first line
# end and the look at whether it is text.
HEAD_BYTES = 8192
# Byte-order marks of the wide encodings, UTF-32's first: its little-endian mark begins with UTF-16's.
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"),
              (b"\xfe\xff", "utf-16"))
# Without a mark, ASCII text in a wide encoding has a NUL in every position but the character's own: the first
# bytes' pattern tells it from a binary file.
WIDE_SAMPLE_BYTES = 64
_UNMARKED = (("utf-32-le", 4, 0), ("utf-32-be", 4, 3), ("utf-16-le", 2, 0), ("utf-16-be", 2, 1))


def wide_encoding(head: bytes) -> str | None:
    """The UTF-16 or UTF-32 encoding the file's first bytes are in, by their mark or, without one, by where
    their NULs fall (ids are ASCII); None for a file in a byte encoding or a binary one."""
    for mark, encoding in _WIDE_BOMS:
        if head.startswith(mark) or mark.startswith(head):
            return encoding  # a mark, or the start of one still arriving
    sample = head[:WIDE_SAMPLE_BYTES]
    if b"\x00" not in sample:
        return None
    for encoding, width, position in _UNMARKED:
        characters = sample[position::width]
        padding = bytes(b for i, b in enumerate(sample) if i % width != position)
        if b"\x00" not in characters and not padding.strip(b"\x00"):
            return encoding
    return None


class IdFileReader:
    """Reads a TXT file of ids chunk by chunk: checks the size cap and text-ness while streaming, validates
    and counts each line, and collects keys per partition in compact arrays (8 bytes per id).

    Feed it any iterable of byte chunks: an HTTP request body, a download, a file. With `echo_values` off
    (files the server fetched, whose content the caller may not be allowed to read), invalid examples name
    the line and the rule, never the line's content.
    """

    def __init__(self, id_type: IdType, *, max_bytes: int, field_name: str = "file", echo_values: bool = True):
        self.id_type = id_type
        self.echo_values = echo_values
        self.max_bytes = max_bytes
        self.field_name = field_name
        self.report = ValidationReport()
        self.keys: list[array[int]] = [array("Q") for _ in range(PARTITIONS)]
        self._pending = b""
        self._skipping_overlong = False
        self._started = False
        self._line_pattern = _LINE_PATTERNS[id_type]
        self._other_types: dict[IdType, int] = {}
        self._wide: codecs.IncrementalDecoder | None = None
        self._cr_only = False
        self._head = b""

    def read(self, chunks: Iterable[bytes]) -> ValidationReport:
        for chunk in chunks:
            self.feed(chunk)
        return self.finish()

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        report = self.report
        report.bytes_read += len(chunk)
        if report.bytes_read > self.max_bytes:
            raise PayloadTooLarge(
                f"the file is larger than {self.max_bytes} bytes",
                fields=[FieldError(field=self.field_name, rule="max_size_bytes",
                                   message=f"at most {self.max_bytes} bytes", limit=self.max_bytes,
                                   actual=report.bytes_read)],
            )
        if not self._started:
            # How the file is written (its byte-order mark, its line ends) is decided on its first bytes, however
            # the network splits them: a head is gathered first.
            self._head += chunk
            head = self._head
            # A NUL outside UTF-16 or UTF-32 is binary already: refused at once, not once 8 KB have come.
            if len(head) < HEAD_BYTES and not (b"\x00" in head and wide_encoding(head) is None):
                return
            chunk, self._head = self._begin(self._head), b""
        else:
            if self._wide is not None:
                chunk = self._wide.decode(chunk).encode()
            if b"\x00" in chunk:
                self._refuse_binary()
        self._lines(chunk)

    def _begin(self, head: bytes) -> bytes:
        """The file's first bytes as text to scan: decoded, its mark dropped; refused when binary."""
        self._started = True
        encoding = wide_encoding(head)
        if encoding is not None:
            # Windows Notepad's "Unicode" is UTF-16 behind its byte-order mark; other tools write UTF-16 or UTF-32
            # with or without one. Ids are ASCII: read it as UTF-8.
            self._wide = codecs.getincrementaldecoder(encoding)(errors="replace")
            head = self._wide.decode(head).encode()
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        if _looks_binary(head[:8192]):
            self._refuse_binary()
        # Classic Mac OS ends lines with CR alone: the first line end says how the file is written.
        first_end = next((i for i, byte in enumerate(head) if byte in (0x0A, 0x0D)), -1)
        self._cr_only = first_end >= 0 and head[first_end] == 0x0D and head[first_end + 1:first_end + 2] != b"\n"
        return head

    def _lines(self, chunk: bytes) -> None:
        report = self.report
        if self._cr_only:
            chunk = chunk.replace(b"\r", b"\n")
        last_newline = chunk.rfind(b"\n")
        if last_newline < 0:
            self._pending += chunk
        else:
            body = self._pending + chunk[:last_newline + 1] if self._pending else chunk[:last_newline + 1]
            self._pending = chunk[last_newline + 1:]
            if self._skipping_overlong:
                # The tail of a line already counted as too long.
                self._skipping_overlong = False
                body = body[body.index(b"\n") + 1:]
            self._scan(body)
        if len(self._pending) > MAX_LINE_BYTES:
            if not self._skipping_overlong:
                report.lines += 1
                self._invalid(self._pending[:MAX_EXAMPLE_CHARS], report.lines)
            self._skipping_overlong = True
            self._pending = b""

    def finish(self) -> ValidationReport:
        if not self._started and self._head:
            head, self._head = self._begin(self._head), b""
            self._lines(head)
        if self._wide is not None:
            self._pending += self._wide.decode(b"", final=True).encode()
        if self._pending:
            if not self._skipping_overlong:
                self._scan(self._pending + b"\n")
            self._pending = b""
        return self.report

    def _scan(self, body: bytes) -> None:
        """Count and key every line of `body`, which ends with a newline."""
        if not body:
            return
        report = self.report
        lowered = body.lower()
        found = self._line_pattern.findall(lowered)
        lines = lowered.count(b"\n")
        blank = len(_BLANK_LINE.findall(lowered))
        if self.id_type is IdType.GAID and ZERO_GAID in lowered:
            found = [value for value in found if value != ZERO_GAID]
        invalid = lines - blank - len(found)
        if invalid:
            self._collect_invalid(lowered, first_line=report.lines + 1)
        keys = self.keys
        if self.id_type is IdType.GAID:
            md5 = hashlib.md5
            from_bytes = int.from_bytes
            for value in found:
                key = from_bytes(md5(value, usedforsecurity=False).digest()[:8], "big")
                keys[key >> _PARTITION_SHIFT].append(key)
        else:
            for value in found:
                key = int(value[:16], 16)
                keys[key >> _PARTITION_SHIFT].append(key)
        report.lines += lines
        report.blank_lines += blank
        report.valid_lines += len(found)
        report.invalid_lines += invalid

    def _collect_invalid(self, lowered: bytes, *, first_line: int) -> None:
        """The slow path, for chunks with invalid lines: examples with line numbers, and which other id type
        the invalid lines look like (to tell a wrong `id_type` from a broken file)."""
        wants_examples = len(self.report.invalid_examples) < MAX_INVALID_EXAMPLES
        wants_guesses = self.report.valid_lines < MIN_VALID_IDS
        if not (wants_examples or wants_guesses):
            return
        pattern = _PATTERNS[self.id_type]
        for offset, line in enumerate(lowered.split(b"\n")[:-1]):
            value = line.strip()
            if not value or (pattern.fullmatch(value) and value != ZERO_GAID):
                continue
            guessed = guess_id_type(value) if wants_guesses else None
            if guessed is not None:
                self._other_types[guessed] = self._other_types.get(guessed, 0) + 1
            if len(self.report.invalid_examples) < MAX_INVALID_EXAMPLES:
                self._example(value, first_line + offset)
            elif not wants_guesses:
                return

    def _invalid(self, value: bytes, line_number: int) -> None:
        self.report.invalid_lines += 1
        if len(self.report.invalid_examples) < MAX_INVALID_EXAMPLES:
            self._example(value, line_number)

    def _example(self, value: bytes, line_number: int) -> None:
        reason = "the all-zero GAID of a device that limits ad tracking" if value == ZERO_GAID \
            else f"not {_DESCRIPTIONS[self.id_type]}"
        example: dict[str, object] = {"line": line_number, "reason": reason}
        if self.echo_values:
            example["value"] = value[:MAX_EXAMPLE_CHARS].decode("utf-8", "replace")
        self.report.invalid_examples.append(example)

    def _refuse_binary(self) -> None:
        raise UnsupportedMediaType(
            "the file is binary; upload a TXT file with one id per line",
            fields=[FieldError(field=self.field_name, rule="text_file", message="a TXT file, one id per line")],
        )

    def _distinct_at_least(self, minimum: int) -> bool:
        """Whether the file holds `minimum` distinct ids: counted a partition at a time (in C, as bitmaps), stopping
        as soon as there are enough, so an ordinary file costs one partition's bitmap."""
        if self.report.valid_lines < minimum:
            return False
        distinct = 0
        for part in self.keys:
            distinct += len(BitMap64(part))
            if distinct >= minimum:
                return True
        return False

    def check_minimum(self, minimum: int = MIN_VALID_IDS) -> None:
        """Refuse a file with too few distinct valid ids, and say so when the ids are of another type than
        declared."""
        report = self.report
        # Source: Mi Ads usage guide, 6.1.1, "④ Upload files": "The number of local file imports and HDFS imports
        # can't be less than 1000." Ids, not lines: a thousand copies of one id are one device.
        if self._distinct_at_least(minimum):
            return
        # Counted here for the refusal's report (fewer than `minimum` distinct ids); an accepted file's are
        # counted as they are stored.
        report.distinct_ids = sum(len(BitMap64(part)) for part in self.keys)
        likely = max(self._other_types.items(), key=lambda item: item[1], default=None)
        if likely is not None and likely[1] > report.valid_lines and likely[0] is IdType.GAID_MD5 \
                and self.id_type is IdType.GAID:
            # 32 hex digits are an MD5 digest or a GAID written without its hyphens: which one, no file says, and
            # the wrong choice matches nobody.
            raise ImportRefused(
                "the file holds 32-hex-digit ids: MD5 digests of GAIDs (choose gaid_md5), or GAIDs written without "
                "hyphens (write them as 8-4-4-4-12)",
                fields=[FieldError(field="id_type", rule="md5_or_bare_gaid",
                                   message=f"{likely[1]} lines are 32 hex digits: MD5 digests, or GAIDs without "
                                           "hyphens", limit=self.id_type.value, actual=likely[0].value)],
                report=report,
            )
        if likely is not None and likely[1] > report.valid_lines:
            raise ImportRefused(
                f"the file holds {likely[0].value} ids, not {self.id_type.value}",
                fields=[FieldError(field="id_type", rule="matches_file",
                                   message=f"{likely[1]} lines are {_DESCRIPTIONS[likely[0]]}",
                                   limit=self.id_type.value, actual=likely[0].value)],
                report=report,
            )
        raise ImportRefused(
            f"the file holds {report.distinct_ids} distinct valid ids; at least {minimum} are needed",
            fields=[FieldError(field=self.field_name, rule="min_valid_ids",
                               message=f"at least {minimum} distinct valid ids", limit=minimum,
                               actual=report.distinct_ids)],
            report=report,
        )


def iter_chunks(data: bytes, size: int = 1 << 16) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]

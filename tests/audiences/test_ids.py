"""Id normalisation, keys and the streaming file reader: pure, no database."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adstack.audiences.ids import (
    IdFileReader,
    IdType,
    ImportRefused,
    UnsupportedMediaType,
    device_key,
    iter_chunks,
    key_of,
    sha256_device_key,
    to_signed,
    to_unsigned,
)
from adstack.core.errors import PayloadTooLarge
from tests.audiences.helpers import gaids, id_file, md5_hex, sha256_hex

uuids = st.uuids(version=4).map(str)


@given(gaid=uuids, upper=st.booleans(), pad=st.sampled_from(["", " ", "\t", "  \r"]))
def test_raw_md5_and_sha256_forms_of_a_gaid_have_the_request_keys(gaid: str, upper: bool, pad: str) -> None:
    written = pad + (gaid.upper() if upper else gaid) + pad
    assert key_of(IdType.GAID, written) == device_key(gaid) == key_of(IdType.GAID_MD5, md5_hex(gaid).upper())
    assert key_of(IdType.SHA256, sha256_hex(gaid)) == sha256_device_key(gaid.upper())
    assert 0 <= device_key(gaid) < 2**64


@given(key=st.integers(min_value=0, max_value=2**64 - 1))
def test_keys_survive_a_signed_bigint_column(key: int) -> None:
    assert -(2**63) <= to_signed(key) < 2**63
    assert to_unsigned(to_signed(key)) == key


@pytest.mark.parametrize(
    "value",
    [
        "not-a-gaid",
        "00000000-0000-0000-0000-000000000000",
        "0f8fad5b-d9cb-469f-a165-70867728950",
        "0f8fad5bd9cb469fa16570867728950e",
    ],
)
def test_invalid_gaids_have_no_key(value: str) -> None:
    assert key_of(IdType.GAID, value) is None


def _read_in_pieces(data: bytes, cuts: list[int]) -> IdFileReader:
    """A GAID file read as the network might hand it over: cut at `cuts`."""
    pieces, start = [], 0
    for cut in sorted(set(cuts)):
        pieces.append(data[start:cut])
        start = max(start, cut)
    pieces.append(data[start:])
    reader = IdFileReader(IdType.GAID, max_bytes=1 << 20)
    reader.read([p for p in pieces if p])
    return reader


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=12))
def test_the_report_does_not_depend_on_where_chunks_split(cuts: list[int]) -> None:
    lines = [*gaids(60), "", "  ", "garbage", gaids(1)[0].upper(), "x" * 700, "00000000-0000-0000-0000-000000000000"]
    data = id_file(lines)
    whole = IdFileReader(IdType.GAID, max_bytes=1 << 20)
    whole.read([data])
    split = _read_in_pieces(data, cuts)
    assert split.report == whole.report
    assert [sorted(k) for k in split.keys] == [sorted(k) for k in whole.keys]
    assert whole.report.lines == len(lines)
    assert (whole.report.valid_lines, whole.report.blank_lines, whole.report.invalid_lines) == (61, 2, 3)


def test_report_counts_valid_invalid_blank_and_duplicate_lines() -> None:
    ids = gaids(1000)
    lines = [*ids, ids[0].upper(), f"  {ids[1]}  ", "", "oops", "12345"]
    reader = IdFileReader(IdType.GAID, max_bytes=1 << 20)
    report = reader.read(iter_chunks(id_file(lines), 4096))
    reader.check_minimum()
    report.distinct_ids = len({k for part in reader.keys for k in part})
    assert report.as_dict() | {"invalid_examples": None} == {
        "bytes_read": len(id_file(lines)),
        "lines": 1005,
        "blank_lines": 1,
        "valid_lines": 1002,
        "invalid_lines": 2,
        "duplicate_lines": 2,
        "distinct_ids": 1000,
        "invalid_examples": None,
    }
    assert [(e["line"], e["value"]) for e in report.invalid_examples] == [(1004, "oops"), (1005, "12345")]


def test_fewer_than_the_minimum_names_the_rule_and_carries_the_report() -> None:
    reader = IdFileReader(IdType.GAID_MD5, max_bytes=1 << 20)
    hashed = [md5_hex(g) for g in gaids(998)]
    reader.read([id_file([*hashed, hashed[0]])])
    with pytest.raises(ImportRefused) as refused:
        reader.check_minimum()
    error = refused.value.as_dict()["error"]
    assert error["fields"] == [
        {"field": "file", "rule": "min_valid_ids", "message": "at least 1000 distinct valid ids", "limit": 1000,
         "actual": 998}
    ]
    report = error["report"]
    assert (report["valid_lines"], report["distinct_ids"], report["duplicate_lines"]) == (999, 998, 1)


def test_the_minimum_counts_distinct_ids_not_lines() -> None:
    # A thousand lines of one id are one device; a thousand lines holding 999 ids are 999.
    for lines, distinct in (([gaids(1)[0]] * 1000, 1), ([*gaids(999), gaids(1)[0]], 999)):
        reader = IdFileReader(IdType.GAID, max_bytes=1 << 20)
        reader.read([id_file(lines)])
        assert reader.report.valid_lines == 1000
        with pytest.raises(ImportRefused) as refused:
            reader.check_minimum()
        assert (refused.value.fields[0].rule, refused.value.fields[0].actual) == ("min_valid_ids", distinct)
        assert refused.value.as_dict()["error"]["report"]["distinct_ids"] == distinct
    reader = IdFileReader(IdType.GAID, max_bytes=1 << 20)
    reader.read([id_file([*gaids(1000), *gaids(500)])])
    reader.check_minimum()


def test_a_file_of_another_id_type_names_id_type() -> None:
    reader = IdFileReader(IdType.GAID, max_bytes=1 << 20)
    reader.read([id_file([sha256_hex(g) for g in gaids(1200)])])
    with pytest.raises(ImportRefused) as refused:
        reader.check_minimum()
    field = refused.value.fields[0]
    assert (field.field, field.rule, field.actual) == ("id_type", "matches_file", "sha256")


def test_binary_and_oversize_files_are_refused_while_streaming() -> None:
    with pytest.raises(UnsupportedMediaType):
        IdFileReader(IdType.GAID, max_bytes=1 << 20).feed(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    reader = IdFileReader(IdType.GAID, max_bytes=100)
    reader.feed(id_file(gaids(2))[:70])
    with pytest.raises(PayloadTooLarge):
        reader.feed(id_file(gaids(2))[:70])
    assert uuid.UUID(gaids(1)[0]).version == 4


@pytest.mark.parametrize(("encoding", "newline"), [
    ("utf-16", "\r\n"),  # Windows Notepad's "Unicode", with its byte-order mark
    ("utf-16-be", "\n"),
    ("utf-16-le", "\r\n"),  # without a mark
    ("utf-32", "\n"),  # with its mark
    ("utf-32-be", "\r\n"),  # without one
    ("utf-8", "\r"),  # classic Mac OS line endings
])
def test_wide_encodings_and_cr_line_endings_read_like_any_text(encoding: str, newline: str) -> None:
    ids = [*gaids(1200), "oops"]
    text = newline.join(ids) + newline
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    expected = IdFileReader(IdType.GAID, max_bytes=1 << 22)
    expected.read([id_file(ids)])
    reader = IdFileReader(IdType.GAID, max_bytes=1 << 22)
    report = reader.read(iter_chunks(data, 4097))  # odd chunks split UTF-16 code units
    reader.check_minimum()
    assert (report.lines, report.valid_lines, report.invalid_lines) == (1201, 1200, 1)
    assert [sorted(k) for k in reader.keys] == [sorted(k) for k in expected.keys]


@pytest.mark.parametrize(("encoding", "newline", "bom"), [
    ("utf-16-le", "\r\n", b"\xff\xfe"), ("utf-16-be", "\n", b"\xfe\xff"), ("utf-8", "\r", b""),
    ("utf-8", "\r\n", b""), ("utf-8", "\n", b"\xef\xbb\xbf"), ("utf-16-le", "\n", b""),
    ("utf-32-le", "\r\n", b"\xff\xfe\x00\x00"), ("utf-32-be", "\n", b""), ("utf-32-be", "\n", b"\x00\x00\xfe\xff"),
])
@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=120), max_size=4))
def test_how_a_file_is_written_is_read_the_same_wherever_the_network_splits_it(
        encoding: str, newline: str, bom: bytes, cuts: list[int]) -> None:
    ids = [*gaids(20), "oops"]
    data = bom + (newline.join(ids) + newline).encode(encoding)
    whole = IdFileReader(IdType.GAID, max_bytes=1 << 20)
    whole.read([data])
    assert (whole.report.lines, whole.report.valid_lines, whole.report.blank_lines) == (21, 20, 0)
    split = _read_in_pieces(data, cuts)
    assert split.report == whole.report
    assert [sorted(k) for k in split.keys] == [sorted(k) for k in whole.keys]

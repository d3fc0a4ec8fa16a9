"""Dynamic-creative combinations and their stable keys."""

from __future__ import annotations

from string import ascii_letters

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adstack.creatives.combinations import asset_combinations


def test_every_title_description_visual_and_button_is_combined() -> None:
    materials = {
        "titles": ["A", "B"],
        "descriptions": ["x", "y", "z"],
        "images": [10, 11],
        "videos": [],
        "button_texts": ["Install"],
        "icon": 5,
        "brand_name": None,
    }
    combos = asset_combinations(materials)
    assert len(combos) == 2 * 3 * 2 * 1
    assert len({c.key for c in combos}) == len(combos)
    assert {(c.title, c.description, c.image_id) for c in combos} == {
        (t, d, i) for t in "AB" for d in "xyz" for i in (10, 11)
    }
    assert all(c.icon_id == 5 and c.button_text == "Install" and c.video_id is None for c in combos)


def test_images_and_videos_are_alternatives_and_absent_materials_count_once() -> None:
    combos = asset_combinations({"titles": ["T"], "images": [1], "videos": [2, 3]})
    assert [(c.image_id, c.video_id) for c in combos] == [(1, None), (None, 2), (None, 3)]
    assert all(c.description is None and c.button_text is None for c in combos)
    assert len(asset_combinations({"titles": ["Only"]})) == 1


def test_keys_follow_content_not_positions() -> None:
    before = asset_combinations({"titles": ["A", "B"], "images": [1, 2]})
    reordered = asset_combinations({"titles": ["B", "A"], "images": [2, 1]})
    assert {c.key for c in before} == {c.key for c in reordered}
    edited = asset_combinations({"titles": ["A", "C"], "images": [1, 2]})
    kept = {c.key for c in before} & {c.key for c in edited}
    assert kept == {c.key for c in before if c.title == "A"}


def test_duplicate_and_blank_texts_collapse() -> None:
    combos = asset_combinations({"titles": ["Same", " Same ", ""], "images": [4, 4]})
    assert [(c.title, c.image_id) for c in combos] == [("Same", 4)]


TEXTS = st.lists(
    st.text(alphabet=ascii_letters + " ", min_size=1, max_size=8).filter(str.strip), max_size=3, unique_by=str.strip
)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS, st.lists(st.integers(1, 10**6), max_size=5, unique=True), TEXTS)
def test_count_is_the_product_and_keys_are_unique(titles: list[str], images: list[int], buttons: list[str]) -> None:
    combos = asset_combinations({"titles": titles, "images": images, "button_texts": buttons})
    distinct = len({t.strip() for t in titles}) or 1
    assert len(combos) == distinct * (len(images) or 1) * (len({b.strip() for b in buttons}) or 1)
    assert len({c.key for c in combos}) == len(combos)

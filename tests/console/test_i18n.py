"""Every word in both languages: Babel's own extraction finds no message without a Chinese translation, no two
different English messages share one Chinese text, and a visitor's language follows them from registration on."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts.models import User
from adstack.console import i18n
from adstack.console.vocabulary import CODE_NAMES, code_name
from tests.console.support import csrf_from, register

CONSOLE_DIR = Path(i18n.__file__).resolve().parent


def _zh_catalog():
    with i18n.catalog_path("zh").open("rb") as po:
        return read_po(po)


def _extracted(tmp_path: Path) -> set[str]:
    """`pybabel extract` with the project's babel.cfg, exactly as the catalog README runs it."""
    pot = tmp_path / "messages.pot"
    pybabel = Path(sys.executable).with_name("pybabel")
    subprocess.run(
        [str(pybabel), "extract", "-F", "babel.cfg", "-k", "N_", "--no-location", "-o", str(pot), "."],
        cwd=CONSOLE_DIR,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with pot.open("rb") as handle:
        return {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(handle) if m.id}


def test_babel_extraction_finds_no_untranslated_message(tmp_path: Path):
    extracted = _extracted(tmp_path)
    assert len(extracted) > 500
    translated = {
        (m.id if isinstance(m.id, str) else m.id[0])
        for m in _zh_catalog()
        if m.id and (m.string if isinstance(m.string, str) else m.string[0]) and not m.fuzzy
    }
    missing = sorted(extracted - translated)
    assert not missing, f"translate these in locale/zh_Hans_CN (see locale/README.md): {missing[:30]}"


def same_english(text: str) -> str:
    """English told apart only by articles, plural or spelling of '&' and hyphens counts as the same words."""
    words = []
    for word in re.findall(r"[a-z0-9%]+", text.lower().replace("&", " and ").replace("-", " ")):
        if word in ("a", "an", "the"):
            continue
        if word.endswith("ies") and len(word) > 4:
            word = word[:-3] + "y"
        elif word.endswith("s") and not word.endswith("ss") and len(word) > 2:
            word = word[:-1]
        words.append(word)
    return " ".join(words)


def test_different_english_never_shares_one_chinese_text():
    by_chinese: dict[str, set[str]] = defaultdict(set)
    for message in _zh_catalog():
        if message.id and isinstance(message.id, str) and message.string:
            by_chinese[str(message.string)].add(message.id)
    clashes = {zh: sorted(ids) for zh, ids in by_chinese.items() if len({same_english(i) for i in ids}) > 1}
    assert not clashes, clashes


def test_spend_and_cost_read_differently_and_codes_have_names():
    zh = i18n.translations("zh")
    assert zh.gettext("Spend") != zh.gettext("Cost")
    for code in ("interstitial_image", "google_play", "GUARANTEED_CPM", "business_license", "submit", "uploaded"):
        assert code_name(code, "zh") != code, code
        assert re.search(r"[\u4e00-\u9fff]", code_name(code, "zh")), code
    assert code_name("uploaded", "zh") != zh.gettext("Uploaded")  # a type, not the upload time
    assert code_name("My own label", "zh") == "My own label"
    assert all(message for message in CODE_NAMES.values())


def test_registration_keeps_the_browser_language_and_it_can_be_changed(client: TestClient, session: Session):
    chinese_browser = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
    client.headers.update(chinese_browser)
    assert 'lang="zh' in client.get("/console/register").text
    register(client, 801)
    user = session.scalars(select(User).where(User.email == "user801@example.com")).one()
    assert user.locale == "zh"
    # A later visit from an English browser still sees the chosen language.
    client.headers.update({"Accept-Language": "en-US,en;q=0.9"})
    overview = client.get("/console/")
    assert overview.status_code == 200 and "概览" in overview.text
    client.post(
        "/console/language", data={"language": "en", "next": "/console/", "csrf_token": csrf_from(overview.text)}
    )
    session.expire_all()
    assert session.get(User, user.id).locale == "en"  # type: ignore[union-attr]


def test_a_user_without_a_chosen_language_follows_the_browser(client: TestClient, session: Session):
    register(client, 802)
    user = session.scalars(select(User).where(User.email == "user802@example.com")).one()
    user.locale = ""
    session.commit()
    client.cookies.delete("adstack_lang", path="/console")
    page = client.get("/console/", headers={"Accept-Language": "zh-CN"})
    assert "概览" in page.text

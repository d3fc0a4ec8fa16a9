"""The message catalogs: every message the console shows has a Simplified Chinese translation."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from adstack.console import i18n

CONSOLE_DIR = Path(i18n.__file__).resolve().parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def _extracted() -> set[str]:
    method_map = [("templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(CONSOLE_DIR), method_map, options_map=options, keywords=KEYWORDS
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_console_message_is_translated_to_chinese():
    with i18n.catalog_path("zh").open("rb") as po:
        catalog = read_po(po)
    translated = {
        (m.id if isinstance(m.id, str) else m.id[0])
        for m in catalog
        if m.id and (m.string if isinstance(m.string, str) else m.string[0]) and not m.fuzzy
    }
    missing = sorted(_extracted() - translated)
    assert not missing, f"run the catalog update and translate: {missing[:20]}"


def test_placeholders_survive_translation():
    with i18n.catalog_path("zh").open("rb") as po:
        catalog = read_po(po)
    import re

    for message in catalog:
        if not message.id or not isinstance(message.id, str):
            continue
        wanted = set(re.findall(r"%\((\w+)\)s", message.id))
        assert set(re.findall(r"%\((\w+)\)s", message.string)) == wanted, message.id


def test_languages_are_read_from_headers_and_cookies():
    assert i18n.from_accept_language("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert i18n.from_accept_language("fr-FR, en-GB;q=0.7") == "en"
    assert i18n.from_accept_language("fr") is None
    assert i18n.normalise_language("zh_Hans") == "zh"
    assert i18n.translations("zh").gettext("Overview") == "概览"
    assert i18n.Formatter("zh").money(12_345_670_000, "USD") == "US$12,345.67"

"""Reading a page's form as a browser would send it: the fields' current values, so a test can post what a
person would see filled in (and change only what it means to change)."""

from __future__ import annotations

from html.parser import HTMLParser

# Inputs a browser does not send as typed values.
_NOT_SENT = {"submit", "button", "reset", "image", "file"}


class _FormReader(HTMLParser):
    def __init__(self, form_id: str | None, action: str | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.wanted_action = action
        self.depth = 0  # >0 while inside the wanted form
        self.fields: list[tuple[str, str]] = []
        self.action: str | None = None
        self._select: tuple[str, bool] | None = None  # name, multiple
        self._options: list[tuple[str, bool]] = []
        self._option_value: str | None = None
        self._option_selected = False
        self._option_text = ""
        self._textarea: str | None = None
        self._textarea_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            if self.depth:
                self.depth += 1
            elif (
                self.action is None
                and (self.form_id is None or a.get("id") == self.form_id)
                and (self.wanted_action is None or a.get("action") == self.wanted_action)
            ):
                self.depth = 1
                self.action = a.get("action", "")
            return
        if tag == "option" and self._select is not None:
            self._option_value = a.get("value")
            self._option_selected = "selected" in a and "disabled" not in a
            self._option_text = ""
            return
        if not self.depth or "disabled" in a:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in _NOT_SENT:
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields.append((name, a.get("value", "on")))
                return
            self.fields.append((name, a.get("value", "")))
        elif tag == "select" and name:
            self._select = (name, "multiple" in a)
            self._options = []
        elif tag == "textarea" and name:
            self._textarea = name
            self._textarea_text = ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea_text += data
        elif self._select is not None:
            self._option_text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.depth:
            self.depth -= 1
        elif tag == "option" and self._select is not None:
            value = self._option_value if self._option_value is not None else self._option_text.strip()
            self._options.append((value, self._option_selected))
            self._option_value = None
        elif tag == "select" and self._select is not None:
            name, multiple = self._select
            chosen = [value for value, selected in self._options if selected]
            if not chosen and not multiple and self._options:
                chosen = [self._options[0][0]]
            self.fields.extend((name, value) for value in (chosen if multiple else chosen[:1]))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, self._textarea_text.removeprefix("\n")))
            self._textarea = None


def form_fields(
    html: str, form_id: str | None = None, *, action: str | None = None
) -> tuple[str, list[tuple[str, str]]]:
    """The form's action and the fields a browser would send: the form with this id or action, else the first."""
    reader = _FormReader(form_id, action)
    reader.feed(html)
    assert reader.action is not None, f"no form {form_id or action or ''} on the page"
    return reader.action, reader.fields


def with_values(fields: list[tuple[str, str]], **changes: str) -> list[tuple[str, str]]:
    """The fields with some replaced (every value of that name) or added."""
    kept = [(name, value) for name, value in fields if name not in changes]
    return kept + list(changes.items())


def as_data(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The fields as the test client's `data=` takes them (repeated names as lists)."""
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    return data

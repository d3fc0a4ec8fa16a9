"""The interstitial page a click on an ad with a deeplink opens: it tries the deeplink, and when the app did not
open within a short wait, it goes on to the click's destination (the creative's click URL, through the
measurement partner's link where there is one).

This is what Google's and Meta's app-link fallbacks do for a user without the app (Android's
`browser_fallback_url`, App Links' `al:web:url`): the deeplink alone is a dead click for them.

The page's one script is constant, so the Content-Security-Policy admits exactly it by its hash: no inline
script of any other content runs, and the URLs reach the script as HTML attributes (escaped), never as code.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

# Milliseconds to wait for the app before the fallback: long enough for the system to hand the deeplink over
# (the page is then hidden and the fallback cancelled), short enough not to feel stuck.
FALLBACK_AFTER_MS = 1500

SCRIPT = """
(function () {
  var target = document.getElementById("open");
  var deeplink = target.getAttribute("data-deeplink");
  var fallback = target.getAttribute("data-fallback");
  var wait = parseInt(target.getAttribute("data-wait"), 10);
  var left = false;
  function away() { left = true; }
  document.addEventListener("visibilitychange", function () { if (document.hidden) { away(); } });
  window.addEventListener("pagehide", away);
  window.setTimeout(function () { if (!left) { window.location.replace(fallback); } }, wait);
  window.location.href = deeplink;
})();
""".strip()

STYLE = ("body{font:16px system-ui,sans-serif;margin:3em auto;max-width:28em;text-align:center}"
         "a{display:block;margin:1em;padding:.8em;border:1px solid #888;border-radius:6px}")


def _hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


CONTENT_SECURITY_POLICY = (f"default-src 'none'; script-src '{_hash(SCRIPT)}'; style-src '{_hash(STYLE)}'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# Schemes a deeplink may never have (creatives refuse them on write; checked again here for old rows).
FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript"})

HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("referrer-policy", "no-referrer"),  # the page's URL carries the tracking token
    ("x-content-type-options", "nosniff"),
)


def allowed(deeplink: str) -> bool:
    scheme, sep, _ = deeplink.partition(":")
    return bool(sep) and scheme.strip().lower() not in FORBIDDEN_SCHEMES


def page(deeplink: str, fallback: str) -> bytes:
    """The HTML of the interstitial page; both links are also shown, for a browser without scripts."""
    app, web = escape(deeplink, quote=True), escape(fallback, quote=True)
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex"><title>…</title>'
        f"<style>{STYLE}</style></head><body>"
        f'<a id="open" href="{app}" data-deeplink="{app}" data-fallback="{web}" '
        f'data-wait="{FALLBACK_AFTER_MS}">Open the app · 打开应用</a>'
        f'<a id="fallback" href="{web}">Continue · 继续</a>'
        f"<script>{SCRIPT}</script></body></html>"
    ).encode()

"""The console's web frame: templates, the visitor (session, language, CSRF), errors rendered as pages.

Pages are thin: they read a Visitor, call the same services as the API with a principal whose client is
"console", commit, and render a template or redirect (post/redirect/get).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from adstack.accounts import auth, permissions
from adstack.accounts.models import Account, Principal, User
from adstack.console import access, i18n, messages, vocabulary
from adstack.core.deps import SessionDep, SettingsDep
from adstack.core.errors import DomainError, Forbidden, Unauthenticated
from adstack.core.security import derive_key, hmac_sign, token_digest
from adstack.core.settings import Settings

PREFIX = "/console"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

SESSION_COOKIE = "adstack_session"
VISITOR_COOKIE = "adstack_visitor"  # binds the CSRF token of a visitor who has not signed in yet
LANGUAGE_COOKIE = "adstack_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Scripts and styles come only from our own origin; a CDN link would simply not load.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; font-src 'self'; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)


class SignInRequired(Exception):
    def __init__(self, next_url: str):
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRefused(Forbidden):
    code = "csrf_refused"


def safe_next(url: str | None, default: str = PREFIX + "/") -> str:
    """Only same-site console paths are followed after sign-in or a language switch (no open redirect)."""
    if not url:
        return default
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX) or url.startswith("//"):
        return default
    return url


def csrf_token_for(settings: Settings, seed: str) -> str:
    return hmac_sign(derive_key(settings.resolved_secret_key, "console-csrf"), token_digest(seed).encode(), size=24)


@dataclass
class Visitor:
    """Who is looking at a page, in which language, with which CSRF token."""

    request: Request
    session: Session
    settings: Settings
    language: str
    csrf_token: str
    principal: Principal | None = None
    user: User | None = None
    account: Account | None = None
    session_token: str | None = None
    pending_cookies: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    @property
    def me(self) -> Principal:
        """The signed-in principal; pages behind require_user never see None."""
        if self.principal is None:
            raise SignInRequired(self.request.url.path)
        return self.principal

    @property
    def time_zone(self) -> str:
        return self.account.time_zone if self.account is not None else "UTC"

    @property
    def currency(self) -> str:
        return self.account.currency if self.account is not None else "USD"

    @property
    def fmt(self) -> i18n.Formatter:
        return i18n.Formatter(self.language, self.time_zone)

    def gettext(self, message: str) -> str:
        return i18n.translations(self.language).gettext(message)

    def set_cookie(self, name: str, value: str, **options: Any) -> None:
        self.pending_cookies.append((name, value, options))

    def may(self, method: str, path: str) -> bool:
        """Whether `method path` (below /console) would pass require_user's check, so a page offers a button
        only to who may press it."""
        permission = access.permission_for(method, path)
        if self.principal is None or permission is None:
            return False
        try:
            permissions.authorize(self.principal, permission)
        except Forbidden:
            return False
        return True


def cookie_options(request: Request, *, max_age: int | None = None) -> dict[str, Any]:
    """HttpOnly and SameSite=Lax always; Secure whenever the console is reached over https (directly, or
    behind a TLS-terminating proxy whose public address is https)."""
    settings: Settings = request.app.state.settings
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": request.url.scheme == "https" or settings.public_base_url.startswith("https://"),
        "path": PREFIX,
        "max_age": max_age,
    }


def get_visitor(request: Request, session: SessionDep, settings: SettingsDep) -> Visitor:
    token = request.cookies.get(SESSION_COOKIE)
    principal = user = account = None
    if token:
        try:
            principal = auth.authenticate(session, token, client="console")
            session.commit()  # persists the coarse last-used stamp
        except Unauthenticated:
            principal, token = None, None
    if principal is not None:
        user = session.get(User, principal.user_id)
        if principal.account_id is not None:
            account = session.get(Account, principal.account_id)
    language = (
        i18n.normalise_language(request.cookies.get(LANGUAGE_COOKIE))
        or i18n.normalise_language(user.locale if user else None)
        or i18n.from_accept_language(request.headers.get("accept-language"))
        or i18n.DEFAULT_LANGUAGE
    )
    seed = token or request.cookies.get(VISITOR_COOKIE) or ""
    visitor = Visitor(request=request, session=session, settings=settings, language=language, csrf_token="",
                      principal=principal, user=user, account=account, session_token=token)
    if not seed:
        seed = secrets.token_urlsafe(24)
        visitor.set_cookie(VISITOR_COOKIE, seed, **cookie_options(request))
    visitor.csrf_token = csrf_token_for(settings, seed)
    request.state.visitor = visitor
    return visitor


VisitorDep = Annotated[Visitor, Depends(get_visitor)]


async def read_form(request: Request) -> FormData:
    """The posted form, parsed on the event loop, so page handlers can be plain functions that FastAPI runs in
    its thread pool (database work and password hashing never block serving on the same loop)."""
    return await request.form()


FormDep = Annotated[FormData, Depends(read_form)]


def require_user(visitor: VisitorDep) -> Visitor:
    """The signed-in visitor, authorised for the matched route's permission (console/access.py) by the API's own
    check: a refusal is the 403 page; staff operating on an advertiser's objects act, and are logged, on behalf."""
    request = visitor.request
    if visitor.principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        try:
            visitor.principal = permissions.authorize(visitor.principal,
                                                      access.permission_of(route, request.method))
        except Forbidden as exc:
            # The page speaks the refusal in the visitor's language; the API's field list would read as a form
            # error ("Role is not valid").
            raise Forbidden(exc.message, code=exc.code) from exc
    return visitor


def require_reviewer(visitor: Annotated[Visitor, Depends(require_user)]) -> Visitor:
    if not visitor.me.can_review:
        raise Forbidden("this page needs a platform reviewer")
    return visitor


def require_account_manager(visitor: Annotated[Visitor, Depends(require_user)]) -> Visitor:
    if not visitor.me.can_manage_accounts:
        raise Forbidden("this page needs a platform account manager")
    return visitor


def require_platform(visitor: Annotated[Visitor, Depends(require_user)]) -> Visitor:
    if not visitor.me.is_platform:
        raise Forbidden("this page needs platform staff")
    return visitor


UserDep = Annotated[Visitor, Depends(require_user)]
ReviewerDep = Annotated[Visitor, Depends(require_reviewer)]
AccountManagerDep = Annotated[Visitor, Depends(require_account_manager)]
PlatformDep = Annotated[Visitor, Depends(require_platform)]


async def check_csrf(request: Request, visitor: VisitorDep) -> None:
    """Every state-changing request carries the session's CSRF token, as a form field or an HTMX header."""
    if request.method not in UNSAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # cached by Starlette; the handler's Form() fields read the same data
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    expected = visitor.csrf_token
    if not sent or not secrets.compare_digest(expected.encode(), sent.encode()):
        raise CsrfRefused("the form is missing its security token or it has expired; reload the page",
                          code="csrf_refused")


# ---------- templates ----------


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(("html",)),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Catalogs are chosen per request: pages pass gettext/ngettext in their context.
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    return env


templates = _environment()

@lru_cache(maxsize=len(i18n.LANGUAGES))
def _template_gettext(language: str) -> tuple[Callable[..., str], Callable[..., str]]:
    """Jinja's "newstyle" gettext: `_("%(n)s ads", n=3)` formats, and variables are escaped like any output."""
    catalog = i18n.translations(language)

    @pass_context
    def gettext(context: Context, message: str, /, **variables: Any) -> str:
        translated = catalog.gettext(message)
        if context.eval_ctx.autoescape:
            translated = Markup(translated)  # noqa: S704 - our own catalog text; variables are escaped by %
        return translated % variables if variables else translated

    @pass_context
    def ngettext(context: Context, singular: str, plural: str, num: int, /, **variables: Any) -> str:
        variables.setdefault("num", num)
        translated = catalog.ngettext(singular, plural, num)
        if context.eval_ctx.autoescape:
            translated = Markup(translated)  # noqa: S704 - our own catalog text; variables are escaped by %
        return translated % variables

    return gettext, ngettext


def _words(visitor: Visitor) -> dict[str, Any]:
    """Helpers that put codes, refusals and stored reasons into the visitor's language (plain text, escaped)."""
    language = visitor.language
    catalog = i18n.translations(language)
    return {
        "speaker": messages.Speaker(language, visitor.currency),
        "code_name": lambda code: vocabulary.code_name(code, language),
        "format_description": lambda code, fallback="": vocabulary.format_description(code, language, fallback),
        "region_name": lambda region: vocabulary.region_name(region.code, region.name, language),
        "zone_name": lambda name: vocabulary.time_zone_name(str(name), language),
        "serving_reason": lambda reason: messages.serving_reason(reason, language),
        "tr": lambda text: catalog.gettext(str(text)) if text else "",
        "tr_list": lambda texts: [catalog.gettext(str(text)) for text in texts or [] if text],
    }


def render(visitor: Visitor, template: str, context: Mapping[str, Any] | None = None, *, status: int = 200,
           headers: Mapping[str, str] | None = None) -> HTMLResponse:
    gettext, ngettext = _template_gettext(visitor.language)
    body = templates.get_template(template).render(
        gettext=gettext,
        ngettext=ngettext,
        v=visitor,
        fmt=visitor.fmt,
        csrf_token=visitor.csrf_token,
        csrf_field=CSRF_FIELD,
        csrf_header=CSRF_HEADER,
        prefix=PREFIX,
        languages=i18n.LANGUAGE_NAMES,
        path=visitor.request.url.path,
        query=visitor.request.query_params,
        is_htmx=visitor.request.headers.get("HX-Request") == "true",
        **_words(visitor),
        **(context or {}),
    )
    return HTMLResponse(body, status_code=status, headers=dict(headers or {}))


def redirect(url: str, *, request: Request | None = None) -> Response:
    """303 after a form post; HTMX gets HX-Redirect so the whole page follows."""
    if request is not None and request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def with_notice(url: str, notice: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}notice={quote(notice)}"


# ---------- the route class: console errors are pages, never JSON ----------


def _apply_cookies(request: Request, response: Response) -> None:
    visitor: Visitor | None = getattr(request.state, "visitor", None)
    if visitor is not None:
        for name, value, options in visitor.pending_cookies:
            if value:
                response.set_cookie(name, value, **options)
            else:
                response.delete_cookie(name, path=options.get("path", PREFIX))
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")


def _error_page(request: Request, status: int, code: str, message: str,
                fields: list[dict[str, Any]] | None = None) -> Response:
    visitor: Visitor | None = getattr(request.state, "visitor", None)
    if visitor is None:
        return HTMLResponse(f"<h1>{status}</h1>", status_code=status)
    return render(visitor, "error.html", {"status": status, "code": code, "message": message,
                                          "fields": fields or []}, status=status)


class ConsoleRoute(APIRoute):
    """Renders domain errors as console pages and sends signed-out visitors to the sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired as exc:
                response = redirect(f"{PREFIX}/sign-in?next={quote(exc.next_url)}", request=request)
            except DomainError as exc:
                response = _error_page(request, exc.status, exc.code, exc.message,
                                       [f.as_dict() for f in exc.fields])
                if exc.retry_after is not None:
                    response.headers["Retry-After"] = str(exc.retry_after)
            except RequestValidationError as exc:
                # Console paths take ids; a malformed one is simply a page that does not exist.
                response = _error_page(request, 404, "not_found", str(exc.errors()[0].get("msg", "")))
            _apply_cookies(request, response)
            return response

        return console_handler


def session_ttl(settings: Settings) -> timedelta:
    return timedelta(hours=settings.token_ttl_hours)


"""What each event says, in English and Chinese (the console's catalog), for the list and for e-mail."""

from __future__ import annotations

from typing import Any

from adstack.console.i18n import N_, translations
from adstack.notifications.models import EventType

OBJECT_KINDS = {"account": N_("account"), "ad_group": N_("ad group"), "creative": N_("creative")}

MESSAGES: dict[str, str] = {
    EventType.REVIEW_APPROVED: N_('The %(kind)s "%(name)s" passed review.'),
    EventType.REVIEW_REJECTED: N_('The %(kind)s "%(name)s" did not pass review: %(reasons)s'),
    EventType.REVIEW_SUSPENDED: N_('The %(kind)s "%(name)s" was suspended by a reviewer and stopped serving: '
                                   '%(reasons)s'),
    EventType.REVIEW_SUSPENSION_LIFTED: N_('The suspension of the %(kind)s "%(name)s" was lifted.'),
    EventType.BALANCE_LOW: N_("The available balance %(available)s %(currency)s is below your low-balance "
                              "threshold of %(threshold)s %(currency)s; top up to keep ads serving."),
    EventType.BUDGET_EXHAUSTED: N_('The %(budget)s budget of the ad group "%(name)s" is spent; it stopped serving.'),
    EventType.TOP_UP_COMPLETED: N_("A top-up of %(amount)s %(currency)s was credited to the account."),
}
BUDGET_KINDS = {"daily": N_("daily"), "total": N_("total")}
MAIL_SUBJECT = N_("adstack: %(what)s")
SUBJECTS: dict[str, str] = {
    EventType.REVIEW_APPROVED: N_("review passed"),
    EventType.REVIEW_REJECTED: N_("review not passed"),
    EventType.REVIEW_SUSPENDED: N_("suspended"),
    EventType.REVIEW_SUSPENSION_LIFTED: N_("suspension lifted"),
    EventType.BALANCE_LOW: N_("low balance"),
    EventType.BUDGET_EXHAUSTED: N_("budget spent"),
    EventType.TOP_UP_COMPLETED: N_("top-up credited"),
}


def render(event_type: str, data: dict[str, Any], language: str) -> str:
    gettext = translations(language).gettext
    values = {key: value for key, value in data.items() if isinstance(value, str | int | float)}
    values["kind"] = gettext(OBJECT_KINDS.get(str(data.get("object_type")), "account"))
    values["name"] = str(data.get("object_name", ""))
    values["reasons"] = "; ".join(str(r) for r in data.get("reasons") or [])
    values["budget"] = gettext(BUDGET_KINDS.get(str(data.get("budget")), "total"))
    template = gettext(MESSAGES.get(event_type, "%(name)s"))
    try:
        return template % values
    except (KeyError, ValueError, TypeError):  # a translation that names a value the event lacks
        return MESSAGES.get(event_type, "") % {k: values.get(k, "") for k in _names(MESSAGES.get(event_type, ""))}


def _names(template: str) -> list[str]:
    import re

    return re.findall(r"%\((\w+)\)s", template)


def mail(event_type: EventType, data: dict[str, Any]) -> tuple[str, str]:
    """Subject and body: English, then Chinese, since the contact's language is not known."""
    en, zh = translations("en").gettext, translations("zh").gettext
    subject = f"{en(MAIL_SUBJECT) % {'what': en(SUBJECTS[event_type])}} / " \
              f"{zh(MAIL_SUBJECT) % {'what': zh(SUBJECTS[event_type])}}"
    body = f"{render(event_type, data, 'en')}\n\n{render(event_type, data, 'zh')}\n"
    return subject, body

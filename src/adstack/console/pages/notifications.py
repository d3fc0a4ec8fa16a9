"""The signed-in user's notifications: review results, suspensions, low balance, spent budgets, top-ups."""

from __future__ import annotations

from fastapi import APIRouter, Response

from adstack.console import notification_texts as texts
from adstack.console.web import PREFIX, ConsoleRoute, UserDep, redirect, render, with_notice
from adstack.core.deps import IdPath
from adstack.notifications import service as notifications

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 50


@router.get("/notifications")
def notification_list(visitor: UserDep, unread: bool = False, page: int = 1) -> Response:
    page = max(1, min(page, 10_000))
    rows = notifications.list_for_user(visitor.session, visitor.me, unread_only=unread, limit=PAGE_SIZE + 1,
                                       offset=(page - 1) * PAGE_SIZE)
    items = [{"id": n.id, "text": texts.render(n.event_type, n.data, visitor.language), "type": n.event_type,
              "created_at": n.created_at, "read": n.read_at is not None} for n in rows[:PAGE_SIZE]]
    return render(visitor, "notifications/list.html", {
        "items": items, "unread_only": unread, "page": page, "has_next": len(rows) > PAGE_SIZE,
        "unread_count": notifications.unread_count(visitor.session, visitor.me),
    })


@router.post("/notifications/{notification_id}/read")
def read_one(notification_id: IdPath, visitor: UserDep) -> Response:
    notifications.mark_read(visitor.session, visitor.me, notification_id)
    visitor.session.commit()
    return redirect(f"{PREFIX}/notifications", request=visitor.request)


@router.post("/notifications/read-all")
def read_all(visitor: UserDep) -> Response:
    notifications.mark_read(visitor.session, visitor.me)
    visitor.session.commit()
    return redirect(with_notice(f"{PREFIX}/notifications", "saved"), request=visitor.request)

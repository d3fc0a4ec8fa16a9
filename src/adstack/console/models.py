"""Console-only data: announcements that platform staff publish to every console user, with the text in each
console language they write it in, and the metric columns each user last chose for the ad list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base
from adstack.core.timeutil import utcnow


class Announcement(Base):
    __tablename__ = "announcements"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    # console language -> {"title", "body"}; `title` and `body` above are shown where a language has none
    translations: Mapped[dict[str, dict[str, str]]] = mapped_column(JSON, default=dict)
    author_user_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    def text_in(self, language: str) -> tuple[str, str]:
        """(title, body) in the visitor's language, or the default text when it has no translation."""
        text = (self.translations or {}).get(language)
        if text:
            return text["title"], text.get("body", "")
        return self.title, self.body


class ListColumns(Base):
    """The ad list's metric columns a user last chose, shown again on the next visit."""

    __tablename__ = "console_list_columns"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    column_set: Mapped[str] = mapped_column(String(16))  # basic, in_app, video or custom
    columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


AnnouncementTitle = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
AnnouncementBody = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]
ConsoleLanguage = Literal["en", "zh"]


class AnnouncementText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: AnnouncementTitle
    body: AnnouncementBody = ""


class AnnouncementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: AnnouncementTitle = Field(description="Shown in every language without its own translation.")
    body: AnnouncementBody = ""
    translations: dict[ConsoleLanguage, AnnouncementText] = Field(
        default_factory=dict, description="The text in other console languages, by language code.")


class AnnouncementRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    body: str
    created_at: datetime

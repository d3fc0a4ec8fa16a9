"""Where pruning walks that leave rows behind have got to."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base


class RetentionCursor(Base):
    """The highest id a walk has passed (`retention/service.py`): the impressions' walk leaves the clicks among them
    in place, so without it each run would read again every click it passed."""

    __tablename__ = "retention_cursors"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[int]

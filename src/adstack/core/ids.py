"""The bounds of a row id, shared by every request model and path parameter."""

from typing import Annotated

from pydantic import Field

# The largest id PostgreSQL's BIGINT and SQLite's INTEGER both hold: a larger one is refused with a 422 naming the
# field, never passed to the driver.
MAX_ID = 2**63 - 1

EntityId = Annotated[int, Field(ge=1, le=MAX_ID)]

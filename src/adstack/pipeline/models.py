"""Schemas of the pipeline's status (the log's records are described in `records.py`)."""

from __future__ import annotations

from pydantic import BaseModel


class ConsumerLag(BaseModel):
    name: str
    lag_events: int
    lag_seconds: float


class PipelineStatus(BaseModel):
    consumers: list[ConsumerLag]
    reservations_outstanding: int
    reserved_micros: int  # money held by served ads not yet billed, released or expired
    pending_postbacks: int

"""No routes: the event store is written by serving, tracking, attribution and billing, and read by reports.

`install` keeps a served process's store loaded in the background, so reports are current without
every reader flushing, and loads what is left when the process stops.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from adstack.events.service import get_event_store

log = logging.getLogger("adstack.events")


def install(app: FastAPI) -> None:
    def start(app: FastAPI) -> None:
        # Loading belongs with the consumers: a serving process whose pipeline runs elsewhere only appends.
        if app.state.settings.pipeline_in_process:
            get_event_store(app.state.settings).start_loader()

    def stop(app: FastAPI) -> None:
        store = get_event_store(app.state.settings)
        store.stop_loader()
        if not app.state.settings.pipeline_in_process:
            return
        try:
            if store.pending_bytes():  # nothing waiting: no need to open the store just to close it
                store.flush()
        except Exception:  # the journal keeps everything; the next start loads it
            log.exception("could not load pending events at shutdown")

    app.state.on_startup.append(start)
    app.state.on_shutdown.append(stop)

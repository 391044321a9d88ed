"""The table of contexts names exactly the tables and channels the library uses."""

from __future__ import annotations

import pytest

from flightbook.config.settings import Settings
from flightbook.eventstore.applications import EventStore
from flightbook.eventstore.contexts import CONTEXTS, context
from flightbook.eventstore.recorder import TransactionalRecorder

pytestmark = pytest.mark.integration


def test_each_application_stores_in_the_tables_its_context_names(settings: Settings) -> None:
    store = EventStore(settings, pool_size=1)
    try:
        for app in store:
            recorder = app.recorder
            assert isinstance(recorder, TransactionalRecorder)
            spec = context(app.spec.name)

            assert app.name == spec.application
            assert recorder.events_table_name == spec.events_table
            assert recorder.tracking_table_name == spec.tracking_table
            assert recorder.datastore.schema == spec.schema
    finally:
        store.close()
    assert [spec.name for spec in CONTEXTS] == [app.spec.name for app in store]

"""Rebuilding each read model into a new version (no live workers here: see tests/e2e)."""

from __future__ import annotations

import pytest

from flightbook.config.settings import Settings
from flightbook.projections.engine import Targets
from flightbook.projections.services import ProjectionServices
from flightbook.projections.tools.rebuild import RebuildError, rebuild
from flightbook.projections.tools.verify import compare_read_models, replay_read_models
from tests.support.history import History

pytestmark = pytest.mark.integration

LIVE = Targets(documents=(1,), redis=(1,), analytics=(1,))


def project_everything(services: ProjectionServices) -> None:
    for context, worker in (("inventory", "flights"), ("booking", "bookings")):
        items = services.reader.read(context, after=0, limit=100_000)
        engine = services.engine(worker)
        engine.apply([i.envelope for i in items if i.envelope is not None], LIVE)
        engine.refresh_analytics(LIVE)


@pytest.mark.parametrize("read_model", ["bookings", "flights", "redis", "analytics"])
def test_a_rebuilt_version_becomes_active_equals_a_replay_and_the_old_one_is_dropped(
    settings: Settings, services: ProjectionServices, history: History, read_model: str
) -> None:
    project_everything(services)
    lines: list[str] = []

    version = rebuild(services, read_model, say=lines.append, grace_seconds=0, settle_seconds=0)

    assert version == 2
    info = services.progress.versions()[read_model]
    assert (info.active, info.building) == (2, None)
    assert (
        compare_read_models(replay_read_models(settings), services.database, services.redis) == []
    )
    names = set(services.database.list_collection_names())
    if read_model == "redis":
        assert services.hashes.keys(f"{settings.redis_prefix}v1:") == []
        assert services.hashes.keys(f"{settings.redis_prefix}v2:")
    elif read_model == "analytics":
        assert {"sales_daily_v2", "load_factor_v2", "funnel_daily_v2"} <= names
        assert not {"sales_daily_v1", "load_factor_v1", "funnel_daily_v1"} & names
    else:
        assert f"{read_model}_v2" in names
        assert f"{read_model}_v1" not in names
    assert any("active" in line for line in lines)


def test_a_second_rebuild_while_one_runs_is_refused(
    services: ProjectionServices, history: History
) -> None:
    services.progress.start_building("bookings", 2)

    with pytest.raises(RebuildError, match="already being built"):
        rebuild(services, "bookings", say=lambda _line: None, grace_seconds=0, settle_seconds=0)

"""Against the real ESA MAAP catalogue: opt-in only (STACPULL_NETWORK_TESTS=1), never in CI."""

from __future__ import annotations

import pytest

from stacpull.config import DEFAULT_CATALOG, SearchConfig
from stacpull.plan import PlanRules, plan_item
from stacpull.search import search_pages


@pytest.mark.network
@pytest.mark.anyio
async def test_maap_search_plans_the_default_profile() -> None:
    config = SearchConfig(catalog=DEFAULT_CATALOG, collections=("BiomassLevel1aIOC",), max_items=2)
    items = [item async for page, _ in search_pages(config) for item in page]
    assert items, "the operational catalogue returned no BiomassLevel1aIOC item"
    jobs, refusals = plan_item(items[0], PlanRules())
    assert not refusals and any(job.asset_key == "product" for job in jobs)

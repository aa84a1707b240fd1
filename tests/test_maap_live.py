"""Against the real ESA MAAP catalogue: opt-in only (STACPULL_NETWORK_TESTS=1), never in CI."""

from __future__ import annotations

import pytest

from stacpull.config import SearchConfig
from stacpull.defaults import DEFAULT_CATALOG
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


@pytest.mark.network
@pytest.mark.anyio
async def test_maap_offline_token_exchange() -> None:
    """With a real offline token in STACPULL_OFFLINE_TOKEN, MAAP's endpoint answers."""
    import os

    from stacpull.config import load_config
    from stacpull.credentials import check_credentials, load_credentials
    from stacpull.oidc import OIDCTokenProvider

    if not os.environ.get("STACPULL_OFFLINE_TOKEN"):
        pytest.skip("set STACPULL_OFFLINE_TOKEN to a MAAP offline token")
    provider = load_credentials(load_config(env=os.environ).auth)
    assert isinstance(provider, OIDCTokenProvider)
    found = await check_credentials(provider)
    assert found.ok, found.detail
    assert found.expires_in is not None and found.expires_in > 30

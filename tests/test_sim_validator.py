"""stac-api-validator (core, item-search, collections, features, filter, with pagination)
finds no error in the simulated catalogue. The validator is not in the ``test`` extra (it
takes ~10 s and pulls stac-check, stac-validator and shapely): this runs where it is
importable (``scripts/validate-sim`` builds such an environment) and skips elsewhere. The
schemas it needs are read from local copies, never fetched; the mapping is tested always."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from stacpull.sim import SimServer
from stacpull.sim.catalog import SimCatalog, default_collections

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "validate_sim.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("validate_sim", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("validate_sim", module)
    spec.loader.exec_module(module)
    return module


def test_schemas_come_from_local_copies_and_a_missing_one_is_named() -> None:
    script = _script()
    item = script.local_schema(
        "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json", None
    )
    assert item["$id"].endswith("/item-spec/json-schema/item.json")
    feature = script.local_schema("https://geojson.org/schema/Feature.json", None)
    assert feature["$id"] == "https://geojson.org/schema/Feature.json"
    with pytest.raises(
        KeyError, match=re.escape("no local copy of the schema https://example.org/x.json")
    ):
        script.local_schema("https://example.org/x.json", None)


def test_extension_schemas_come_from_the_real_maap_folder(real_maap: Path) -> None:
    schema = _script().local_schema(
        "https://stac-extensions.github.io/file/v2.1.0/schema.json", real_maap / "schemas"
    )
    assert "file/v2.1.0" in schema["$id"]


# The validator calls pystac's deprecated get_all_items: its warning, not ours.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_stac_api_validator_reports_no_errors(real_maap: Path) -> None:
    pytest.importorskip("stac_api_validator")
    script = _script()
    with SimServer(SimCatalog(default_collections(count=3, product_size=20_000))) as sim:
        collection = next(iter(sim.catalog.specs))
        _warnings, errors = script.validate(sim.catalog_url, collection, real_maap / "schemas")
    assert errors == []

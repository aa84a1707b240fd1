"""Run stac-api-validator against the simulated catalogue, with every JSON schema served
from this machine (no machine here reaches schemas.stacspec.org or stac-extensions.github.io).

Schemas come from pystac's bundled copies (STAC 1.1.0 core, GeoJSON), from
``../shared/real-maap/schemas/`` (the file, authentication and product extensions; give
another folder with ``--schemas``) and from jsonschema's own metaschemas. They are read in
place, never copied into the repository. A schema that none of these has fails loudly,
naming its URL, instead of being fetched.

Run it through ``scripts/validate-sim`` (its own venv); ``tests/test_sim_validator.py``
calls :func:`validate` when the validator is installed. Exit status 0: no errors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

CONFORMANCE = ("core", "item-search", "collections", "features", "filter")
_STAC = re.compile(
    r"https://schemas\.stacspec\.org/v1\.1\.0/[a-z]+-spec/json-schema/([a-z-]+\.json)"
)
_GEOJSON = re.compile(r"https://geojson\.org/schema/([A-Za-z]+\.json)")
_EXTENSION = re.compile(r"https://stac-extensions\.github\.io/([a-z-]+)/v([0-9.]+)/schema\.json")
# The intersects tests' geometry: wide, so it meets items wherever the sim puts them.
_HALF_WORLD = {
    "type": "Polygon",
    "coordinates": [[[-180, -80], [0, -80], [0, 80], [-180, 80], [-180, -80]]],
}
_SCHEMA_HOSTS = (
    "https://schemas.",
    "https://geojson.",
    "https://stac-ext",
    "http://json-schema.org/",
    "https://json-schema.org/",
)
_META = {
    "http://json-schema.org/draft-07/schema": "draft7",
    "https://json-schema.org/draft/2019-09/schema": "draft201909",
    "https://json-schema.org/draft/2020-12/schema": "draft202012",
}


def shared_schemas() -> Path | None:
    """``schemas`` of the folder ``STACPULL_REAL_MAAP`` names, else of ``shared/real-maap``
    in a folder above this checkout or worktree, if any (as tests/conftest.py finds it)."""
    given = os.environ.get("STACPULL_REAL_MAAP")
    if given:
        return Path(given) / "schemas" if (Path(given) / "schemas").is_dir() else None
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "real-maap" / "schemas"
        if candidate.is_dir():
            return candidate
    return None


def local_schema(url: str, extensions: Path | None) -> Any:
    """The schema at ``url``, read from a local copy; a KeyError names what is missing."""
    import pystac.validation

    bundled = Path(pystac.validation.__file__).parent / "jsonschemas"
    bare = url.split("#")[0]
    if m := _STAC.fullmatch(bare):
        return json.loads((bundled / "stac-spec" / "v1.1.0" / m.group(1)).read_text())
    if m := _GEOJSON.fullmatch(bare):
        return json.loads((bundled / "geojson" / m.group(1)).read_text())
    if (m := _EXTENSION.fullmatch(bare)) and extensions is not None:
        path = extensions / f"{m.group(1)}-v{m.group(2)}.json"
        if path.is_file():
            return json.loads(path.read_text())
    if bare in _META:
        import jsonschema_specifications

        return jsonschema_specifications.REGISTRY.contents(bare)
    raise KeyError(f"no local copy of the schema {url} (nothing is fetched from the network)")


def _serve_schemas_locally(extensions: Path | None) -> None:
    """Point stac-validator's one fetch function at the local copies."""
    import stac_validator.utilities as utilities

    fetch = utilities.fetch_and_parse_file

    def local_first(input_path: str, headers: dict[str, str] | None = None) -> Any:
        if input_path.startswith(_SCHEMA_HOSTS):
            return local_schema(input_path, extensions)
        return fetch(input_path, headers)

    utilities.fetch_and_parse_file = local_first


def validate(
    root_url: str, collection: str, extensions: Path | None
) -> tuple[list[str], list[str]]:
    """The validator's warnings and errors for the STAC API at ``root_url``."""
    from stac_api_validator.validations import QueryConfig, validate_api

    _serve_schemas_locally(extensions)
    warnings, errors = validate_api(
        root_url=root_url,
        ccs_to_validate=list(CONFORMANCE),
        collection=collection,
        geometry=json.dumps(_HALF_WORLD),
        auth_bearer_token=None,
        auth_query_parameter=None,
        fields_nested_property=None,
        validate_pagination=True,
        query_config=QueryConfig(*([None] * 13)),
        transaction_collection=None,
        headers=None,
    )
    return list(warnings), list(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root-url", help="a running catalogue (default: start a sim here)")
    parser.add_argument("--collection", help="the collection the validator searches")
    parser.add_argument("--items", type=int, default=30, help="items per sim collection")
    parser.add_argument("--schemas", type=Path, default=shared_schemas(), help="extension schemas")
    args = parser.parse_args(argv)
    if args.root_url and not args.collection:
        parser.error("--root-url needs --collection (the one the validator searches)")
    if args.root_url:
        warnings, errors = validate(args.root_url, args.collection, args.schemas)
    else:
        from stacpull.sim import SimServer
        from stacpull.sim.catalog import SimCatalog, default_collections

        with SimServer(SimCatalog(default_collections(args.items))) as sim:
            collection = args.collection or next(iter(sim.catalog.specs))
            warnings, errors = validate(sim.catalog_url, collection, args.schemas)
    for title, lines in (("Warnings", warnings), ("Errors", errors)):
        print(f"{title}: {len(lines) or 'none'}")
        for line in lines:
            print(f"- {line}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

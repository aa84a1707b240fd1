"""Checked by ``mypy --strict`` in scripts/check, never run: the API's keyword options are
typed, so a misspelt key or a wrong type is a type error in user code. Each wrong call
carries the ignore its error needs; strict mypy fails on an ignore no longer needed, so
this file fails the check the day a wrong call stops being caught."""

from __future__ import annotations

from pathlib import Path

import stacpull


async def notebook() -> None:
    """Calls as a notebook writes them: right ones pass, wrong ones are caught."""
    result = stacpull.download(
        catalog="https://catalog.maap.eo.esa.int/catalogue/",
        collections=["BiomassLevel1aIOC"],
        dest=Path("data"),
        concurrency=8,
        max_bytes="50GB",
        max_items=None,
        offline_token_file="~/.maap/credentials.txt",
    )
    records: list[stacpull.FileRecord] = list(result.files())
    sizes: list[int | None] = [r.size for r in records]
    assert sizes is not None

    options: stacpull.Options = {"collections": "BiomassLevel1aIOC", "dest": "data"}
    await stacpull.adownload(**options)
    await stacpull.amirror(prune=True, **options)
    await stacpull.adry_run(**options)
    await stacpull.acollections(platform="FLEX", bbox=(0, 0, 1, 1))
    await stacpull.aqueryables("BiomassLevel1aIOC")
    await stacpull.asearch_items(max_items=5, output="items.csv")
    stacpull.search_items(collections="C1", datetime="2025-09")
    stacpull.dry_run(collections="C1", dest="d")
    stacpull.mirror(collections="C1", dest="d", prune=True)
    stacpull.queryables("C1", catalog="http://127.0.0.1:8000/")
    stacpull.collections(q="biomass")

    # misspelt keys
    stacpull.download(colections=["C1"], dest="d")  # type: ignore[call-arg]
    stacpull.mirror(collections=["C1"], maxitems=3)  # type: ignore[call-arg]
    stacpull.search_items(max_item=3)  # type: ignore[call-arg]
    stacpull.dry_run(concurency=2)  # type: ignore[call-arg]
    stacpull.collections(plattform="FLEX")  # type: ignore[call-arg]
    stacpull.queryables("C1", catlog="http://x/")  # type: ignore[call-arg]
    await stacpull.adownload(desst="d")  # type: ignore[call-arg]
    await stacpull.acollections(max_items=3, datetimes="2025")  # type: ignore[call-arg]
    bad: stacpull.Options = {"colections": "C1"}  # type: ignore[typeddict-unknown-key]
    assert bad

    # wrong types
    stacpull.download(concurrency="eight")  # type: ignore[arg-type]
    stacpull.download(collections=[1, 2])  # type: ignore[list-item]
    stacpull.mirror(adaptive="yes")  # type: ignore[arg-type]
    stacpull.search_items(max_items=2.5)  # type: ignore[arg-type]
    stacpull.dry_run(dashboard="fancy")  # type: ignore[arg-type]
    await stacpull.adry_run(retries="3")  # type: ignore[arg-type]

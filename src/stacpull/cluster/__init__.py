"""A mirror on a Dask cluster (issue 21): the only package that imports Dask, and only in
the modules that need it, when a cluster run uses them (a plain run imports none of it)."""

__all__: list[str] = []

"""The reference notebook's download loop, as a contender in the benchmark suite.

One ``requests.get`` after another with ``stream=True`` and 8 MiB chunks, no resume, no
verification: ``download_file_with_bearer_token`` from the BIOMASS notebook, minus its
progress bar. Run: ``python benchmarks/notebook_loop.py URLS OUT`` where each line of URLS
is ``URL<TAB>relative/path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import requests


def main() -> None:
    urls, out = Path(sys.argv[1]), Path(sys.argv[2])
    for line in urls.read_text().splitlines():
        url, rel = line.split("\t")
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        response = requests.get(url, stream=True, timeout=60)
        response.raise_for_status()
        with path.open("wb") as f:
            for chunk in response.iter_content(chunk_size=8 * 1024 * 1024):
                f.write(chunk)


if __name__ == "__main__":
    main()

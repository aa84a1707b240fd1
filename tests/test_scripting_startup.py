"""Help, the version and the listing commands' help start without what they do not run.

Speed is measured in benchmarks/startup.py; these tests only keep the heavy modules from
creeping back into the import of :mod:`stacpull.cli`: anyio, rich (drawn only by the
commands that print tables or the dashboard), the dashboard and the run's statistics, the
search client, planning, verification (hashlib, zipfile) and, for ``--help`` and
``--version``, the config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from stacpull import dashboard, hashes, units, verify

#: Loaded by none of the commands below (a prefix stands for its submodules too).
_NEVER = (
    "aiohttp",
    "anyio",
    "asyncio",
    "difflib",
    "hashlib",
    "pystac_client",
    "requests",
    "rich",
    "stacpull.api",
    "stacpull.auth",
    "stacpull.catalogue",
    "stacpull.dashboard",
    "stacpull.engine",
    "stacpull.events",
    "stacpull.transfer.attempts",
    "stacpull.transfer.http",
    "stacpull.journal",
    "stacpull.models",
    "stacpull.oidc",
    "stacpull.panels",
    "stacpull.plan",
    "stacpull.plot",
    "stacpull.report",
    "stacpull.search",
    "stacpull.stats",
    "stacpull.verify",
    "zipfile",
)
#: Nor these, by the commands that read no configuration.
_NO_CONFIG = ("stacpull.config", "tomllib")

#: Runs each command in turn in one process (what one loads stays loaded, so a later
#: command's list includes it) and prints, as JSON, which listed modules each left loaded.
_PROBE = """
import json, sys
from stacpull.cli import main
watched = json.loads(sys.argv[1])
seen = {}
for args in json.loads(sys.argv[2]):
    try:
        main(args, prog_name="stacpull")
    except SystemExit:
        pass
    seen[" ".join(args)] = sorted(
        m for m in sys.modules if any(m == w or m.startswith(w + ".") for w in watched)
    )
sys.stderr.write("\\n@@" + json.dumps(seen) + "\\n")
"""

_COMMANDS = (
    (["--help"], True),
    (["--version"], True),
    (["collections", "--help"], True),
    (["search", "--help"], True),
    (["config", "show"], False),
)


def test_help_version_and_listing_help_load_no_heavy_module() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACPULL_")}
    env["STACPULL_NO_USER_CONFIG"] = "1"
    watched = [*_NEVER, *_NO_CONFIG]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
            json.dumps(watched),
            json.dumps([args for args, _ in _COMMANDS]),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    seen = json.loads(done.stderr.rsplit("@@", 1)[1])
    # Commands run from the lightest to the heaviest: config show may read the config.
    expected = {
        " ".join(args): [] if no_config else ["stacpull.config", "tomllib"]
        for args, no_config in _COMMANDS
    }
    # A package's submodules come only with the package itself.
    inner = ("tomllib.", "stacpull.config.")
    loaded = {cmd: [m for m in mods if not m.startswith(inner)] for cmd, mods in seen.items()}
    assert loaded == expected


def test_moved_names_are_still_where_other_modules_import_them() -> None:
    """The multihash table and human_bytes moved to small modules; the old homes re-export
    the same objects."""
    assert verify.MULTIHASH_CODES is hashes.MULTIHASH_CODES
    assert verify.MULTIHASH_NAMES is hashes.MULTIHASH_NAMES
    assert verify.DEFAULT_RECORD_HASH == hashes.DEFAULT_RECORD_HASH == "blake3"
    assert "blake3" in hashes.MULTIHASH_NAMES
    assert list(hashes.MULTIHASH_NAMES) == sorted(hashes.MULTIHASH_NAMES)
    assert dashboard.human_bytes is units.human_bytes
    assert units.human_bytes(1234567) == "1.2 MB"
    assert {"DEFAULT_RECORD_HASH", "MULTIHASH_CODES", "MULTIHASH_NAMES"} <= set(verify.__all__)
    assert "human_bytes" in dashboard.__all__

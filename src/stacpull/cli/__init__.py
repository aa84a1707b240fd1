"""The command line: flags → :class:`~stacpull.config.Config` → the public API → exit code.

Exit codes: 0 every selected asset present and verified; 1 some files failed or were
refused; 2 bad input (flags, config, query, unreachable catalogue); 3 the run was stopped
(disk full, DEST unwritable); 130 interrupted. Every run is resumable: re-run it.

This module owns the ``stacpull`` group itself (its outer ``--debug``/``-q``/``-v``) and
registers the commands of its submodules: :mod:`.transfer` (download, mirror),
:mod:`.discovery` (search, collections, queryables), :mod:`.state` (report, status,
verify), :mod:`.setup` (config show, auth check) and :mod:`.sim` (demo, sim serve). Every
submodule imports only click and light modules at import time, so ``--help`` starts fast.
"""

from __future__ import annotations

from typing import Any

import click

from .._version import __version__
from . import discovery, setup, sim, state, transfer
from .options import DEBUG_OPTION, QUIET_ANYWHERE, VERBOSE_ANYWHERE, debug_logging
from .render import fail
from .run import fewer_malloc_arenas, scrubbed_output

__all__ = ["main"]


class _Stacpull(click.Group):
    """The ``stacpull`` group: a Ctrl-C that no command handles itself (while ``--from -``
    waits on its producer, while ``verify`` hashes) exits 130 with one line, as every
    command's interrupt does, instead of click's "Aborted!" and exit 1, the code of failed
    files and of rot."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            fail("interrupted", 130)


@click.group(
    cls=_Stacpull,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="stacpull")
@click.option(
    "--debug",
    is_flag=True,
    help="Log requests, retries, token refreshes and split files to stderr (never a token).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and the final summary.")
@click.option("-v", "--verbose", is_flag=True, help="Add a line per finished file.")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool, verbose: bool) -> None:
    """Fast, resumable, verified bulk downloads from STAC catalogues (ESA MAAP first)."""
    fewer_malloc_arenas()
    scrubbed_output(ctx)
    ctx.meta["stacpull.outer"] = {"quiet": quiet, "verbose": verbose}
    if debug:
        debug_logging(ctx)
        ctx.meta["stacpull.debug"] = True


def _debug_on_every_command(group: click.Group) -> None:
    """``--debug``, ``-q`` and ``-v`` after any subcommand (``stacpull search ... --debug``),
    as before it: the transfer commands list them among their options; every other command
    gets them here."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _debug_on_every_command(command)
            continue
        given = {opt for param in command.params for opt in param.opts}
        if "--debug" not in given:
            DEBUG_OPTION(command)
        if not given & {"-q", "--quiet"}:
            QUIET_ANYWHERE(command)
        if not given & {"-v", "--verbose"}:
            VERBOSE_ANYWHERE(command)


for _command in (
    discovery.collections,
    discovery.queryables_command,
    discovery.search,
    setup.auth_group,
    setup.config_group,
    sim.demo,
    sim.sim_group,
    state.report,
    state.status,
    state.verify,
    transfer.download,
    transfer.mirror,
):
    main.add_command(_command)
_debug_on_every_command(main)


if __name__ == "__main__":  # pragma: no cover
    main()

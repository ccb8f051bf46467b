"""The ``listeners`` command line (also ``python -m listeners``)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from dependency_injector import providers

from listeners.exceptions import ListenersError
from starter.container import HANDLER_THREAD_PREFIX

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
IDLE_WORKER_EXIT = 1.0
"""Seconds idle handler threads get to leave after the pool is shut down."""
LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)


def _common(function: Any) -> Any:
    function = click.option(
        "--app-dir", default=".", show_default=True, help="Directory put first on sys.path."
    )(function)
    function = click.option(
        "--config-dir",
        default=None,
        help="Folder with application.yaml and its profiles [default: ./config].",
    )(function)
    function = click.option(
        "--profile",
        "profiles",
        multiple=True,
        help="Active profile (repeatable; later wins). Env: LISTENERS_PROFILES.",
    )(function)
    return click.argument("target", metavar="MODULE:ATTR")(function)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="listeners")
def cli() -> None:
    """Spring-style declarative Kafka and RabbitMQ listeners."""


@cli.command()
@_common
@click.option(
    "--log-level", type=LEVELS, default=None, help="Overrides listeners.logging.level [default: INFO]."
)
def run(
    target: str, profiles: tuple[str, ...], config_dir: str | None, app_dir: str, log_level: str | None
) -> None:
    """Run the listeners of the container MODULE:ATTR until SIGTERM or Ctrl-C."""
    from listeners.cli.serve import serve

    logging.basicConfig(level=(log_level or "INFO").upper(), format=LOG_FORMAT, stream=sys.stderr)
    container = _prepare(target, profiles, config_dir, app_dir)
    if log_level is None:
        logging.getLogger().setLevel(container.settings().listeners.logging.level)
    code = asyncio.run(serve(container))
    _exit_without_waiting_for_abandoned_handlers(code)
    sys.exit(code)


@cli.command(name="list")
@_common
def list_(target: str, profiles: tuple[str, ...], config_dir: str | None, app_dir: str) -> None:
    """Print the listeners of MODULE:ATTR with their effective config and where each value came from."""
    from listeners.cli.show import render_plan
    from starter.application import plan

    logging.basicConfig(level="WARNING", format=LOG_FORMAT, stream=sys.stderr)
    container = _prepare(target, profiles, config_dir, app_dir)
    try:
        click.echo(render_plan(plan(container)))
    except ListenersError as error:
        _exit(error)


@cli.group()
def dlt() -> None:
    """Inspect and replay dead letters (on a real broker; see listeners.cli.dlt)."""


def _prepare(target: str, profiles: tuple[str, ...], config_dir: str | None, app_dir: str) -> Any:
    """Load the container and point it at the chosen config; config errors exit before anything connects."""
    from listeners.cli.loading import load_container
    from starter.loading import LaunchOptions

    try:
        container = load_container(target, app_dir)
        launch = LaunchOptions(
            config_dir=Path(config_dir) if config_dir is not None else None, profiles=profiles or None
        )
        container.launch.override(providers.Object(launch))
        container.loaded_settings()
    except ListenersError as error:
        _exit(error)
    return container


def _exit_without_waiting_for_abandoned_handlers(code: int) -> None:
    """Exit now if sync handlers outlived the shutdown timeout.

    Their messages were released uncommitted already; the interpreter would otherwise join the pool's
    threads at exit and hang for as long as the handlers do.
    """
    workers = [t for t in threading.enumerate() if t.name.startswith(HANDLER_THREAD_PREFIX)]
    deadline = time.monotonic() + IDLE_WORKER_EXIT
    for worker in workers:  # idle workers leave at once after the pool's shutdown; busy ones do not
        worker.join(max(0.0, deadline - time.monotonic()))
    stuck = [worker for worker in workers if worker.is_alive()]
    if stuck:
        logging.getLogger("listeners").warning(
            "%d sync handler(s) still running after the shutdown timeout; exiting without them", len(stuck)
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit(error: ListenersError) -> NoReturn:
    click.echo(f"listeners: error: {error}", err=True)
    sys.exit(1)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="listeners")


import listeners.cli.dlt  # noqa: E402, F401  (adds `dlt show` and `dlt replay` to the group above)

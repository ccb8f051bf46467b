"""``listeners run``: start the application, wait for SIGTERM/SIGINT, drain, exit."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from listeners.exceptions import ListenersError
from listeners.logs import install_logging
from starter.application import ListenersApplication

log = logging.getLogger("listeners")

EXIT_OK = 0
EXIT_STARTUP_FAILED = 1


async def serve(container: Any) -> int:
    """Run until a signal asks to stop; a second signal exits at once without draining.

    The log lines take ``listeners.logging.format`` and the current span's trace id from here on.
    """
    install_logging(container.settings().listeners.logging)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("second %s: exiting now without draining", name)
            logging.shutdown()
            os._exit(128 + signum)
        log.info("%s received: stopping (send it again to exit at once)", name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    app = ListenersApplication(container)
    try:
        await app.start()
    except ListenersError as error:
        _fail(str(error))
        return EXIT_STARTUP_FAILED
    except Exception as error:
        log.debug("startup failed", exc_info=error)
        _fail(f"startup failed: {type(error).__name__}: {error}")
        return EXIT_STARTUP_FAILED
    log.info("%d listener(s) running; press Ctrl-C to stop", len(app.listeners))
    await stop.wait()
    clean = await app.stop()
    log.info("stopped%s", "" if clean else " (some in-flight messages were released uncommitted)")
    return EXIT_OK


def _fail(reason: str) -> None:
    print(f"listeners: error: {reason}", file=sys.stderr, flush=True)

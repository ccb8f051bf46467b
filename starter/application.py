"""The application lifespan: configure, discover, connect, consume, drain.

``start`` does everything that can fail before the first message is consumed, in this order:
settings (invalid config stops here, before anything connects), discovery and resolution, the
transports the listeners use, the user's container resources, every listener's topology, handler
binding and signature checks, then the listeners. ``stop`` drains every listener concurrently within
``listeners.shutdown_timeout`` and logs one summary line per listener.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, cast

from listeners.clock import Clock
from listeners.codec import Codec
from listeners.discovery import discover, modules_needing_wiring
from listeners.exceptions import IdempotencyStoreError, StartupError, TransportError
from listeners.idempotency.guard import IdempotencyGuard
from listeners.idempotency.keys import key_reader, needs_payload
from listeners.idempotency.registry import IdempotencyStores
from listeners.idempotency.store import TransactionalStore
from listeners.logs import message_log_steps
from listeners.retry.backoff import BackOffPolicy
from listeners.retry.interceptor import ErrorHandler
from listeners.runtime.container import ListenerContainer
from listeners.runtime.forwarding import Forwarder
from listeners.runtime.invoker import Invoker
from listeners.runtime.parameters import ParameterPlan, plan_parameters
from listeners.runtime.pipeline import Interceptor, build_pipeline
from listeners.runtime.stats import ListenerStats
from listeners.spec import ListenerOptions, Retry, TransportKind
from listeners.tracing.setup import shutdown_owned
from listeners.transport.registry import TransportRegistry
from starter.loading import LoadedSettings
from starter.observability import Observability
from starter.resolve import ResolvedListener, resolve_listeners
from starter.settings import ApplicationSettings

log = logging.getLogger("listeners")


@dataclass(frozen=True)
class Plan:
    """What ``listeners list`` shows and ``start`` runs: settings and the resolved listeners."""

    loaded: LoadedSettings[ApplicationSettings]
    listeners: list[ResolvedListener]


def plan(container: Any) -> Plan:
    """Load settings and resolve every listener without connecting or instantiating anything."""
    loaded: LoadedSettings[ApplicationSettings] = container.loaded_settings()
    listeners = resolve_listeners(discover(container), loaded)
    return Plan(loaded, sorted(listeners, key=lambda resolved: resolved.listener_id))


BROKER_WAIT_BACKOFF = BackOffPolicy(initial=0.5, multiplier=2.0, maximum=5.0, jitter=0.1)
"""Between attempts to reach a broker at startup, while ``listeners.broker_wait`` lasts."""


class ListenersApplication:
    """Runs the listeners of one container."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.listeners: dict[str, ListenerContainer] = {}
        self._plan: Plan | None = None
        self._stores: IdempotencyStores | None = None
        self._guards: list[IdempotencyGuard] = []
        self._observability: Observability | None = None
        self._started = False
        self._froze = False  # gc.freeze() called by start()

    @property
    def settings(self) -> ApplicationSettings:
        assert self._plan is not None, "start() first"
        return self._plan.loaded.settings

    @property
    def server_port(self) -> int | None:
        """The port of the HTTP endpoints (``listeners.server.port``, or the one picked for 0)."""
        return self._observability.server_port if self._observability is not None else None

    def listener(self, listener_id: str) -> ListenerContainer:
        """The running container of ``listener_id``."""
        try:
            return self.listeners[listener_id]
        except KeyError:
            raise KeyError(f"no listener {listener_id!r}; running: {', '.join(self.listeners)}") from None

    async def start(self) -> None:
        """Start everything; on failure, undo what was started and raise."""
        self._plan = plan(self.container)
        for module in modules_needing_wiring([r.declaration for r in self._plan.listeners], self.container):
            self.container.wire(modules=[module])
        for resolved in self._plan.listeners:
            for note in resolved.notes:
                log.warning("listener %s: %s", resolved.listener_id, note)
        try:
            self._observability = Observability(
                self.container, self.settings, lambda: self.listeners.values(), lambda: self._started
            )
            await self._observability.start()
            registry: TransportRegistry = self.container.transports()
            for kind in sorted({resolved.endpoint.kind for resolved in self._plan.listeners}):
                await self._connect(registry, kind)
            await self._start_resources()
            await self._start_idempotency_stores(self._plan)
            for resolved in self._plan.listeners:
                await self._declare(registry, resolved)
            built = [await self._build(resolved) for resolved in self._plan.listeners]
            for resolved, listener in built:
                self.listeners[resolved.listener_id] = listener
                if resolved.endpoint.options.auto_startup:
                    await listener.start()
                    log.info(
                        "listener %s started: %s", resolved.listener_id, _startup_line(resolved, listener)
                    )
                else:
                    log.info("listener %s created, not started (auto_startup: false)", resolved.listener_id)
        except BaseException:
            await self._shutdown(0.0, summary=False)
            raise
        self._started = True
        if self.settings.listeners.gc_freeze:
            # Everything alive now (imports, wiring, schemas) lives as long as the app: move it out of
            # the collector's sight, so full collections under load scan only what handling allocates.
            gc.freeze()
            self._froze = True

    async def stop(self) -> bool:
        """Drain and stop; True if every listener finished its in-flight work in time."""
        timeout = self._plan.loaded.settings.listeners.shutdown_timeout if self._plan else 0.0
        return await self._shutdown(timeout, summary=self._started)

    async def _shutdown(self, timeout: float, *, summary: bool) -> bool:
        """Stop listeners, then transports, the embedded broker, the pool and the user's resources.

        Every step runs even if an earlier one failed; failures are logged, never raised, so neither
        the summary lines nor a startup error that led here are lost.
        """
        results = await asyncio.gather(*(listener.stop(timeout) for listener in self.listeners.values()))
        if summary:
            for listener_id, listener in self.listeners.items():
                log.info("listener %s stopped: %s", listener_id, listener.stats.summary())
        for guard in self._guards:
            await _logged("stopping lease renewal", guard.close())
        self._guards = []
        if self._stores is not None:
            await _logged("closing the idempotency stores", self._stores.close())
            self._stores = None
        if self._observability is not None:
            await _logged("stopping the metrics and endpoints", self._observability.close())
            self._observability = None
        if self._plan is not None:  # settings loaded, so the providers below can be built
            await _logged("closing the transports", self.container.transports().close())
            await _logged("flushing spans", _flushed(self.container.tracer_provider()))
            await _logged("closing the embedded broker", self.container.memory_broker().close())
            executor: Executor = self.container.executor()
            executor.shutdown(wait=False, cancel_futures=True)
        await _logged(
            "shutting down the container's resources", _maybe_await(self.container.shutdown_resources)
        )
        self._started = False
        if self._froze:  # what it froze may become garbage now (tests start many apps in one process)
            gc.unfreeze()
            self._froze = False
        return all(results)

    async def _start_resources(self) -> None:
        await _maybe_await(self.container.init_resources)

    async def _start_idempotency_stores(self, plan: Plan) -> None:
        """Start the store of every listener with an ``idempotency_key``, before anything consumes."""
        users = [r for r in plan.listeners if r.declaration.spec.idempotency_key is not None]
        if not users:
            return
        clock: Clock = self.container.clock()
        defaults = plan.loaded.settings.listeners.idempotency
        self._stores = IdempotencyStores(defaults, clock, self.container.idempotency_store())
        for resolved in users:
            if resolved.endpoint.options.batch:
                raise StartupError(
                    f"listener {resolved.listener_id}: idempotency_key is not supported on batch listeners"
                )
            kind = resolved.endpoint.options.idempotency.store or defaults.store
            try:
                await self._stores.started(kind)
            except IdempotencyStoreError as error:
                raise StartupError(
                    f"listener {resolved.listener_id}: cannot start the {kind} idempotency store: {error}"
                ) from error

    async def _guard(
        self, resolved: ResolvedListener, parameters: ParameterPlan, stats: ListenerStats
    ) -> IdempotencyGuard | None:
        declared = resolved.declaration.spec.idempotency_key
        options = resolved.endpoint.options.idempotency
        where = f"listener {resolved.listener_id}"
        if parameters.transactions and not (declared is not None and options.transactional):
            raise StartupError(
                f"{where}: parameter {parameters.transactions[0]!r} takes the idempotency transaction, "
                "which needs an idempotency_key and idempotency.transactional: true"
            )
        if declared is None or self._stores is None:
            return None
        kind = options.store or self.settings.listeners.idempotency.store
        store = await self._stores.started(kind)
        transactions = None
        if options.transactional:
            if not parameters.transactions or not parameters.is_async:
                raise StartupError(
                    f"{where}: idempotency.transactional needs an async handler with a parameter annotated "
                    "StoreTransaction, to write its rows in the key's transaction"
                )
            if not callable(getattr(store, "transaction", None)):
                raise StartupError(f"{where}: idempotency.transactional needs a store with transactions "
                                   f"(postgres), not {kind}")  # fmt: skip
            transactions = cast(TransactionalStore, store)
        key = key_reader(resolved.listener_id, declared)
        guard = IdempotencyGuard(resolved.listener_id, store, options, key, transactions, stats)
        self._guards.append(guard)
        return guard

    async def _connect(self, registry: TransportRegistry, kind: TransportKind) -> None:
        """Start the ``kind`` transport; a broker that cannot be reached fails startup at once, or
        after ``listeners.broker_wait`` of attempts with back-off (the app is live, not ready, meanwhile)."""
        wait = self.settings.listeners.broker_wait
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delays = BROKER_WAIT_BACKOFF.execution()
        while True:
            try:
                await registry.started(kind)
                return
            except Exception as error:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    waited = f" (tried for {wait:g}s, listeners.broker_wait)" if wait else ""
                    raise StartupError(f"cannot start the {kind} transport{waited}: {error}") from error
                delay = min(next(delays), remaining)
                log.warning(
                    "cannot start the %s transport yet, trying again in %.2gs "
                    "(%.3gs of listeners.broker_wait left): %s",
                    kind, delay, remaining, error,
                )  # fmt: skip
                await asyncio.sleep(delay)

    async def _declare(self, registry: TransportRegistry, resolved: ResolvedListener) -> None:
        try:
            await registry.get(resolved.endpoint.kind).declare(resolved.endpoint)
        except TransportError as error:
            raise StartupError(str(error)) from error

    async def _build(self, resolved: ResolvedListener) -> tuple[ResolvedListener, ListenerContainer]:
        declaration = resolved.declaration
        spec = declaration.spec
        handler = await declaration.bind()
        parameters = plan_parameters(
            handler,
            f"listener {resolved.listener_id} ({spec.handler_name})",
            batch=resolved.endpoint.options.batch,
        )
        forward = None
        if declaration.forward is not None:
            forward = Forwarder(
                declaration.forward,
                spec.kind,
                self.container.kafka_publisher(),
                self.container.rabbit_publisher(),
            )
        codec: Codec = self.container.codec()
        declared_key = spec.idempotency_key
        stats = ListenerStats()
        invoker = Invoker(
            listener_id=resolved.listener_id,
            handler=handler,
            plan=parameters,
            codec=codec,
            executor=self.container.executor(),
            forward=forward,
            guard=await self._guard(resolved, parameters, stats),
            key_needs_payload=declared_key is not None and needs_payload(declared_key),
        )
        user_interceptors: list[Interceptor] = list(self.container.interceptors())
        clock: Clock = self.container.clock()
        error_handler = ErrorHandler(
            resolved.listener_id, _error_handling_options(resolved.endpoint.options), clock=clock
        )
        tracing = self.container.message_tracing()
        steps: list[Interceptor] = [tracing] if tracing is not None else []
        metrics = self.container.message_metrics()
        if metrics is not None:
            steps.append(metrics.process_step(resolved.endpoint))
        steps += message_log_steps(self.settings.listeners.logging)  # after tracing: lines carry trace ids
        pipeline = build_pipeline([*steps, *user_interceptors], invoker)
        registry: TransportRegistry = self.container.transports()
        listener = ListenerContainer(
            resolved.endpoint,
            pipeline,
            registry.get(spec.kind),
            clock,
            on_error=error_handler.decide,
            lookahead=invoker.lookahead,
            stats=stats,
            direct=invoker.direct if pipeline is invoker else None,
        )
        return resolved, listener


async def _flushed(provider: Any) -> None:
    shutdown_owned(provider)


async def _maybe_await(call: Callable[[], Any]) -> None:
    """Call a dependency-injector method that returns an awaitable only when async resources exist."""
    result = call()
    if inspect.isawaitable(result):
        await result


async def _logged(what: str, step: Awaitable[None]) -> None:
    try:
        await step
    except Exception as error:
        log.error("%s failed: %s: %s", what, type(error).__name__, error, exc_info=error)


def _error_handling_options(options: ListenerOptions) -> ListenerOptions:
    if options.ack_mode == "at_most_once":
        # Acknowledged before the handler runs: a failure can be neither retried nor dead-lettered.
        dead_letter = options.dead_letter.model_copy(update={"enabled": False})
        return options.model_copy(update={"retry": Retry(attempts=1), "dead_letter": dead_letter})
    return options


def _startup_line(resolved: ResolvedListener, listener: ListenerContainer) -> str:
    options = resolved.endpoint.options
    forward = resolved.declaration.forward
    parts = [
        f"transport={resolved.endpoint.kind}",
        listener.describe(),
        f"concurrency={options.concurrency}",
        f"ordering={options.ordering}",
        f"max_in_flight={options.max_in_flight}",
        f"retry={options.retry.attempts}x/{options.retry.mode}",
        f"dead_letter={'on' if options.dead_letter.enabled else 'off'}",
    ]
    if forward is not None:
        parts.append(f"send_to={forward.describe()}")
    return " ".join(parts)

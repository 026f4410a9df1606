"""Running `cvml serve`: engines per variant, the uvicorn process, and a graceful SIGTERM.

    serve(ServeSpec(model="cv@prod", port=8000), api_key="k")     # blocks until shut down

SIGTERM (or Ctrl+C) does not stop the listener at once, as plain uvicorn would: the server
keeps answering so that a load balancer sees `/ready` turn 503 while in-flight requests
finish (up to `drain_timeout_s`); new requests get 503. Then uvicorn shuts down, the
engines stop, and the process exits 0. A second signal stops at once.

Auth fails closed: an empty key is an error, and a server that would listen off loopback
without an API key refuses to start.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import uvicorn

from cvml.errors import ConfigError, CvmlError
from cvml.modelio import ModelRef, resolve_model
from cvml.recipe import ServeSpec
from cvml.serve.app import create_app, is_loopback
from cvml.serve.context import AppSettings, ServeContext
from cvml.serve.pool import ModelPool, Opener, ServedModel
from cvml.serve.requestlog import RequestLog, enforce_retention
from cvml.serve.router import DEFAULT_EXPERIMENT
from cvml.variants import Variant, parse_variants

_log = logging.getLogger("cvml.serve")
SINGLE_VARIANT = "default"


@dataclass(frozen=True)
class Listening:
    """Where a started server answers, and what each variant serves."""

    url: str
    host: str
    port: int
    variants: dict[str, str]
    engine: str

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "host": self.host, "port": self.port, "variants": self.variants, "engine": self.engine}


def variants_of(spec: ServeSpec) -> list[Variant]:
    """The A/B arms of a spec: its variants with their split, or its one model.

    Raises:
        ConfigError: neither a model nor variants, both, or a bad variant/split.
    """
    if spec.variants and spec.model:
        raise ConfigError(
            "give either a model or --variant NAME=REF arms, not both",
            hint="with variants, every model is named by its --variant",
        )
    if spec.variants:
        return parse_variants(spec.variants, spec.split)
    if not spec.model and spec.experiment != DEFAULT_EXPERIMENT:
        from cvml.registry.experiments import load_experiment

        return load_experiment(spec.experiment).variants  # recorded by `cvml abtest start`
    if not spec.model:
        raise ConfigError("no model to serve", hint="cvml serve PATH | NAME | NAME@ALIAS, or --variant a=REF ...")
    if spec.split:
        raise ConfigError("--split needs two or more --variant arms", hint="drop --split to serve one model")
    return parse_variants([f"{SINGLE_VARIANT}={spec.model}"], None)


def cvml_opener(spec: ServeSpec) -> Opener:
    """Loads a version with `load_for_inference` and starts cvml's batching engine on it."""

    def open_model(variant: str, ref: ModelRef) -> ServedModel:
        from cvml._quiet import quiet_libraries
        from cvml.modelio import load_for_inference, pick_device, serving_dtype
        from cvml.serve.engine import Engine

        quiet_libraries()
        device = pick_device(spec.device)
        loaded = load_for_inference(ref, device=device, dtype=serving_dtype(spec.dtype, device, ref.path))
        engine = Engine(
            loaded, max_batch_size=spec.max_batch_size, max_queue=spec.max_queue, batch_wait_ms=spec.batch_wait_ms
        )
        engine.start()
        return ServedModel(
            variant=variant,
            model_ref=ref,
            tokenizer=loaded.tokenizer,
            engine=engine,
            context_length=loaded.context_length,
            release=engine.stop,
            load_s=loaded.load_s,
        )

    return open_model


def build_opener(spec: ServeSpec) -> Opener:
    """The opener of the chosen engine.

    Raises:
        ConfigError: `--engine vllm` where vLLM is not installed.
    """
    if spec.engine == "openvino":
        from cvml.serve.openvino_engine import openvino_opener, require_openvino

        require_openvino()
        return openvino_opener(spec)
    if spec.engine == "vllm":
        from cvml.serve.vllm_engine import require_vllm, vllm_opener

        require_vllm()
        return vllm_opener(spec)
    return cvml_opener(spec)


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket up front, so port 0 gets a free port we can report.

    Raises:
        ConfigError: the address is taken or cannot be bound.
    """
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name; resolved by bind
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 = any free port) or stop what uses it",
        ) from None
    sock.set_inheritable(True)
    return sock


def check_keys(host: str, api_key: str | None, admin_key: str | None = None) -> None:
    """Refuse what would leave the server open by mistake.

    Raises:
        ConfigError: an empty (or blank) key, or a host off loopback without an API key.
    """
    for flag, key in (("--api-key / CVML_API_KEY", api_key), ("--admin-key / CVML_ADMIN_KEY", admin_key)):
        if key is not None and not key.strip():
            raise ConfigError(
                f"{flag} is empty", hint="an empty key does not turn auth off: give a real key, or unset it"
            )
    if api_key is None and not _loopback_host(host):
        raise ConfigError(
            f"refusing to listen on {host} (off loopback) without an API key",
            hint="set --api-key KEY (or CVML_API_KEY), or keep --host 127.0.0.1",
        )


def _loopback_host(host: str) -> bool:
    """An address or name that only this machine can reach (a name must resolve to loopback only)."""
    if is_loopback(host.strip("[]")):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return False  # an address, not loopback (0.0.0.0, ::, a LAN address)
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(is_loopback(address) for address in addresses)


def build_context(
    spec: ServeSpec,
    *,
    api_key: str | None = None,
    opener: Opener | None = None,
    resolver: Callable[[str], ModelRef] | None = None,
    checks: Callable[[str, str, str | None], dict[str, Any]] | None = None,
) -> ServeContext:
    """The app's shared state for a spec: pool of variants, settings, request log.

    Args:
        spec: the serve section.
        api_key: required as a Bearer token on /v1 when set (and on /admin without an admin key).
        opener: loads a version and starts its engine (default: the spec's engine).
        resolver: reference → version (default: the registry at $CVML_HOME).
        checks: the rewrite safety checks (default: `cvml.serve.checks.run_checks`).

    Raises:
        ConfigError: an empty key, off loopback without a key, bad variants or split, or
            `--engine vllm` without vLLM.
    """
    check_keys(spec.host, api_key)
    pool = ModelPool(
        variants_of(spec),
        opener or build_opener(spec),
        resolver=resolver or resolve_model,
        experiment=spec.experiment,
        drain_timeout_s=spec.drain_timeout_s,
    )
    settings = AppSettings(
        api_key=api_key, max_new_tokens=spec.max_new_tokens, request_timeout_s=spec.request_timeout_s,
        grounding=spec.grounding, guard=spec.guard, guard_retries=spec.guard_retries,
    )
    # Serving: a Postgres log without CVML_LOG_KEY refuses to start (replicas must share the key);
    # a database that cannot be opened leaves the log degraded, and the server serves all the same.
    request_log = RequestLog(spec.log_db, log_text=spec.log_text, serving=True)
    return ServeContext(pool, settings, request_log, checks=checks)


def _prepare(
    spec: ServeSpec, ctx: ServeContext, on_ready: Callable[[Listening], None] | None, admin_key: str | None = None
) -> tuple[_DrainingServer, socket.socket]:
    """Check the keys, resolve every reference (unknown names fail before a port is taken),
    bind, build uvicorn."""
    check_keys(spec.host, ctx.settings.api_key, admin_key)
    refs = ctx.pool.resolve_all()
    sock = bind(spec.host, spec.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    server: _DrainingServer | None = None

    def ready() -> None:
        variants = {name: served.served_ref for name, served in ctx.pool.current.items()}
        server.listening = Listening(url, host, port, variants, spec.engine)
        if on_ready is not None:
            on_ready(server.listening)

    def failed(exc: BaseException) -> None:
        server.load_error = exc
        server.should_exit = True

    app = create_app(
        ctx, refs=refs, watch_registry_s=spec.watch_registry_s, on_load_failed=failed, on_ready=ready,
        admin_key=admin_key, docs=spec.docs,
    )
    # log_config=None: uvicorn's own dictConfig would close every logging handler in the
    # process (other libraries' included), not only configure its loggers.
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                            lifespan="on")
    server = _DrainingServer(
        config, ctx, url, drain_timeout_s=spec.drain_timeout_s, retention=timedelta(days=spec.log_retention_days)
    )
    return server, sock


def serve(
    spec: ServeSpec,
    *,
    api_key: str | None = None,
    admin_key: str | None = None,
    on_ready: Callable[[Listening], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain and return.

    Args:
        spec: the serve section (model or variants, engine, limits, log).
        api_key: required as a Bearer token on /v1 when set; needed off loopback.
        admin_key: the only key /admin/* accept; without one they answer loopback clients only.
        on_ready: called once every variant is loaded, with the address and versions.

    Raises:
        CvmlError: an empty key or an exposed host without a key, a reference that resolves
            to no model (before anything starts), a model that fails to load, an address
            that cannot be bound, or vLLM missing.
    """
    server, sock = _prepare(spec, build_context(spec, api_key=api_key), on_ready, admin_key)
    _log.info("cvml serve: %s (%s engine), loading %s", server.url, spec.engine, ", ".join(server.ctx.pool.variants))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    server.raise_load_error()


class BackgroundServer:
    """`cvml serve` on a thread of this process, for benchmarks and tests.

    The same app and drain as the command, without signal handling: `stop()` drains the
    way SIGTERM does.

        with BackgroundServer(ServeSpec(model="cv@prod", port=0)) as server:
            httpx.post(f"{server.url}/v1/cv/rewrite", json={...})

    Args:
        spec: the serve section (port 0 picks a free port).
        admin_key: the only key /admin/* accept (None: loopback clients only).
        **context: passed to `build_context` (api_key, opener, resolver, checks).
    """

    def __init__(self, spec: ServeSpec, *, admin_key: str | None = None, **context: Any):
        self.ctx = build_context(spec, **context)
        self._server, self._sock = _prepare(spec, self.ctx, None, admin_key)
        self.url = self._server.url
        self._thread = threading.Thread(target=self._run, name="cvml-serve", daemon=True)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self._sock.close()

    def start(self, wait_ready: bool = True, timeout_s: float = 300.0) -> BackgroundServer:
        """Start serving; wait until every variant is loaded (or, without `wait_ready`, listening).

        Raises:
            CvmlError: the models failed to load.
            TimeoutError: not ready within `timeout_s`.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._thread.is_alive():
            if self._server.listening is not None or (not wait_ready and self._server.started):
                return self
            time.sleep(0.02)
        self._thread.join(timeout=10)
        self._server.raise_load_error()
        raise TimeoutError(f"the server at {self.url} was not ready within {timeout_s:g} s")

    def stop(self, timeout_s: float = 60.0) -> None:
        """Drain (like SIGTERM) and wait for the thread to end."""
        if self._thread.is_alive():
            self._server.request_drain()
            self._thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _DrainingServer(uvicorn.Server):
    """uvicorn's Server with a drain between the first signal and the shutdown."""

    def __init__(
        self, config: uvicorn.Config, ctx: ServeContext, url: str, drain_timeout_s: float,
        retention: timedelta | None = None,
    ):  # fmt: skip
        super().__init__(config)
        self.ctx = ctx
        self.url = url
        self.drain_timeout_s = drain_timeout_s
        self.retention = retention  # purge the request log by this age on start, then daily
        self.listening: Listening | None = None
        self.load_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        retention = None
        if self.retention is not None and self.ctx.request_log is not None:
            retention = self._loop.create_task(enforce_retention(self.ctx.request_log, self.retention))
        try:
            await super().serve(sockets)
        finally:
            if retention is not None:
                retention.cancel()

    def handle_exit(self, sig: int, frame) -> None:
        # First signal: drain. (uvicorn would stop listening at once, and re-raise the signal
        # at exit so the process ends by it instead of with 0.) A second signal: stop now.
        if self._drain_task is not None or self._loop is None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        _log.warning("%s: draining (up to %g s); /ready answers 503", signal.Signals(sig).name, self.drain_timeout_s)
        self.request_drain()

    def request_drain(self) -> None:
        """Begin the drain from any thread (or a signal handler); it ends in the shutdown."""
        if self._loop is None:
            self.should_exit = True
        else:
            self._loop.call_soon_threadsafe(self._start_drain)

    def raise_load_error(self) -> None:
        """Re-raise, in the caller's thread, why the initial load failed (if it did)."""
        if self.load_error is None:
            return
        if isinstance(self.load_error, CvmlError):
            raise self.load_error
        raise CvmlError(f"loading the model failed: {self.load_error!r}") from self.load_error

    def _start_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        started = time.monotonic()
        self.ctx.begin_drain()
        if await self.ctx.wait_idle(self.drain_timeout_s):
            _log.warning("drained in %.2f s; shutting down", time.monotonic() - started)
        else:
            _log.warning("drain timeout: %d request(s) still in flight are cut", self.ctx.inflight)
        self.should_exit = True

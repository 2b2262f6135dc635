"""The Ray executor of `tts sweep --executor ray` (needs the `ray` extra).

One actor per engine: each actor builds the sweep's generator once (one GPU each when the
cluster has GPUs, else CPU) and runs its share of the jobs (`tts.experiment.execute.execute`, the local
executor's code) on it. Jobs (a run, or a subsample group that records one bank and replays it)
are dealt round-robin. Records stream back to the driver as they finish (a streaming actor
generator), and only the driver writes the store, so there is one writer per file and a
killed sweep resumes exactly like a local one. Banks of subsample groups are written by the
actor that owns the group, in the output folder, which must be on a filesystem the actors share.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from tts.errors import TTSError
from tts.experiment.execute import execute


class _Done:
    """The keys the driver's store already holds (the actor's read-only view of it)."""

    def __init__(self, keys: set[tuple[str, str, int]]):
        self.keys = keys
        self.fresh: queue.Queue = queue.Queue()

    def done(self, key: tuple[str, str, int]) -> bool:
        return key in self.keys

    def append(self, rec: dict[str, Any]) -> None:
        self.fresh.put(rec)


class EngineWorker:
    """The actor: one generator, jobs run in an event loop on a thread, records yielded."""

    def run(self, jobs: Sequence[Any], plan: Any, done: set[tuple[str, str, int]]) -> Iterator[dict[str, Any]]:

        store = _Done(done)
        end = object()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                asyncio.run(execute(jobs, plan, store))
            except BaseException as e:  # noqa: BLE001  (re-raised in the actor's caller below)
                failure.append(e)
            finally:
                store.fresh.put(end)

        threading.Thread(target=work, name="tts-actor", daemon=True).start()
        while (rec := store.fresh.get()) is not end:
            yield rec
        if failure:
            raise failure[0]


def run_ray(jobs: Sequence[Any], plan: Any, store: Any, actors: int | None = None, on_result: Any = None) -> None:
    """Spread `jobs` over `actors` engine actors; append every record they stream back to `store`."""
    try:
        import ray
    except ImportError:
        raise TTSError("--executor ray needs Ray: pip install 'ttscale[ray]'") from None
    if not ray.is_initialized():
        ray.init()  # RAY_ADDRESS=... joins a cluster; without it, a local one starts
    gpus = int(ray.cluster_resources().get("GPU", 0))
    k = max(1, min(actors or gpus or 1, len(jobs) or 1))
    opts = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    Actor = ray.remote(**opts)(EngineWorker)
    done = {k for k in store.records if store.done(k)} | set(getattr(store, "others", ()))  # failed: retried
    workers = [Actor.remote() for _ in range(k)]
    streams = [w.run.options(num_returns="streaming").remote(list(jobs[i::k]), plan, done)
               for i, w in enumerate(workers) if jobs[i::k]]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def drain(stream: Any) -> None:
        try:
            for ref in stream:
                rec = ray.get(ref)
                with lock:  # only the driver writes, one record at a time
                    store.append(rec)
                    if on_result is not None:
                        on_result(rec)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=drain, args=(s,), daemon=True) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in workers:
        ray.kill(w)
    if errors:
        e = errors[0]
        cause = getattr(e, "cause", None)  # a RayTaskError wraps the actor's exception
        if isinstance(cause, TTSError):
            raise TTSError(str(cause)) from None
        raise e

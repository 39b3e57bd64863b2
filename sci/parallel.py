"""One executor for every parameter sweep and Monte-Carlo simulation: in-process, local
processes or a Dask cluster, with the same results on each.

Choosing where the work runs
----------------------------
get_executor       -- an executor: serial, local processes (default) or a Dask scheduler
use_executor       -- context manager: library functions called inside it use that executor
current_executor   -- the executor library functions use now
configured_executor -- the executor chosen by use_executor or the environment, if any
parallel_map       -- ``fn`` over tasks on the current (or a given) executor, in task order

Reproducible random numbers
---------------------------
task_seeds         -- one independent :class:`numpy.random.SeedSequence` per task
split_trials       -- trial counts per task, from the sizes only

Executors
---------
Executor           -- the interface: ``map(fn, tasks)`` returns ``[fn(t) for t in tasks]``
SerialExecutor     -- in this process, one task after another
ProcessExecutor    -- a pool of local worker processes (``concurrent.futures``, spawn)
DaskExecutor       -- a ``dask.distributed`` cluster (extra ``sci-theory-results[dask]``)

Results do not depend on the executor: every task receives everything it needs (its seed
included, from :func:`task_seeds`) and runs with the array backend that was active where
:meth:`Executor.map` was called. They depend on the seed and on how the work is split into
tasks, which the library functions derive from the problem sizes alone, never from the number
of workers.
"""

from __future__ import annotations

import abc
import atexit
import concurrent.futures
import concurrent.futures.process
import contextlib
import contextvars
import functools
import multiprocessing
import numbers
import os
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ._progress import progress_bar, progress_enabled
from .backend import get_backend, use_backend

__all__ = [
    "DaskExecutor",
    "Executor",
    "ProcessExecutor",
    "SerialExecutor",
    "configured_executor",
    "current_executor",
    "get_executor",
    "parallel_map",
    "split_trials",
    "task_seeds",
    "use_executor",
]

SCHEDULER_VARIABLE = "SCI_DASK_SCHEDULER"
"""Environment variable: the Dask scheduler address used when none is given."""
WORKERS_VARIABLE = "SCI_WORKERS"
"""Environment variable: the number of local worker processes (1: run in-process)."""

_DASK_HINT = (
    'install the optional extra with `pip install "sci-theory-results[dask]"` '
    "(dask[array,distributed])"
)


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def _check_picklable(fn: Callable[..., Any], where: str) -> None:
    """Refuse up front a function that cannot travel to a worker (lambda, closure, method of a
    local class), with the reason, instead of a failure deep inside the pool."""
    try:
        pickle.dumps(fn)
    except Exception as exc:
        inner = fn.func if isinstance(fn, functools.partial) else fn
        name = getattr(inner, "__qualname__", type(inner).__name__)
        raise TypeError(
            f"fn {name!r} cannot be sent to {where}: it does not pickle ({exc}). Use a function "
            "defined at module level (not a lambda or a nested function); fix arguments with "
            "functools.partial"
        ) from exc


def _run_task(task: Any, fn: Callable[[Any], Any], backend: str) -> Any:
    """What a worker runs: ``fn(task)`` under the caller's backend. Parallel maps nested in
    ``fn`` run serially in the worker: the outer map already occupies every worker."""
    token = _current.set(_SERIAL)
    try:
        with use_backend(backend):
            return fn(task)
    finally:
        _current.reset(token)


def _describe(task: Any) -> dict[str, Any]:
    """Where a task ran: its backend, the executor nested maps would use, the process id
    (a module-level function, so that tests and users can probe a cluster with it)."""
    return {"task": task, "backend": get_backend(), "nested": current_executor().kind,
            "pid": os.getpid()}


class Executor(abc.ABC):
    """Runs a function over a list of independent tasks; see :func:`get_executor`.

    Subclasses implement :meth:`_map`; :meth:`map` adds the checks shared by all of them.
    Executors are context managers: leaving the ``with`` block releases their workers.
    """

    kind: str = "abstract"

    def map(
        self,
        fn: Callable[[Any], Any],
        tasks: Iterable[Any],
        *,
        progress: bool | None = False,
        desc: str | None = None,
    ) -> list[Any]:
        """``[fn(task) for task in tasks]``, computed by this executor, in task order.

        Parameters
        ----------
        fn : callable
            Takes one task and returns a result. Where the tasks leave this process (worker
            processes, a cluster) ``fn``, the tasks and the results must pickle: a
            module-level function, or a :func:`functools.partial` of one.
        tasks : iterable
            Picklable task descriptions (parameter values, seeds, chunks of trials).
        progress : bool or None
            Progress bar over completed tasks (``None``: on a terminal only).
        desc : str, optional
            Label of the progress bar.

        Returns
        -------
        list
            The results, in the order of ``tasks`` (not of completion).

        Raises
        ------
        TypeError
            If ``fn`` is not callable, or does not pickle where it has to leave the process.
        """
        tasks = list(tasks)
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        if not tasks:
            return []
        return self._map(fn, tasks, get_backend(), progress, desc)

    @abc.abstractmethod
    def _map(self, fn, tasks, backend, progress, desc) -> list[Any]:
        """Run ``fn`` over the (non-empty) ``tasks`` under ``backend``: each executor's own."""

    def close(self) -> None:  # noqa: B027 - a no-op by default, not abstract
        """Release the workers (a no-op where there are none)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """Every task in this process, one after the other (no start-up cost, no pickling of
    tasks): small sweeps, doctests, and the reference the other executors must match. Sweeps
    nested in a task use the executor configured around the call (not forced serial).

    Examples
    --------
    >>> from sci.parallel import SerialExecutor
    >>> SerialExecutor().map(abs, [-1, 2, -3])
    [1, 2, 3]
    """

    kind = "serial"

    def _map(self, fn, tasks, backend, progress, desc):
        # In this process, under the caller's backend and executor: a sweep nested in a task
        # may still use the pool configured around it.
        return [fn(task) for task in progress_bar(tasks, progress=progress, desc=desc)]

    def __repr__(self) -> str:
        return "SerialExecutor()"


_SERIAL = SerialExecutor()


def _init_worker(threads: int) -> None:
    """Give each worker process its share of the cores: without it every worker's Numba and
    BLAS thread pools would each claim all of them (oversubscription)."""
    os.environ["NUMBA_NUM_THREADS"] = str(threads)  # read when Numba is first imported
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    try:  # NumPy's BLAS is loaded already; threadpoolctl (if installed) can still limit it
        import threadpoolctl
    except ImportError:
        return
    threadpoolctl.threadpool_limits(threads)


class ProcessExecutor(Executor):
    """A pool of local worker processes (:class:`concurrent.futures.ProcessPoolExecutor`).

    The pool starts on the first :meth:`map` with more than one task and is reused until
    :meth:`close` (or the end of the interpreter). Workers are started with ``spawn`` (a clean
    interpreter: forking a process whose Numba or BLAS threads are running is unsafe), so a
    script that uses them needs the usual ``if __name__ == "__main__":`` guard. Each worker
    gets ``cores // max_workers`` Numba threads (and BLAS threads, where ``threadpoolctl`` is
    installed). A sweep of one task runs in-process.

    Parameters
    ----------
    max_workers : int, optional
        Worker processes (default: the cores this process may use).
    """

    kind = "local-process"

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is None:
            max_workers = _available_cores()
        self.max_workers = _check_workers(max_workers)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                threads = max(1, _available_cores() // self.max_workers)
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    self.max_workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker, initargs=(threads,),
                )
            return self._pool

    def _map(self, fn, tasks, backend, progress, desc):
        if len(tasks) == 1 or self.max_workers == 1:
            return _SERIAL._map(fn, tasks, backend, progress, desc)
        _check_picklable(fn, "worker processes")
        pool = self._get_pool()
        futures: list[concurrent.futures.Future] = []
        try:
            futures += [pool.submit(_run_task, task, fn, backend) for task in tasks]
            for _ in progress_bar(concurrent.futures.as_completed(futures), progress=progress,
                                  desc=desc, total=len(futures)):
                pass
            return [_result(future) for future in futures]
        except BaseException as exc:
            for future in futures:
                future.cancel()
            broken = concurrent.futures.process.BrokenProcessPool
            if isinstance(exc, broken) or isinstance(exc.__cause__, broken):
                # A dead worker breaks the whole pool for good: drop it, so that the next map
                # (this executor is cached by get_executor) starts a fresh one.
                self._discard(pool)
                if isinstance(exc, broken):
                    raise _worker_died(exc) from exc
            raise

    def _discard(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        _forget(self)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return f"ProcessExecutor(max_workers={self.max_workers})"


def _worker_died(exc: BaseException) -> RuntimeError:
    return RuntimeError(
        f"a worker process died ({exc}). Workers are started with 'spawn', which imports "
        "the main script again: protect its entry point with `if __name__ == \"__main__\":`"
        f". Out of memory? Use fewer workers ({WORKERS_VARIABLE}=1 runs in-process). The "
        "executor starts a new pool on its next use."
    )


def _result(future: concurrent.futures.Future) -> Any:
    try:
        return future.result()
    except concurrent.futures.process.BrokenProcessPool as exc:
        raise _worker_died(exc) from exc
    except (pickle.PicklingError, AttributeError) as exc:
        # The error's cause is the traceback where it was raised: in the task itself (through
        # _run_task), or while pickling a task or its result, which is what this is about.
        # Python 3.13 reports a local function as AttributeError("Can't get local object
        # ...") with no word of pickling, so the message alone cannot tell.
        if _run_task.__name__ in str(exc.__cause__ or ""):
            raise
        raise TypeError(
            f"a task or its result cannot be sent between processes: {exc}. Tasks and results "
            "must pickle (arrays, numbers, dicts, dataclasses defined at module level)"
        ) from exc


class DaskExecutor(Executor):
    """Tasks on a ``dask.distributed`` cluster.

    Parameters
    ----------
    client : distributed.Client or str
        A connected client (left open by :meth:`close`), or a scheduler address such as
        ``"tcp://10.0.0.5:8786"`` (a client is opened, and closed by :meth:`close`).
    timeout : float
        Seconds to wait for the scheduler before giving up with :class:`ConnectionError`.

    Notes
    -----
    Every task is submitted with ``pure=False`` (two equal tasks are two computations: they
    carry different seeds anyway) and gathered in task order. The workers need ``sci`` (the
    same version) importable; their own thread settings (``--nthreads``) are left alone.
    """

    kind = "dask"

    def __init__(self, client: Any, *, timeout: float = 10.0) -> None:
        distributed = _import_distributed()
        if isinstance(client, str):
            address = client.strip()
            if not address:
                raise ValueError("the Dask scheduler address is empty")
            try:
                client = distributed.Client(address, timeout=f"{float(timeout)}s",
                                            set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(
                    f"could not reach the Dask scheduler at {address!r} within {timeout:g} s "
                    f"({exc}); check the address (tcp://HOST:8786) and that the scheduler is "
                    f"running; without a scheduler (none given, {SCHEDULER_VARIABLE} unset) "
                    "the work runs on local processes"
                ) from exc
            self._owned = True
        elif isinstance(client, distributed.Client):
            self._owned = False
        else:
            raise TypeError(
                "client must be a distributed.Client or a scheduler address string; got "
                f"{type(client).__name__}"
            )
        self.client = client

    def _map(self, fn, tasks, backend, progress, desc):
        distributed = _import_distributed()
        _check_picklable(fn, "a Dask cluster")
        futures = self.client.map(_run_task, tasks, fn=fn, backend=backend, pure=False)
        try:
            if progress_enabled(progress) is not False:
                done = distributed.as_completed(futures, loop=self.client.loop)
                for _ in progress_bar(done, progress=progress, desc=desc, total=len(futures)):
                    pass
            return self.client.gather(futures)
        except BaseException:
            self.client.cancel(futures)
            raise

    def close(self) -> None:
        _forget(self)
        if self._owned:
            self.client.close()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client.scheduler.address!r})"


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            f"running on a Dask cluster needs dask.distributed, which is not installed: "
            f"{_DASK_HINT}"
        ) from exc
    return distributed


def _check_workers(max_workers: Any) -> int:
    if isinstance(max_workers, bool) or not isinstance(max_workers, numbers.Integral):
        raise TypeError(
            f"max_workers must be a positive integer; got {type(max_workers).__name__} "
            f"{max_workers!r}"
        )
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1; got {max_workers}")
    return int(max_workers)


def _workers_from_environment() -> int | None:
    text = os.environ.get(WORKERS_VARIABLE, "").strip()
    if not text:
        return None
    try:
        return _check_workers(int(text))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{WORKERS_VARIABLE} must be a positive integer; got {text!r}"
        ) from exc


_dask_executors: dict[tuple[str, float], DaskExecutor] = {}
_process_executors: dict[int | None, ProcessExecutor] = {}
_cache_lock = threading.Lock()


def get_executor(
    scheduler: Any = None, *, max_workers: int | None = None, timeout: float = 10.0
) -> Executor:
    """The executor for ``scheduler``: a Dask cluster, local processes, or this process.

    Parameters
    ----------
    scheduler : None, str, distributed.Client or Executor
        ``None``: the address in ``SCI_DASK_SCHEDULER`` if set, else local processes.
        ``"serial"``: this process. ``"processes"``: local processes. Any other string: the
        address of a Dask scheduler (``"tcp://host:8786"``). A ``distributed.Client``: its
        cluster. An :class:`Executor` is returned as it is.
    max_workers : int, optional
        Local worker processes (default ``SCI_WORKERS`` or the available cores); ``1`` runs
        in this process. Ignored for Dask, whose cluster decides.
    timeout : float
        Seconds to wait for a Dask scheduler.

    Returns
    -------
    Executor
        Executors for an address or a number of workers are created once and reused (their
        workers stay up until the interpreter exits).

    Raises
    ------
    ImportError
        For a Dask scheduler when ``dask.distributed`` is not installed (``pip install
        "sci-theory-results[dask]"``).
    ConnectionError
        When the scheduler does not answer within ``timeout`` seconds.

    Examples
    --------
    >>> from sci.parallel import get_executor
    >>> get_executor("serial")
    SerialExecutor()
    >>> get_executor(max_workers=2)
    ProcessExecutor(max_workers=2)
    """
    if isinstance(scheduler, Executor):
        return scheduler
    if max_workers is not None:
        max_workers = _check_workers(max_workers)
    if scheduler is None:
        scheduler = os.environ.get(SCHEDULER_VARIABLE, "").strip() or "processes"
    if isinstance(scheduler, str):
        name = scheduler.strip()
        if name == "serial":
            return _SERIAL
        if name == "processes":
            workers = max_workers if max_workers is not None else _workers_from_environment()
            if workers == 1:
                return _SERIAL
            with _cache_lock:
                if workers not in _process_executors:
                    _process_executors[workers] = ProcessExecutor(workers)
                return _process_executors[workers]
        key = (name, float(timeout))
        with _cache_lock:
            if key not in _dask_executors:
                _dask_executors[key] = DaskExecutor(name, timeout=timeout)
            return _dask_executors[key]
    if not callable(getattr(scheduler, "submit", None)):  # before importing Dask for it
        raise TypeError(
            "scheduler must be None, 'serial', 'processes', a Dask scheduler address, a "
            f"distributed.Client or an Executor; got {type(scheduler).__name__}"
        )
    return DaskExecutor(scheduler, timeout=timeout)


def _forget(executor: Executor) -> None:
    """Drop a closed executor from the cache of :func:`get_executor`."""
    with _cache_lock:
        for cache in (_process_executors, _dask_executors):
            for key in [k for k, v in cache.items() if v is executor]:
                del cache[key]


@atexit.register
def _close_cached() -> None:
    with _cache_lock:
        executors = [*_process_executors.values(), *_dask_executors.values()]
        _process_executors.clear()
        _dask_executors.clear()
    for executor in executors:
        with contextlib.suppress(Exception):
            executor.close()


_current: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "sci_executor", default=None
)


def current_executor() -> Executor:
    """The executor that library functions use when they are not given one.

    Set by :func:`use_executor`; otherwise :func:`get_executor` ``()`` (``SCI_DASK_SCHEDULER``
    or local processes). Inside a task it is the serial executor: the outer map already
    occupies every worker.

    Examples
    --------
    >>> from sci.parallel import current_executor, use_executor
    >>> with use_executor("serial"):
    ...     current_executor()
    SerialExecutor()
    """
    executor = _current.get()
    return executor if executor is not None else get_executor()


def configured_executor() -> Executor | None:
    """The executor chosen by :func:`use_executor`, ``SCI_DASK_SCHEDULER`` or ``SCI_WORKERS``;
    ``None`` when nothing was chosen (library functions then use local processes).

    Lets a caller pick its own default where the work is known to be small (the figures'
    quick mode runs in-process unless an executor was chosen).

    Examples
    --------
    >>> from sci.parallel import configured_executor, use_executor
    >>> with use_executor("serial"):
    ...     configured_executor()
    SerialExecutor()
    """
    executor = _current.get()
    if executor is not None:
        return executor
    if (os.environ.get(SCHEDULER_VARIABLE, "").strip()
            or os.environ.get(WORKERS_VARIABLE, "").strip()):
        return get_executor()
    return None


@contextlib.contextmanager
def use_executor(
    scheduler: Any = None, *, max_workers: int | None = None, timeout: float = 10.0
) -> Iterator[Executor]:
    """Run the sweeps and simulations called inside the block on one executor.

    The arguments are those of :func:`get_executor`. The setting is a context variable, local
    to the thread (and asyncio task) that enters the block.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.generalization import simulate_linear
    >>> from sci.parallel import use_executor
    >>> with use_executor("serial"):
    ...     eg, et = simulate_linear(20, 40, [1.0], sigma_eps=0.1, n_trials=3, rng=0)
    >>> eg.shape
    (3, 1)
    """
    executor = get_executor(scheduler, max_workers=max_workers, timeout=timeout)
    token = _current.set(executor)
    try:
        yield executor
    finally:
        _current.reset(token)


def parallel_map(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    *,
    executor: Any = None,
    progress: bool | None = False,
    desc: str | None = None,
) -> list[Any]:
    """``[fn(task) for task in tasks]`` on ``executor`` (default :func:`current_executor`).

    Parameters
    ----------
    fn, tasks, progress, desc
        As in :meth:`Executor.map`.
    executor : None, Executor, str or distributed.Client
        Anything :func:`get_executor` accepts; ``None`` for the current executor.

    Examples
    --------
    >>> import math
    >>> from sci.parallel import parallel_map
    >>> parallel_map(math.factorial, [3, 4, 5], executor="serial")
    [6, 24, 120]
    """
    runner = current_executor() if executor is None else get_executor(executor)
    return runner.map(fn, tasks, progress=progress, desc=desc)


def map_trials(
    task: Callable[[Any], Any],
    sizes: list[int],
    generator: np.random.Generator,
    *,
    executor: Any = None,
    progress: bool | None = False,
    desc: str | None = None,
) -> list[Any]:
    """``task((size, seed))`` for the trial counts ``sizes`` of a Monte-Carlo simulation.

    One task runs in this process with ``generator`` itself as its seed, so that it draws
    exactly what the serial code would and the caller's generator advances as after any
    draw (sent to a worker, the generator would be a copy: the caller's would stay put and the
    next call repeat the same draws). Several tasks get the children of ``generator``'s seed
    (:func:`task_seeds`), task ``k`` child ``k`` on any executor.
    """
    if len(sizes) == 1:
        return [task((sizes[0], generator))]
    seeds = task_seeds(generator, len(sizes))
    return parallel_map(task, list(zip(sizes, seeds, strict=True)), executor=executor,
                        progress=progress, desc=desc)


def task_seeds(seed: Any, n_tasks: int) -> list[np.random.SeedSequence]:
    """One independent seed per task: task ``i`` gets the same stream on any executor.

    Parameters
    ----------
    seed : None, int, sequence of int, numpy.random.SeedSequence or numpy.random.Generator
        An int (or a ``SeedSequence``) always gives the same children: child ``i`` is
        ``SeedSequence(entropy, spawn_key=(*spawn_key, i))``, NumPy's own spawning scheme,
        so the seeds of the first tasks do not change when more tasks are added. A
        ``Generator`` spawns new children at each call (its state advances, as when drawing
        from it). ``None``: fresh entropy from the operating system.
    n_tasks : int
        Number of seeds.

    Returns
    -------
    list of numpy.random.SeedSequence
        Pass each to :func:`numpy.random.default_rng` inside its task.

    Examples
    --------
    >>> import numpy as np
    >>> from sci.parallel import task_seeds
    >>> a, b = task_seeds(7, 2)
    >>> c, = task_seeds(7, 1)
    >>> bool(np.random.default_rng(a).random() == np.random.default_rng(c).random())
    True
    """
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, numbers.Integral) or n_tasks < 0:
        raise ValueError(f"n_tasks must be a non-negative integer; got {n_tasks!r}")
    if isinstance(seed, np.random.Generator):
        seq = seed.bit_generator.seed_seq
        if isinstance(seq, np.random.SeedSequence):
            return list(seq.spawn(int(n_tasks)))
        # A generator built without a SeedSequence: seed the children from its own draws.
        return list(np.random.SeedSequence(seed.integers(0, 2**63, size=4)).spawn(n_tasks))
    if isinstance(seed, bool):
        raise TypeError("seed must be None, an int, a SeedSequence or a Generator; got bool")
    if not isinstance(seed, np.random.SeedSequence):
        try:
            seed = np.random.SeedSequence(seed)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                "seed must be None, a non-negative int (or a sequence of them), a "
                f"numpy.random.SeedSequence or a numpy.random.Generator; got {seed!r}"
            ) from exc
    return [
        np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, i),
                               pool_size=seed.pool_size)
        for i in range(int(n_tasks))
    ]


def split_trials(n_trials: int, per_task: int) -> list[int]:
    """Trials per task: the fewest tasks of at most ``per_task`` trials, as even as possible.

    Examples
    --------
    >>> from sci.parallel import split_trials
    >>> split_trials(10, 4)
    [4, 3, 3]
    """
    for value, name in ((n_trials, "n_trials"), (per_task, "per_task")):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    n_tasks = -(-int(n_trials) // int(per_task))
    base, rest = divmod(int(n_trials), n_tasks)
    return [base + 1] * rest + [base] * (n_tasks - rest)

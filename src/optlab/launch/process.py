"""Run a job here, in a fresh process, in a reusable worker process, or as a SLURM job (submitit).

`run(job, how)`, how:
- `pool`: in a spawned child of this process, reused for up to `jobs_per_process` jobs. A crash, a
  segfault or the kernel's OOM killer takes down that child, not the caller: the job's outcome
  says why and a fresh child runs the next one. Imports and first-run warm-up are paid once per
  child (measured on 2 CPU cores: a 2-epoch digits trial costs ~1-2 s warm, ~9 s in a fresh process).
- `subprocess`: `python -m optlab.launch <run_dir>/job.json`, a fresh process (and process group)
  per job: for multi-process strategies, where Lightning re-runs that command line for every rank.
- `inline`: in this process (debuggers, profilers); a crash takes the caller down.
- `submitit`: a job of submitit's executor (`cluster=slurm` on a SLURM cluster, `local` here),
  waited for like the others; `submitit={...}` are its executor parameters.
Forking is not offered: a child forked from a process whose torch/Lightning threads hold locks can
deadlock (seen here), and every forked child re-pays the warm-up anyway.
Every mode returns the job's outcome (optlab.launch.job), never raises for a failed job, and stops
what it started when the caller is interrupted. `while_running()` is a context manager held while
the job runs (a sweep worker's heartbeat); `timeout` stops a job that runs longer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from optlab.launch.job import OUTCOME, Job, outcome_of, read_outcome, run_here

MODES = ("pool", "subprocess", "inline", "submitit")
JOB_FILE = "job.json"


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the worker dies, so a killed worker leaves no orphan training."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


_POOL = None  # (executor, jobs_per_process) of this process


def _pool_init(owner: int) -> None:
    """A pool process: dies with its owner, ignores the terminal's Ctrl-C (the owner stops it)."""
    _die_with_parent()
    if os.getppid() != owner:
        os._exit(3)
    os.setpgrp()  # its own group: the owner can stop it and everything it started
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_run(job: Job) -> dict:
    """In the pool process: run one job with stdout/stderr going to its log file."""
    if job.log_file is None:
        return _run_restoring(job)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(job.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1), os.dup2(fd, 2)
    os.close(fd)
    try:
        return _run_restoring(job)
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        os.close(saved[0]), os.close(saved[1])


def _run_restoring(job: Job) -> dict:
    """run_here, leaving this process as it found it for the next job (Hydra's config, threads, memory)."""
    import gc

    import torch

    from optlab.run import hydra_config_kept

    threads = torch.get_num_threads()
    try:
        with hydra_config_kept():
            return run_here(job)
    finally:
        torch.set_num_threads(threads)
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def _pool(jobs_per_process: int | None):
    global _POOL
    if _POOL is None or _POOL[1] != jobs_per_process:
        shutdown_pool()
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_pool_init,
            initargs=(os.getpid(),),
            max_tasks_per_child=jobs_per_process,
        )
        _POOL = (executor, jobs_per_process)
    return _POOL[0]


def _warm_up() -> None:
    import optlab.run  # noqa: F401 - torch, Lightning, Hydra: what every job imports first


def warm_pool(jobs_per_process: int | None) -> None:
    """Start the pool process and its imports now, while the caller does other work (a
    comparison plans its candidates meanwhile): the first job then waits less."""
    _pool(jobs_per_process).submit(_warm_up)


def shutdown_pool(kill: bool = False) -> None:
    global _POOL
    if _POOL is None:
        return
    executor, _POOL = _POOL[0], None
    if kill:
        for proc in list((executor._processes or {}).values()):
            _stop_group(proc.pid)
    executor.shutdown(wait=not kill, cancel_futures=True)


def _stop_group(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(1.0)


def _crash_reason(code: int | None, log_path: str | None, timed_out: bool, timeout) -> str:
    if timed_out:
        return f"timed out after {timeout} s and was stopped"
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = " (likely the kernel's out-of-memory killer: see `dmesg`)" if -code == signal.SIGKILL else ""
        return f"job process killed by {name}{hint}{_where(log_path)}"
    tail = ""
    if log_path and Path(log_path).is_file():
        lines = [ln.strip() for ln in Path(log_path).read_text(errors="replace").splitlines() if ln.strip()]
        tail = f": {lines[-1][:300]}" if lines else ""
    return f"job process exited with code {code}{tail}{_where(log_path)}"


def _where(log_path: str | None) -> str:
    return f"; log: {log_path}" if log_path else ""


def run(
    job: Job,
    how: str = "pool",
    timeout: float | None = None,
    while_running=contextlib.nullcontext,
    jobs_per_process: int | None = None,
    submitit: dict | None = None,
) -> dict:
    """Run the job (how: pool | subprocess | inline | submitit) and return its outcome."""
    if how not in MODES:
        raise ValueError(f"how={how!r}: choose one of {', '.join(MODES)}")
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / OUTCOME).unlink(missing_ok=True)
    deadline = time.monotonic() + timeout if timeout else None
    with while_running():
        if how == "inline":
            return _run_restoring(job)
        if how == "pool":
            return _wait_pool(job, deadline, timeout, jobs_per_process)
        if how == "submitit":
            return _wait_submitit(job, deadline, timeout, dict(submitit or {}))
        return _wait_subprocess(job, deadline, timeout)


def _remaining(deadline) -> float:
    return 1.0 if deadline is None else max(min(1.0, deadline - time.monotonic()), 0.0)


def _wait_pool(job: Job, deadline, timeout, jobs_per_process) -> dict:
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool

    executor = _pool(jobs_per_process)
    future = executor.submit(_pool_run, job)
    # The process that runs the job may not exist yet: after a job, the executor's thread first
    # returns the result, then replaces the process that reached max_tasks_per_child. Note every one.
    procs = {}
    try:
        while True:
            procs.update(executor._processes or {})
            try:
                return future.result(timeout=_remaining(deadline))
            except FutureTimeout:
                if deadline is not None and time.monotonic() >= deadline:
                    shutdown_pool(kill=True)
                    return outcome_of(job, "timeout", _crash_reason(None, job.log_file, True, timeout))
    except BrokenProcessPool:
        procs.update(executor._processes or {})
        code = _exit_code(list(procs.values()))
        shutdown_pool(kill=True)
        return outcome_of(job, "crash", _crash_reason(code, job.log_file, False, timeout), exit_code=code)
    except BaseException:  # Ctrl-C / SIGTERM of the caller: take the job down with it
        shutdown_pool(kill=True)
        raise


def _exit_code(procs, timeout: float = 5.0) -> int | None:
    """The first non-zero exit code of the dead pool's processes (what killed the trial).

    The executor's own thread reaps them too: when it wins the race, our join sees the process gone
    before that thread has stored its code, so wait for the code to show rather than read None."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(timeout=max(deadline - time.monotonic(), 0.0))
    while time.monotonic() < deadline and any(proc.exitcode is None for proc in procs):
        time.sleep(0.02)
    return next((proc.exitcode for proc in procs if proc.exitcode), None)


def _wait_subprocess(job: Job, deadline, timeout) -> dict:
    run_dir = Path(job.run_dir)
    (run_dir / JOB_FILE).write_text(job.to_json())
    with open(job.log_file, "ab") if job.log_file else contextlib.nullcontext() as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "optlab.launch", str(run_dir / JOB_FILE)],
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    code, timed_out = None, False
    try:
        while code is None:
            try:
                code = popen.wait(_remaining(deadline))
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    timed_out = True
                    _stop_group(popen.pid)
                    code = popen.wait()
    except BaseException:
        _stop_group(popen.pid)
        raise
    outcome = None if timed_out else read_outcome(run_dir)
    if outcome is not None:
        return outcome
    return outcome_of(
        job, "timeout" if timed_out else "crash", _crash_reason(code, job.log_file, timed_out, timeout), exit_code=code
    )


def _wait_submitit(job: Job, deadline, timeout, parameters: dict) -> dict:
    """One submitit job (one task, or `tasks_per_node` ranks that agree on the run dir), waited for."""
    import submitit

    executor = submitit.AutoExecutor(folder=Path(job.run_dir) / ".submitit", cluster=parameters.pop("cluster", None))
    executor.update_parameters(**parameters)
    submitted = executor.submit(run_here, job)
    try:
        while not submitted.done():
            if deadline is not None and time.monotonic() >= deadline:
                submitted.cancel(check=False)
                return outcome_of(job, "timeout", _crash_reason(None, None, True, timeout))
            time.sleep(0.5)
        return submitted.result()
    except Exception as e:  # noqa: BLE001 - it died outside run_here (killed, cancelled, node failure)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        reason = f"submitit job {submitted.job_id} failed: {first}{_where(submitted.paths.stderr)}"
        return read_outcome(job.run_dir) or outcome_of(job, "crash", reason)
    except BaseException:  # Ctrl-C / SIGTERM of the caller: take the job down with it
        submitted.cancel(check=False)
        raise

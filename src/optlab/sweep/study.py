"""The study: storage, sampler and pruner, heartbeats, and the trial cap shared by all workers.

Storage URLs: `sqlite:///path.db` (one machine), `postgresql://...` / `mysql://...` (many
machines), or `journal:path.log` (a journal file, e.g. on a shared filesystem; `journal:///abs`).

Heartbeats (every storage, the same way): while a trial runs, its worker writes the time into the
trial's system attribute `optlab:heartbeat` every `interval` s. A RUNNING trial whose heartbeat is
older than `grace` s belongs to a worker that died (SIGKILL, node lost): any worker, at its next
trial or at start-up, marks it FAIL with `lost_reason` and queues a retry with the same parameters
(up to `max_retry` times). Lost trials do not count towards `n_trials`; trials that failed on their
own (`fail_reason`: exception, OOM, crash) do, so a broken config cannot loop forever.

The cap (`reserve`): a worker makes its trial RUNNING, then counts the trials that use a slot
(COMPLETE, PRUNED, FAIL with a reason, RUNNING), its own included; over `n_trials`, it gives the
trial back (FAIL marked `released`, no parameters sampled) and looks again. Because each worker
writes before it counts, the last of any racing workers sees all the others: the total is exact
however many workers race for the last trial.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

from optlab.validate import ConfigError

log = logging.getLogger(__name__)
HEARTBEAT = "optlab:heartbeat"
FAIL_REASON, LOST_REASON, RETRY_OF = "fail_reason", "lost_reason", "retry_of"
RELEASED = "released"  # a reservation given back: the last slot went to another worker
RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")


# -- storage ----------------------------------------------------------------------------------


def check_storage_url(url: str) -> None:
    if not isinstance(url, str) or not url:
        raise ConfigError(
            f"storage={url!r} is invalid: use sqlite:///path.db, postgresql://user:pass@host/db, "
            "mysql://... or journal:path.log"
        )
    if url.startswith("journal:"):
        if not journal_path(url).name:
            raise ConfigError(f"storage={url} names no file: use journal:logs/sweeps/<study>.log")
        return
    scheme = re.match(r"^([a-z]+)(\+\w+)?://", url)
    if not scheme or scheme.group(1) not in RDB_SCHEMES:
        raise ConfigError(
            f"storage={url} is not a storage URL: use sqlite:///path.db, "
            "postgresql://user:pass@host/db, mysql://... or journal:path.log"
        )


def journal_path(url: str) -> Path:
    rest = url[len("journal:") :]
    return Path(rest[2:] if rest.startswith("//") else rest)


def sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def storage_exists(url: str) -> bool:
    """False when the storage is certainly empty (a missing sqlite/journal file); True otherwise."""
    path = journal_path(url) if url.startswith("journal:") else sqlite_path(url)
    return path is None or path.is_file()


_OPENED: dict[str, object] = {}


def check_reachable(url: str) -> None:
    """A database server URL: its driver is installed and the server answers, or one line saying
    which (the password left out). Without this, a wrong host reads as a page of SQLAlchemy."""
    import sqlalchemy

    shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    try:
        engine = sqlalchemy.create_engine(url)
    except ImportError as e:
        raise ConfigError(
            f"storage={shown} needs the database driver {e.name or e}, which is not installed; for "
            "PostgreSQL: pip install -e '.[cluster]'"
        ) from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as e:
        reason = " ".join(str(getattr(e, "orig", None) or e).split())[:300]
        raise ConfigError(
            f"storage={shown} cannot be reached ({reason}); check host, port, user, password and "
            "database, and that the server is running"
        ) from None
    finally:
        engine.dispose()


def make_storage(url: str, existing: bool = False):
    """The storage behind a URL. existing=True: a trial process opening its study's storage again
    (skips table creation and version checks, reuses one connection pool per process)."""
    import optuna

    if existing and url in _OPENED:
        return _OPENED[url]

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = journal_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(path)))
        if existing:
            _OPENED[url] = storage
        return storage
    engine_kwargs = {}
    if not url.startswith("sqlite:") and not existing:
        check_reachable(url)
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 120}}  # workers queue for sqlite's one writer lock
    for attempt in range(10):  # workers started together race to create the tables: the loser retries
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, skip_compatibility_check=existing, skip_table_creation=existing
            )
            break
        except Exception as e:  # sqlalchemy IntegrityError / OperationalError ("already exists")
            if attempt == 9 or type(e).__module__.split(".")[0] != "sqlalchemy":
                raise
            time.sleep(0.2 + 0.3 * attempt)
    if existing:
        _OPENED[url] = storage
    return storage


# -- sampler, pruner ----------------------------------------------------------------------------


def _call(node, what: str, **extra):
    """Instantiate a `_target_` node; `extra` arguments are passed only where the target takes them."""
    import inspect

    from hydra.utils import get_object
    from omegaconf import OmegaConf

    spec = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})
    target = spec.pop("_target_", None)
    if not target:
        raise ConfigError(f"{what} needs a _target_ (pick one with `{what.replace('.', '/')}=<name>`)")
    spec.pop("_partial_", None)
    fn = get_object(target)
    params = inspect.signature(fn).parameters
    spec.update({k: v for k, v in extra.items() if k in params})
    try:
        return fn(**spec)
    except (TypeError, ValueError, ImportError, ModuleNotFoundError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise ConfigError(f"{what} ({target}): {' '.join(lines[:2])}") from None


def make_sampler(node, space):
    import inspect

    from hydra.utils import get_object

    extra = {}
    target = node.get("_target_") if node else None
    if target and "search_space" in inspect.signature(get_object(target)).parameters:
        extra["search_space"] = space.grid()
    return _call(node, "sweep.sampler", **extra)


def make_pruner(node):
    return _call(node, "sweep.pruner")


# -- heartbeats ----------------------------------------------------------------------------------


class Heartbeat:
    """Writes the time into the trial every `interval` s while the trial runs (a daemon thread)."""

    def __init__(self, storage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"optlab-heartbeat-{trial_id}", daemon=True)

    def beat(self) -> bool:
        try:
            self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT, time.time())
            return True
        except Exception as e:  # the trial was finished (e.g. declared lost) or the storage hiccuped
            log.debug("heartbeat for trial id %s: %s", self.trial_id, e)
            return "finished" not in str(e).lower()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.beat():
                return

    def __enter__(self):
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def fail_lost_trials(study, grace: float, max_retry: int) -> list[int]:
    """FAIL every RUNNING trial with no heartbeat for `grace` s; queue its retry. Returns their numbers."""
    import optuna
    from optuna.trial import TrialState

    storage, now, lost = study._storage, time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.system_attrs.get(HEARTBEAT)
        beat = float(beat) if beat is not None else (t.datetime_start.timestamp() if t.datetime_start else now)
        if now - beat <= grace:
            continue
        try:
            storage.set_trial_user_attr(
                t._trial_id,
                LOST_REASON,
                f"no heartbeat for {now - beat:.0f} s: its worker {t.user_attrs.get('worker', '?')} was killed or lost",
            )
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        lost.append(t.number)
        root = t.user_attrs.get(RETRY_OF, t.number)
        retries = t.user_attrs.get("retries", 0) + 1
        already = any(
            o.user_attrs.get(RETRY_OF) == root and o.user_attrs.get("retries") == retries
            for o in study.get_trials(deepcopy=False)
        )
        if retries <= max_retry and not already:
            study.enqueue_trial(t.params, user_attrs={RETRY_OF: root, "retries": retries})
            log.warning(
                "trial %d was lost (%s); queued a retry with the same parameters",
                t.number,
                storage.get_trial(t._trial_id).user_attrs.get(LOST_REASON),
            )
        else:
            log.warning("trial %d was lost; not retried (max_retry=%d)", t.number, max_retry)
    return lost


# -- the cap --------------------------------------------------------------------------------------


def counts(t) -> bool:
    """Does this trial use one of the n_trials? (lost trials and queued ones do not)"""
    from optuna.trial import TrialState

    if t.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return t.state == TrialState.FAIL and FAIL_REASON in t.user_attrs


def state_name(t) -> str:
    """The trial's state for reports: Optuna's, except LOST for a FAIL that does not count (its
    worker died; the sweep re-queued it)."""
    if t.state.name == "FAIL" and not counts(t):
        return "RELEASED" if RELEASED in t.user_attrs else "LOST"
    return t.state.name


def n_counted(study) -> int:
    return sum(counts(t) for t in study.get_trials(deepcopy=False))


def reserve(study, n_trials: int, backoff: float = 0.5):
    """A new RUNNING trial if the study has a slot left, else None (exact across workers).

    A worker first makes its trial RUNNING (a new one, or a queued retry), then counts every
    trial that uses a slot, its own included, and keeps it only if that count is within n_trials;
    otherwise it gives the trial back (`release`) and looks again. Any storage that shows a write
    to every read that starts after it (sqlite, PostgreSQL, a journal file) makes this exact: of
    the workers that keep a trial, the last to write saw every other's trial, so at most n_trials
    are kept. (Ranking by start time instead let two racing workers each miss the other's trial:
    62 of 60 with 16 workers.) A worker that gave its trial back waits a random moment, so
    contenders do not keep colliding."""
    import random

    while n_counted(study) < n_trials:
        trial = study.ask()
        if n_counted(study) <= n_trials:
            return trial
        release(study, trial._trial_id)
        time.sleep(random.uniform(0, backoff))
    return None


def release(study, trial_id: int) -> None:
    """Give a reserved, never started trial back: FAIL marked RELEASED (it uses no slot). Not back
    to WAITING: sqlite cannot make taking a queued trial exclusive, two workers could both get it.
    A queued retry that is given back is queued again."""
    from optuna.trial import TrialState

    storage = study._storage
    frozen = storage.get_trial(trial_id)
    storage.set_trial_user_attr(trial_id, RELEASED, True)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)
    if RETRY_OF in frozen.user_attrs:
        study.enqueue_trial(frozen.system_attrs.get("fixed_params", frozen.params), user_attrs=frozen.user_attrs)


def running(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

"""Execution policy shared by the flows: which errors are worth a retry, bounded fan-out, and the
rows the Prefect UI's artifacts show. Duck-typed, so the library does not import Prefect: the
flows pass these to Prefect (`retry_condition_fn=retry_transient`, `prefect.artifacts`)."""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

# Errors a second try can cure: a busy file system or network share, a lost connection, a full GPU
# that another job may release. A bad card, a missing file or a wrong parameter fails the same way
# again, so those fail at once instead of costing the retries' delay.
_PERMANENT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


class _ThreadTimeoutNotice(logging.Filter):
    """Drops Prefect's per-task notice that a timeout cannot interrupt a task in a worker thread.

    Our tasks run in threads (bounded fan-out), so Prefect says it once per task run: hundreds of
    identical warnings per benchmark that bury the real ones. What it says holds and is documented
    once instead (README, Operations): a timeout in a thread takes effect when the blocking call
    returns."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeouts in worker threads cannot interrupt" not in str(record.msg)


# installed where the flows get their retry policy: every flow with a task timeout imports this module
logging.getLogger("prefect.task_runs").addFilter(_ThreadTimeoutNotice())


def is_transient(exc: BaseException | None) -> bool:
    """Whether `exc` may not happen again on a retry."""
    if exc is None:
        return False
    if isinstance(exc, (TimeoutError, ConnectionError, MemoryError)):
        return True
    if isinstance(exc, OSError):
        return not isinstance(exc, _PERMANENT_OS_ERRORS)
    return "out of memory" in str(exc).lower()  # torch.cuda.OutOfMemoryError and friends (RuntimeError)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """`retry_condition_fn` for tasks: retry only transient errors (see `is_transient`)."""
    exc = state.data if isinstance(getattr(state, "data", None), BaseException) else None
    if exc is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as e:  # the state's own exception: inspected, not handled
            exc = e
    return is_transient(exc)


def bounded_submit(submit: Callable[..., Any], calls: Iterable[tuple], limit: int) -> list:
    """`submit(*args)` for each of `calls`, at most `limit` running at once (a grid of hundreds of
    cells must not start hundreds of threads, whatever the task runner's own size)."""
    futures, running = [], deque()
    for args in calls:
        while len(running) >= max(1, limit):
            running.popleft().wait()
        f = submit(*args)
        futures.append(f)
        running.append(f)
    return futures


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) from free text."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-")[:100]


def markdown_table(rows: list[dict]) -> str:
    """Rows as a markdown table (list values joined)."""
    if not rows:
        return "_(none)_"
    cols = list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v))
        if isinstance(v, float):
            v = f"{v:.4f}"
        return str("" if v is None else v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)

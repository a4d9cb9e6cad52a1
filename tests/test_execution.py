"""The flows' execution policy: Prefect's per-task thread-timeout notice is dropped, nothing else."""

from __future__ import annotations

import logging

import mll.ops.execution  # noqa: F401  (installs the filter)


def test_only_the_thread_timeout_notice_is_dropped(caplog):
    log = logging.getLogger("prefect.task_runs")
    with caplog.at_level(logging.WARNING, logger="prefect.task_runs"):
        log.warning(
            "Timeout of %s seconds configured for this task, but the task is running in a worker thread. "
            "Timeouts in worker threads cannot interrupt blocking operations like `time.sleep()`",
            3600,
        )
        log.warning("a real warning stays")
    assert [r.getMessage() for r in caplog.records] == ["a real warning stays"]

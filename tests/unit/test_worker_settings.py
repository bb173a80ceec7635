"""Which worker of `parley serve --workers N` runs the background jobs."""

from __future__ import annotations

from pathlib import Path

from parley.config import Settings
from parley.server import worker_settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, secret="s" * 48, broker_url="redis://127.0.0.1:6379/0")


def test_the_first_worker_runs_the_background_jobs(tmp_path: Path) -> None:
    base = _settings(tmp_path)
    first = worker_settings(base, 0)
    assert first.analysis_worker
    assert first.integrations_workers
    assert first.retention_interval == base.retention_interval > 0
    assert first.attachment_gc_interval == base.attachment_gc_interval > 0


def test_the_other_workers_only_serve(tmp_path: Path) -> None:
    base = _settings(tmp_path)
    for index in (1, 2, 7):
        other = worker_settings(base, index)
        assert not other.analysis_worker
        assert not other.integrations_workers
        assert other.retention_interval == 0
        assert other.attachment_gc_interval == 0
        # Everything else is the supervisor's: same secret, database, broker and port.
        assert other.signing_key == base.signing_key
        assert other.effective_database_url == base.effective_database_url
        assert other.broker_url == base.broker_url
    assert base.analysis_worker  # the supervisor's own settings are left alone

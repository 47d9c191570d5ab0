from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import NodeProcess


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One real node process (uvicorn, real model, FAISS, SQLite) shared by the API tests."""
    proc = NodeProcess(
        tmp_path_factory.mktemp("node") / "data", env={"KNOWHUB_BODY_TIMEOUT": "2"}
    ).start()
    yield proc
    proc.stop()
    assert "index flushed" in proc.log(), proc.log()

"""kill -9 during a batch ingest loses no acknowledged fact and duplicates nothing."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import faiss
import httpx
import numpy as np

from tests.conftest import SHARED
from tests.helpers import NodeProcess


def scifact_texts(n: int) -> list[str]:
    texts = []
    with (SHARED / "datasets" / "scifact" / "corpus.jsonl").open() as fh:
        for line in fh:
            doc = json.loads(line)
            texts.append(f"{doc['title']} {doc['text']}"[:1500])
            if len(texts) == n:
                break
    return texts


def ids_in_files(data_dir: Path) -> tuple[list[int], list[int], int]:
    db = sqlite3.connect(data_dir / "catalog.sqlite3")
    try:
        catalog = [r[0] for r in db.execute("SELECT id FROM facts ORDER BY id")]
        distinct_cids = db.execute("SELECT count(DISTINCT cid) FROM facts").fetchone()[0]
    finally:
        db.close()
    index: Any = faiss.read_index(str(data_dir / "vectors.faiss"))
    return catalog, sorted(faiss.vector_to_array(index.id_map).tolist()), distinct_cids


def test_sigkill_during_batch_ingest(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # save the index every 0.3 s so that the kill can also land during a save
    node = NodeProcess(data_dir, env={"KNOWHUB_INDEX_FLUSH_INTERVAL": "0.3"}).start()
    texts = scifact_texts(400)
    acked: dict[str, str] = {}
    busy = threading.Event()
    stop = threading.Event()

    def ingest() -> None:
        with httpx.Client(base_url=node.url, timeout=120) as client:
            for start in range(0, len(texts), 16):
                if stop.is_set():
                    return
                batch = [
                    {"text": t, "metadata": {"n": start + i}}
                    for i, t in enumerate(texts[start : start + 16])
                ]
                busy.set()
                try:
                    response = client.post("/v1/facts/batch", json={"facts": batch})
                except httpx.HTTPError:
                    return  # the node died mid-request: this batch was never acknowledged
                busy.clear()
                for item, sent in zip(response.json()["results"], batch, strict=True):
                    acked[item["cid"]] = str(sent["text"])

    worker = threading.Thread(target=ingest)
    worker.start()
    deadline = time.monotonic() + 300
    while len(acked) < 64 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(acked) >= 64, node.log()
    time.sleep(0.37)  # land somewhere inside the next batch (a batch takes ~0.5-1 s here)
    killed_mid_request = busy.is_set()
    node.kill()
    stop.set()
    worker.join(timeout=60)
    killed_with = len(acked)
    assert killed_mid_request, "the kill should land while a batch is being ingested"

    restarted = NodeProcess(data_dir).start()
    try:
        with httpx.Client(base_url=restarted.url, timeout=60) as client:
            status = client.get("/v1/status").json()
            assert status["facts"] >= killed_with
            assert status["index"]["size"] == status["facts"]
            for cid, text in acked.items():
                assert client.get(f"/v1/facts/{cid}").status_code == 200
                hits = client.post("/v1/query", json={"query": text, "mode": "dense", "k": 1})
                assert hits.json()["results"][0]["cid"] == cid
            # re-sending what was acknowledged creates nothing new
            again = client.post(
                "/v1/facts/batch",
                json={
                    "facts": [{"text": t, "metadata": {"n": i}} for i, t in enumerate(texts[:16])]
                },
            ).json()
            assert again["created"] == 0
    finally:
        restarted.stop()
    assert "index flushed" in restarted.log()
    catalog_ids, index_ids, distinct_cids = ids_in_files(data_dir)
    assert catalog_ids == index_ids
    assert len(catalog_ids) == distinct_cids >= killed_with
    assert len(np.unique(index_ids)) == len(index_ids)

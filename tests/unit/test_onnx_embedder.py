"""The ONNX Runtime embedder gives the torch embedder's vectors: fp32 to float rounding, int8
within cosine 0.99, text by text, in order. Exports the bundled model into a temporary
directory once per session (about 15 s), so it does not rely on setup having run."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from index.embedder import MODEL_NAME, SentenceTransformerEmbedder
from index.onnx_embedder import INT8_FILE, OnnxEmbedder
from index.onnx_export import STAMP_FILE, export_model, is_current, read_stamp
from node.errors import StorageError
from node.ports import Vectors

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

CLAIMS = [
    "0-dimensional biomaterials show inductive properties.",
    "ALDH1 expression is associated with poorer prognosis for breast cancer primary tumors.",
    "Aspirin inhibits the production of PGE2.",
    "Vitamin D deficiency is unrelated to risk of hip fracture.",
    "Statins increase the risk of type 2 diabetes in older women.",
    "CD44 is a marker of cancer stem cells in pancreatic adenocarcinoma.",
    "Taking anti-depressants is associated with a decrease in the risk of stroke.",
    "The PRR MDA5 is a sensor of RNA virus infection.",
    "Omnivores produce less trimethylamine N-oxide from dietary choline than vegans.",
    "Birth-weight is positively associated with breast cancer.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The capital of France is Paris.",
    "knowhub stores facts as content-addressed IPFS blocks anchored on an EVM chain.",
    "Python 3.11 adds exception groups and except*.",
    "What is the half-life of caffeine in adults?",
    "mRNA vaccines encode the spike protein of SARS-CoV-2.",
    "Smoking cessation reduces cardiovascular mortality within five years.",
    "HbA1c < 6.5% (48 mmol/mol) — is that diabetic?",
    "The Higgs boson was observed at the LHC in 2012 with a mass near 125 GeV.",
    "Rust's borrow checker prevents data races at compile time.",
]

UNICODE = [
    "Größe, naïve café, déjà vu, façade — Zürich über alles",
    "東京は日本の首都です。",
    "Ελληνικά: η ταχύτητα του φωτός είναι σταθερή.",
    "Русский текст о белках и ферментах.",
    "العربية: الماء يغلي عند مئة درجة",
    "emoji 🧬🔬🧪 and math ∑ x² ≤ ∞, α-synuclein, β-amyloid",
    "zero\u200bwidth and non\u00a0breaking spaces",
    "控制 tab\there and newline\nthere",
]

ODD = ["a", "the " * 400, "   padded with spaces   "]
#: No word in them: the vector is [CLS], [SEP] and punctuation or one repeated piece, whose
#: outlier activations int8's per-tensor activation scale serves worst (cosine 0.975-0.985).
DEGENERATE = ["", " ", "?", "...", "x" * 600]

_TOPICS = [
    "insulin resistance",
    "tumour suppressor genes",
    "gut microbiota",
    "T-cell exhaustion",
    "atrial fibrillation",
    "neural stem cells",
    "antibiotic resistance",
    "sleep deprivation",
    "telomere length",
    "air pollution",
    "maternal nutrition",
    "CRISPR screening",
    "bone mineral density",
    "dopamine signalling",
]


def _abstract(topic: str, seed: int) -> str:
    """A long (> 256 tokens) abstract-like text, so truncation is exercised."""
    rng = random.Random(seed)
    parts = [f"Background: the role of {topic} in human disease remains unclear."]
    for i in range(14):
        n = rng.randint(40, 9000)
        p = rng.choice(["0.001", "0.02", "0.04", "0.3"])
        parts.append(
            f"In cohort {i + 1} ({n} participants, median follow-up {rng.randint(1, 20)} years) "
            f"higher {topic} was associated with an adjusted hazard ratio of "
            f"{rng.uniform(0.5, 2.5):.2f} (95% CI, P = {p}) after accounting for age, sex, "
            f"body-mass index and smoking."
        )
    parts.append(f"Conclusions: {topic} is a plausible target for prevention trials.")
    return " ".join(parts)


ABSTRACTS = [_abstract(topic, seed) for seed, topic in enumerate(_TOPICS)]
TEXTS = CLAIMS + UNICODE + ODD + DEGENERATE + ABSTRACTS
MIN_COSINE = {False: 0.9999, True: 0.99}
DEGENERATE_MIN_COSINE = {False: 0.9999, True: 0.97}
NATURAL = np.array([t not in DEGENERATE for t in TEXTS])


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx-export") / "onnx"
    export_model(out)
    return out


@pytest.fixture(scope="module")
def reference() -> Vectors:
    return SentenceTransformerEmbedder(batch_size=64).embed(TEXTS)


def _cosines(a: Vectors, b: Vectors) -> Vectors:
    cos: Vectors = (a * b).sum(axis=1)
    return cos


def test_texts_cover_truncation(onnx_dir: Path) -> None:
    embedder = OnnxEmbedder(onnx_dir, threads=1)
    assert len(TEXTS) >= 50
    assert embedder.max_seq_length == 256
    tokenizer = embedder._tokenizer
    lengths = [len(e.ids) for e in tokenizer.encode_batch(ABSTRACTS)]
    assert min(lengths) == 256  # every abstract is cut


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32", "int8"])
def test_congruent_with_torch(onnx_dir: Path, reference: Vectors, quantized: bool) -> None:
    embedder = OnnxEmbedder(onnx_dir, quantized=quantized, threads=2, batch_size=16)
    assert embedder.model_name == MODEL_NAME
    assert embedder.dimension == 384
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == reference.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    assert vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Row by row against the torch vector of the same text: order preserved too.
    cos = _cosines(vectors, reference)
    worst = int(np.where(NATURAL, cos, 2.0).argmin())
    assert cos[NATURAL].min() >= MIN_COSINE[quantized], (float(cos[worst]), TEXTS[worst][:80])
    assert cos[~NATURAL].min() >= DEGENERATE_MIN_COSINE[quantized], cos[~NATURAL]


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32", "int8"])
def test_order_and_batching_do_not_change_vectors(onnx_dir: Path, quantized: bool) -> None:
    embedder = OnnxEmbedder(onnx_dir, quantized=quantized, threads=1, batch_size=7)
    whole = embedder.embed(TEXTS)
    perm = np.random.default_rng(7).permutation(len(TEXTS))
    shuffled = embedder.embed([TEXTS[i] for i in perm])
    one_by_one = np.vstack([embedder.embed([t]) for t in TEXTS[::5]])
    # int8 too: it runs one text per pass, so a text's vector does not depend on its batch
    # partners (their activations would share its dynamic quantization scale)
    np.testing.assert_allclose(shuffled, whole[perm], atol=1e-5)
    np.testing.assert_allclose(one_by_one, whole[::5], atol=1e-5)


def test_empty_input(onnx_dir: Path) -> None:
    for quantized in (False, True):
        out = OnnxEmbedder(onnx_dir, quantized=quantized, threads=1).embed([])
        assert out.shape == (0, 384)
        assert out.dtype == np.float32


def test_export_is_idempotent(onnx_dir: Path) -> None:
    stamp = onnx_dir / STAMP_FILE
    before = stamp.stat().st_mtime_ns
    assert is_current(onnx_dir)
    export_model(onnx_dir)
    assert stamp.stat().st_mtime_ns == before
    recorded = read_stamp(onnx_dir)
    assert recorded is not None
    assert recorded["fp32_min_cosine"] >= 0.9999
    assert recorded["int8_min_cosine"] >= 0.99
    assert not [p for p in onnx_dir.parent.glob(".onnx.*") if p.suffix != ".lock"]


def test_a_current_export_is_checked_without_writing(
    onnx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node in the Docker image runs as a user who cannot write where the build exported:
    an up-to-date export must not even take the (file) lock."""
    import index.onnx_export as onnx_export

    def no_lock(out_dir: Path) -> None:
        raise PermissionError(f"read-only: {out_dir.parent}")

    monkeypatch.setattr(onnx_export, "_exclusive", no_lock)
    export_model(onnx_dir)  # returns: nothing to write


def test_stale_stamp_is_not_current(onnx_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / STAMP_FILE).write_text(
        (onnx_dir / STAMP_FILE).read_text().replace('"source_sha256": "', '"source_sha256": "0')
    )
    for name in ("model.onnx", INT8_FILE, "tokenizer.json"):
        (copy / name).symlink_to(onnx_dir / name)
    assert not is_current(copy)


def test_export_refuses_to_replace_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StorageError, match="refusing to replace"):
        export_model(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_export_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"python -m index\.onnx_export"):
        OnnxEmbedder(tmp_path / "nowhere", quantized=True, threads=1)


def test_query_path_does_not_import_torch(onnx_dir: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from index.onnx_embedder import OnnxEmbedder\n"
        f"e = OnnxEmbedder(Path({str(onnx_dir)!r}), quantized=True, threads=1)\n"
        "assert e.embed(['hello']).shape == (1, 384)\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)

"""Reputation (node/reputation.py): the vectors in docs/vectors/reputation.json, an independent
dense solution of the EigenTrust fixed point, Sybil resistance and the graph's bookkeeping."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest

from node.reputation import (
    ALPHA,
    DISPUTE,
    ENDORSE,
    UNTRUSTED_WEIGHT,
    VERDICTS,
    AttestationGraph,
    Reputation,
    fact_weight,
    local_trust,
    trust_scores,
)
from node.signing import SigningKey
from tests.conftest import ROOT

VECTORS: dict[str, Any] = json.loads((ROOT / "docs" / "vectors" / "reputation.json").read_text())
CASES: list[dict[str, Any]] = VECTORS["cases"]

Row = tuple[str, str, str, str]


def _address(i: int) -> str:
    return f"0x{i:040x}"


def _graph(rows: Iterable[Sequence[str]]) -> AttestationGraph:
    graph = AttestationGraph()
    for attester, cid, contributor, verdict in rows:
        graph.set(attester, cid, contributor, verdict)
    return graph


def _dense_trust(
    rows: Iterable[Sequence[str]], roots: Iterable[str], alpha: float = ALPHA
) -> dict[str, float]:
    """The fixed point t = alpha p + (1 - alpha)(C^T t + dangling(t) p), solved directly on the
    full matrix, from the raw attestations (the last one per (attester, fact) counts)."""
    current: dict[tuple[str, str], tuple[str, str]] = {}
    for attester, cid, contributor, verdict in rows:
        current[(attester, cid)] = (contributor, verdict)
    root_set = set(roots)
    names = sorted(root_set | {a for a, _ in current} | {c for c, _ in current.values()})
    index = {name: i for i, name in enumerate(names)}
    n = len(names)
    e = np.zeros((n, n))
    d = np.zeros((n, n))
    for (attester, _), (contributor, verdict) in current.items():
        if attester != contributor:
            (e if verdict == ENDORSE else d)[index[attester], index[contributor]] += 1.0
    local = np.divide(e * e, e + d, out=np.zeros_like(e), where=e > 0)
    out = local.sum(axis=1)
    dangling = out == 0
    c = np.divide(local, out[:, None], out=np.zeros_like(local), where=~dangling[:, None])
    p = np.zeros(n)
    for root in root_set:
        p[index[root]] = 1.0 / len(root_set)
    m = c.T + np.outer(p, dangling.astype(float))
    t = np.linalg.solve(np.eye(n) - (1.0 - alpha) * m, alpha * p)
    return {name: float(t[i]) for i, name in enumerate(names)}


def _assert_matches_dense(trust: dict[str, float], dense: dict[str, float]) -> None:
    assert set(trust) <= set(dense)
    for name, value in dense.items():
        if name in trust:
            assert trust[name] == pytest.approx(value, abs=1e-8)
            assert trust[name] > 0.0
        else:
            assert abs(value) < 1e-12, name


def _random_rows(
    rng: random.Random, addresses: int, attestations: int, facts_per_address: int = 3
) -> list[Row]:
    rows: list[Row] = []
    for _ in range(attestations):
        attester = _address(rng.randrange(addresses))
        author = rng.randrange(addresses)
        cid = f"fact-{author}-{rng.randrange(facts_per_address)}"
        verdict = ENDORSE if rng.random() < 0.75 else DISPUTE
        rows.append((attester, cid, _address(author), verdict))
    return rows


# -- the vectors -------------------------------------------------------------------------


def test_committed_vectors_are_current() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/make_reputation_vectors.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_vectors_cover_the_required_cases() -> None:
    names = {case["name"] for case in CASES}
    assert {"chain", "dispute", "sybil_clique", "two_roots", "replaced"} <= names
    for key in VECTORS["keys"].values():
        assert SigningKey(bytes.fromhex(key["private_key"][2:])).address == key["address"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vectors_match_the_code(case: dict[str, Any]) -> None:
    params = VECTORS["parameters"]
    graph = _graph(case["attestations"])
    reputation = Reputation.compute(
        graph,
        case["roots"],
        alpha=params["alpha"],
        tolerance=params["tolerance"],
        max_iterations=params["max_iterations"],
    )
    assert set(reputation.trust) == set(case["trust"])
    for name, value in case["trust"].items():
        assert reputation.trust[name] == pytest.approx(value, abs=1e-11)
    assert reputation.reference == pytest.approx(case["reference"], abs=1e-11)
    for name, value in case["reputation"].items():
        assert reputation.of(name) == pytest.approx(value, abs=1e-11)
    for expected in case["fact_weights"]:
        endorsers, disputers = graph.fact_attesters(expected["fact"])
        assert list(endorsers) == expected["endorsers"]
        assert list(disputers) == expected["disputers"]
        weight = fact_weight(reputation, expected["contributor"], endorsers, disputers)
        assert weight == pytest.approx(expected["weight"], abs=1e-11)
    # the defaults stop earlier, within 1e-9 of the vectors
    default = Reputation.compute(graph, case["roots"])
    assert set(default.trust) == set(case["trust"])
    for name, value in case["trust"].items():
        assert default.trust[name] == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vectors_match_a_dense_solution(case: dict[str, Any]) -> None:
    dense = _dense_trust(case["attestations"], case["roots"])
    _assert_matches_dense(case["trust"], dense)
    _assert_matches_dense(trust_scores(_graph(case["attestations"]), case["roots"]), dense)


def test_sybil_vector_gives_the_clique_nothing() -> None:
    case = next(c for c in CASES if c["name"] == "sybil_clique")
    sybils = {VECTORS["keys"][f"sybil{i}"]["address"] for i in range(1, 6)}
    assert not sybils & set(case["trust"])
    assert all(case["reputation"][s] == 0.0 for s in sybils)
    weights = [w["weight"] for w in case["fact_weights"] if w["contributor"] in sybils]
    assert weights == [UNTRUSTED_WEIGHT] * 5


# -- the algorithm -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_match_a_dense_solution(seed: int) -> None:
    rng = random.Random(seed)
    rows = _random_rows(rng, 40, 160)
    rows += [(c, cid, c, ENDORSE) for _, cid, c, _ in rows[:10]]  # self-attestations
    roots = [_address(i) for i in rng.sample(range(40), 1 + seed % 3)] + [_address(999)]
    dense = _dense_trust(rows, roots)
    trust = trust_scores(_graph(rows), roots)
    _assert_matches_dense(trust, dense)
    assert sum(trust.values()) == pytest.approx(1.0, abs=1e-9)
    assert _address(999) in trust  # a root without edges keeps its teleport mass


def _clique(size: int) -> tuple[list[str], list[Row]]:
    keys = [SigningKey.generate().address for _ in range(size)]
    rows = [
        (attester, f"fact-of-{author}", author, ENDORSE)
        for attester in keys
        for author in keys
        if attester != author
    ]
    return keys, rows


def _honest() -> tuple[str, list[Row]]:
    root, alice, bob = _address(1), _address(2), _address(3)
    return root, [
        (root, "a1", alice, ENDORSE),
        (root, "b1", bob, ENDORSE),
        (alice, "b2", bob, ENDORSE),
        (bob, "a2", alice, DISPUTE),
    ]


def test_a_clique_no_root_reaches_gets_exactly_nothing() -> None:
    root, honest = _honest()
    clique, rows = _clique(50)
    # the clique endorses the honest keys too: that buys it nothing
    rows += [(k, "a1", _address(2), ENDORSE) for k in clique]
    graph = _graph(honest + rows)
    reputation = Reputation.compute(graph, [root])
    assert not set(clique) & set(reputation.trust)
    for key in clique:
        assert reputation.trust.get(key, 0.0) == 0.0
        assert reputation.of(key) == 0.0
        endorsers, disputers = graph.fact_attesters(f"fact-of-{key}")
        assert len(endorsers) == 49
        assert fact_weight(reputation, key, endorsers, disputers) == UNTRUSTED_WEIGHT
    # and the honest scores are exactly what they are without the clique
    assert reputation.trust == trust_scores(_graph(honest), [root])


def test_a_clique_one_reached_key_endorses_gets_in() -> None:
    root, honest = _honest()
    clique, rows = _clique(50)
    bridge = (_address(2), f"fact-of-{clique[0]}", clique[0], ENDORSE)  # alice, reached
    rows = [*honest, *rows, bridge]
    trust = trust_scores(_graph(rows), [root])
    assert all(trust.get(key, 0.0) > 0.0 for key in clique)
    _assert_matches_dense(trust, _dense_trust(rows, [root]))


def test_disputes_lower_trust() -> None:
    root, alice, bob = _address(1), _address(2), _address(3)
    rows: list[Row] = [
        (root, "a1", alice, ENDORSE),
        (root, "a2", alice, ENDORSE),
        (root, "b1", bob, ENDORSE),
        (root, "b2", bob, ENDORSE),
    ]
    before = trust_scores(_graph(rows), [root])
    assert before[alice] == pytest.approx(before[bob], abs=1e-12)
    after = trust_scores(_graph([*rows, (root, "b3", bob, DISPUTE)]), [root])
    assert after[bob] < before[bob]
    assert after[bob] < after[alice]
    # disputes outweighing endorsements scale the edge down (e * e / (e + d)), not away...
    more = [(root, "b3", bob, DISPUTE), (root, "b4", bob, DISPUTE), (root, "b5", bob, DISPUTE)]
    scaled = trust_scores(_graph([*rows, *more]), [root])
    assert 0.0 < scaled[bob] < after[bob]
    assert local_trust(2, 3) == pytest.approx(0.8) and local_trust(0, 5) == 0.0
    # ...and disputes without any endorsement make no edge at all
    only = trust_scores(_graph([rows[0], (root, "c1", _address(4), DISPUTE)]), [root])
    assert _address(4) not in only


def test_a_dispute_by_a_reputed_key_halves_a_facts_weight() -> None:
    root, alice = _address(1), _address(2)
    mallory = _address(3)
    graph = _graph([(root, "a1", alice, ENDORSE), (root, "a2", alice, DISPUTE)])
    reputation = Reputation.compute(graph, [root])
    assert reputation.of(root) == 1.0
    assert reputation.of(alice) == 1.0  # the root's only edge: relative trust is all there is
    assert reputation.of(mallory) == 0.0
    assert fact_weight(reputation, root, [], [mallory]) == 1.0  # an unreached key weighs nothing
    assert fact_weight(reputation, root, [], [alice]) == pytest.approx(0.525)
    assert fact_weight(reputation, root, [], [root]) == 1.0  # nor does the author's own
    rep = Reputation({root: 0.5, alice: 0.5}, frozenset({root}), 0.25)
    assert fact_weight(rep, alice, [], [root]) == pytest.approx(
        UNTRUSTED_WEIGHT + (1 - UNTRUSTED_WEIGHT) / 2
    )
    assert fact_weight(rep, alice, [root], [root]) == pytest.approx(
        UNTRUSTED_WEIGHT + (1 - UNTRUSTED_WEIGHT) * 2 / 3
    )
    assert fact_weight(rep, None, [root], []) == UNTRUSTED_WEIGHT
    assert fact_weight(rep, alice, [root, root], []) == 1.0
    assert fact_weight(rep, _address(9), [], [], floor=0.2) == 0.2


def test_self_endorsement_gives_nothing() -> None:
    root, alice = _address(1), _address(2)
    rows = [(alice, f"a{i}", alice, ENDORSE) for i in range(10)]
    graph = _graph(rows)
    assert len(graph) == 10
    assert graph.received(alice) == (0, 0)
    assert graph.given(alice) == (10, 0)
    assert list(graph.edges()) == []
    assert graph.fact_attesters("a0") == ((alice,), ())
    assert trust_scores(graph, [root]) == {root: 1.0}
    assert trust_scores(graph, [alice]) == {alice: 1.0}
    reputation = Reputation.compute(graph, [root])
    assert fact_weight(reputation, alice, [alice], []) == UNTRUSTED_WEIGHT


def test_insertion_order_does_not_matter() -> None:
    rng = random.Random(7)
    rows = list({(a, cid): (a, cid, c, v) for a, cid, c, v in _random_rows(rng, 60, 400)}.values())
    roots = [_address(0), _address(1)]
    expected = trust_scores(_graph(rows), roots)
    for _ in range(3):
        rng.shuffle(rows)
        assert trust_scores(_graph(rows), roots) == expected  # bit for bit


def test_replaced_attestation_counts_once() -> None:
    root, alice = _address(1), _address(2)
    graph = AttestationGraph()
    assert graph.set(root, "a1", alice, ENDORSE)
    assert not graph.set(root, "a1", alice, ENDORSE)
    assert graph.set(root, "a1", alice, DISPUTE)
    assert len(graph) == 1
    assert graph.verdict(root, "a1") == DISPUTE
    assert graph.received(alice) == (0, 1)
    assert graph.given(root) == (0, 1)
    assert graph.net(root, alice) == -1
    assert graph.fact_attesters("a1") == ((), (root,))
    assert alice not in trust_scores(graph, [root])


def test_graph_bookkeeping() -> None:
    a, b, c = _address(1), _address(2), _address(3)
    graph = AttestationGraph()
    version = graph.version
    graph.set(b, "f", a, ENDORSE)
    graph.set(c, "f", a, DISPUTE)
    graph.set(a, "f", a, ENDORSE)
    graph.set(c, "g", a, ENDORSE)
    assert graph.version == version + 4
    assert len(graph) == 4
    assert graph.fact_attesters("f") == ((a, b), (c,))
    assert graph.fact_attesters("missing") == ((), ())
    assert graph.contributor("f") == a
    assert graph.received(a) == (2, 1)
    assert graph.given(c) == (1, 1)
    assert graph.net(c, a) == 0
    assert sorted(graph.edges()) == [(b, a, 1, 0), (c, a, 1, 1)]
    assert graph.verdict(b, "g") is None
    assert graph.remove(c, "g")
    assert not graph.remove(c, "g")
    assert graph.net(c, a) == -1
    assert len(graph) == 3
    assert graph.remove(a, "f") and graph.remove(b, "f") and graph.remove(c, "f")
    assert len(graph) == 0
    assert list(graph.edges()) == []
    assert graph.received(a) == (0, 0)
    assert graph.contributor("f") is None
    # a fact without a contributor is recorded and makes no edge
    assert graph.set(a, "anonymous", None, ENDORSE)
    assert list(graph.edges()) == []
    assert graph.given(a) == (1, 0)


def test_unknown_verdict_and_contradicting_contributor_are_refused() -> None:
    graph = AttestationGraph()
    with pytest.raises(ValueError, match="verdict"):
        graph.set(_address(1), "f", _address(2), "like")
    graph.set(_address(1), "f", _address(2), ENDORSE)
    with pytest.raises(ValueError, match="is by"):
        graph.set(_address(3), "f", _address(4), ENDORSE)
    assert len(graph) == 1
    assert VERDICTS == (ENDORSE, DISPUTE)


def test_no_roots_no_trust() -> None:
    root, rows = _honest()
    graph = _graph(rows)
    stats: dict[str, float] = {}
    assert trust_scores(graph, [], stats=stats) == {}
    assert stats["iterations"] == 0
    reputation = Reputation.compute(graph, [])
    assert reputation.reference == 0.0
    assert reputation.of(root) == 0.0
    assert fact_weight(reputation, root, [root], []) == UNTRUSTED_WEIGHT


def test_empty_reputation_trusts_the_roots() -> None:
    roots = [_address(1), _address(2)]
    empty = Reputation.empty(roots)
    assert empty.trust == {roots[0]: 0.5, roots[1]: 0.5}
    assert empty.roots == frozenset(roots)
    assert empty.of(roots[0]) == 1.0
    assert empty.of(_address(3)) == 0.0
    assert empty.of(None) == 0.0
    assert Reputation.empty([]).of(roots[0]) == 0.0


def test_reference_is_half_the_median_of_the_reached_non_roots() -> None:
    root = _address(0)
    rows: list[Row] = [(root, f"x{i}", _address(1), ENDORSE) for i in range(6)]
    rows += [(root, "y", _address(2), ENDORSE), (root, "z", _address(3), ENDORSE)]
    reputation = Reputation.compute(_graph(rows), [root])
    others = sorted(v for k, v in reputation.trust.items() if k != root)
    assert reputation.reference == pytest.approx(0.5 * others[1])
    assert reputation.of(_address(1)) == 1.0
    assert reputation.trust[_address(2)] == pytest.approx(2 * reputation.reference)
    assert reputation.of(_address(2)) == 1.0
    assert reputation.of(_address(4)) == 0.0


def test_warm_start_converges_to_the_same_scores_faster() -> None:
    rng = random.Random(11)
    rows = _random_rows(rng, 300, 3000)
    roots = [_address(0)]
    graph = _graph(rows)
    first = Reputation.compute(graph, roots)
    for attester, cid, contributor, verdict in _random_rows(rng, 300, 30):
        if graph.contributor(cid) in (None, contributor):
            graph.set(attester, cid, contributor, verdict)
    cold: dict[str, float] = {}
    warm: dict[str, float] = {}
    expected = Reputation.compute(graph, roots, stats=cold)
    again = Reputation.compute(graph, roots, start=first, stats=warm)
    assert 0 < warm["iterations"] < cold["iterations"]
    assert set(again.trust) == set(expected.trust)
    for name, value in expected.trust.items():
        assert again.trust[name] == pytest.approx(value, abs=1e-8)


def test_a_warm_start_cannot_smuggle_trust_to_unreached_keys() -> None:
    root, rows = _honest()
    clique, clique_rows = _clique(5)
    graph = _graph(rows + clique_rows)
    start = dict.fromkeys(clique, 1.0) | {"0xnobody": 5.0}
    trust = trust_scores(graph, [root], start=start)
    assert not set(clique) & set(trust)
    assert trust == pytest.approx(trust_scores(graph, [root]), abs=1e-9)
    # a start with nothing usable falls back to the roots
    assert trust_scores(graph, [root], start={"0xnobody": 1.0}) == trust_scores(graph, [root])


def test_max_iterations_bounds_the_work() -> None:
    root, rows = _honest()
    stats: dict[str, float] = {}
    trust = trust_scores(_graph(rows), [root], max_iterations=3, stats=stats)
    assert stats["iterations"] == 3
    assert sum(trust.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="alpha"):
        trust_scores(_graph(rows), [root], alpha=0.0)


def test_a_large_random_graph_computes_in_one_call() -> None:
    rng = np.random.default_rng(5)
    n, m = 20_000, 200_000
    names = [_address(i) for i in range(n)]
    attesters = rng.integers(0, n, m).tolist()
    authors = rng.integers(0, n, m).tolist()
    facts = rng.integers(0, 4, m).tolist()
    endorse = (rng.random(m) < 0.8).tolist()
    graph = AttestationGraph()
    for a, c, f, e in zip(attesters, authors, facts, endorse, strict=True):
        graph.set(names[a], f"{c}-{f}", names[c], ENDORSE if e else DISPUTE)
    roots = names[:5]
    reputation = Reputation.compute(graph, roots)
    assert len(reputation.trust) > n // 2
    assert sum(reputation.trust.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(v > 0.0 for v in reputation.trust.values())
    assert all(0.0 <= reputation.of(name) <= 1.0 for name in names[:100])

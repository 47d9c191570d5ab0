// Behaviour of the page's rendering module (api/static/ui.js), run by `node --test`
// from tests/integration/test_web.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  badge,
  buildFilter,
  escapeHtml,
  formatScore,
  relevanceLabel,
  parseMetadata,
  renderPeers,
  renderProvenance,
  renderResults,
  renderStatus,
  renderVerification,
  txLink,
} from "../../api/static/ui.js";

const hit = {
  cid: "bafyreiabc",
  text: "<img src=x onerror=alert(1)> & more",
  score: 0.5,
  metadata: { lang: "en", tags: ["a", "<b>"] },
  contributor: "0x1234567890abcdef1234567890abcdef12345678",
  provenance: { status: "anchored", block_number: 42 },
};

test("escapes everything a contributor wrote", () => {
  const html = renderResults({ results: [hit] });
  assert.ok(!html.includes("<img"));
  assert.ok(html.includes("&lt;img src=x onerror=alert(1)&gt; &amp; more"));
  assert.ok(html.includes("a, &lt;b&gt;"));
  assert.equal(escapeHtml(`"'<>&`), "&quot;&#39;&lt;&gt;&amp;");
});

test("results carry rank, provenance badge, gateway and record links", () => {
  const html = renderResults({ results: [hit, { ...hit, cid: "bafyreidef", provenance: { status: "pending", block_number: null } }] });
  assert.ok(html.includes("[1]") && html.includes("[2]"));
  assert.ok(html.includes("anchored · block 42"));
  assert.ok(html.includes(">pending (node)<"));
  assert.ok(html.includes('href="/ipfs/bafyreiabc?format=raw"'));
  assert.ok(html.includes('href="/v1/facts/bafyreiabc"'));
  assert.equal(renderResults({ results: [] }), '<p class="empty">No facts found.</p>');
});

test("scores keep their digits", () => {
  assert.equal(formatScore(0.5), "0.5000");
  assert.equal(formatScore(0.0000123), "0.0000123");
  assert.equal(formatScore(-2.5), "-2.5000");
  assert.equal(formatScore("x"), "–");
});

test("badges", () => {
  assert.match(badge({ status: "anchored", block_number: 7 }), /anchored · block 7/);
  assert.match(badge({ status: "pending" }), /pending/);
  assert.match(badge(undefined), /pending/);
});

test("metadata lines become typed values", () => {
  assert.deepEqual(parseMetadata("lang=en\nyear=2021\nreviewed=true\ntags=[x, y]\n"), {
    metadata: { lang: "en", year: 2021, reviewed: true, tags: ["x", "y"] },
  });
  assert.match(parseMetadata("no equals sign").error, /not key=value/);
  assert.deepEqual(parseMetadata(""), { metadata: {} });
});

test("filters from lines or JSON", () => {
  assert.deepEqual(buildFilter(""), { filter: null });
  assert.deepEqual(buildFilter("lang=en"), { filter: { lang: "en" } });
  assert.deepEqual(buildFilter("lang=en\nyear=2020"), { filter: { $and: [{ lang: "en" }, { year: 2020 }] } });
  assert.deepEqual(buildFilter('{"year": {"$gte": 2020}}'), { filter: { year: { $gte: 2020 } } });
  assert.match(buildFilter("{nope").error, /not valid JSON/);
});

test("transaction links use the explorer template, escaped", () => {
  const tx = "0x" + "ab".repeat(32);
  assert.ok(txLink(tx, "https://explorer.example/tx/{tx}").includes(`href="https://explorer.example/tx/${tx}"`));
  assert.ok(txLink(tx, "").startsWith("<code"));
  const bundle = {
    cid: "bafyreiabc", status: "anchored", contributor: hit.contributor, signature_valid: true,
    tx_hash: tx, block_number: 9, chain_id: 31337, registry: "0xReg", root: "0x" + "cd".repeat(32),
    proof: ["0x01", "0x02"], manifest_cid: "bafyreiman",
  };
  const html = renderProvenance(bundle, 'x"><script>{tx}');
  assert.ok(!html.includes("<script>"));
  assert.ok(html.includes("2 steps") && html.includes("knowhub verify bafyreiabc"));
  assert.ok(renderProvenance({ ...bundle, status: "pending" }, "").includes("pending"));
});

test("status and peers panels", () => {
  const rows = renderStatus({
    version: "0.1.0", facts: 3, index: { kind: "flat", size: 3 }, model: { name: "m", dimension: 384 },
    ipfs: { store: "embedded" }, operator: "0xabc", chain: null, p2p: { connected_peers: 2, facts_received: 5 },
  });
  assert.ok(rows.includes("anchoring off") && rows.includes("2 peers"));
  assert.ok(renderPeers({ peers: [] }).includes("No peers"));
  const peers = renderPeers({ peers: [{ peer_id: "12D3KooW<x>", connected_since: 1, facts_received: 4, rejected_messages: 0 }] });
  assert.ok(peers.includes("connected · 4 facts") && !peers.includes("<x>"));
});

test("relevance is shown and hits below the context threshold are marked", () => {
  assert.match(relevanceLabel(0.62, 0.35), /relevance 0\.62/);
  assert.doesNotMatch(relevanceLabel(0.62, 0.35), /not relevant/);
  assert.match(relevanceLabel(0.2, 0.35), /not-relevant.*relevance 0\.20 · not relevant/);
  assert.equal(relevanceLabel(null, 0.35), "");
  const html = renderResults({ results: [{ cid: "bafyX", text: "t", score: 0.03, relevance: 0.1, metadata: {} }], min_relevance: 0.35 });
  assert.match(html, /not relevant/);
});

test("each hit has a verification slot and the page says what the browser checks", () => {
  const html = renderResults({ results: [hit, { ...hit, cid: "bafyreidef" }] });
  assert.equal(html.match(/class="verification"><span class="verify checking"/g).length, 2);
  assert.match(html, /class="legend">.*CID and signature checked in your browser; anchoring as reported by the node/);
  assert.match(badge({ status: "anchored", block_number: 7 }), /as reported by the node">anchored · block 7 \(node\)</);
  assert.match(badge({ status: "pending" }), />pending \(node\)</);
});

test("verification states: verified, pending, failed, unchecked", () => {
  const base = { checked: true, ok: true, reasons: [], signer: "0xAbC", merkle: true, anchored: "anchored", blockNumber: 12 };
  const anchored = renderVerification(base);
  assert.match(anchored, /class="verify verified"[^>]*>✓ verified in browser</);
  assert.match(anchored, /title="[^"]*signature recovers to 0xAbC; Merkle proof folds[^"]*; anchored at block 12 as reported by the node"/);
  const pending = renderVerification({ ...base, merkle: null, anchored: "pending", blockNumber: null });
  assert.match(pending, /verified in browser/);
  assert.match(pending, /pending as reported by the node/);
  const failed = renderVerification({ ...base, ok: false, reasons: ["text differs from the signed record's", "<img src=x onerror=alert(1)>"] });
  assert.match(failed, /class="verify failed"[^>]*>FAILED: text differs from the signed record&#39;s; &lt;img src=x/);
  assert.ok(!failed.includes("<img") && !failed.includes("verified in browser"));
  const hostile = renderVerification({ ...base, signer: '"><script>', blockNumber: "<b>" });
  assert.ok(!hostile.includes("<script>") && !hostile.includes("<b>"));
  assert.match(renderVerification({ checked: false, ok: false, reasons: ["not checked (insecure context)"] }), /not checked \(insecure context\)/);
  assert.match(renderVerification(null), /checking in browser/);
});

// Pure rendering and parsing for the knowhub page: no DOM access, so Node can test it
// (tests/integration/test_web.py). Everything that came from a contributor is escaped.

export function escapeHtml(value) {
  return String(value ?? "")
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

// "key=value" lines -> metadata object. Integers and true/false become typed values, a value
// in [a, b] brackets a list of strings. Returns {metadata} or {error}.
export function parseMetadata(text) {
  const metadata = {};
  const lines = String(text ?? "").split("\n").map((l) => l.trim()).filter(Boolean);
  for (const line of lines) {
    const at = line.indexOf("=");
    if (at < 1) return { error: `metadata line "${line}" is not key=value` };
    const key = line.slice(0, at).trim();
    const raw = line.slice(at + 1).trim();
    metadata[key] = typedValue(raw);
  }
  return { metadata };
}

function typedValue(raw) {
  if (/^-?\d+$/.test(raw) && Number.isSafeInteger(Number(raw))) return Number(raw);
  if (raw === "true" || raw === "false") return raw === "true";
  if (raw.startsWith("[") && raw.endsWith("]")) {
    return raw.slice(1, -1).split(",").map((s) => s.trim()).filter(Boolean);
  }
  return raw;
}

// Filter from "key=value" lines (exact matches, joined with $and) or raw JSON.
export function buildFilter(text) {
  const source = String(text ?? "").trim();
  if (!source) return { filter: null };
  if (source.startsWith("{")) {
    try {
      return { filter: JSON.parse(source) };
    } catch (err) {
      return { error: `filter is not valid JSON: ${err.message}` };
    }
  }
  const parsed = parseMetadata(source);
  if (parsed.error) return { error: parsed.error };
  const entries = Object.entries(parsed.metadata);
  if (entries.length === 1) return { filter: Object.fromEntries(entries) };
  return { filter: { $and: entries.map(([k, v]) => ({ [k]: v })) } };
}

export function shortId(value, keep = 10) {
  const text = String(value ?? "");
  return text.length > 2 * keep + 1 ? `${text.slice(0, keep)}…${text.slice(-keep)}` : text;
}

export function formatScore(score) {
  const value = Number(score);
  if (!Number.isFinite(value)) return "–";
  return Math.abs(value) >= 0.001 || value === 0 ? value.toFixed(4) : value.toPrecision(3);
}

export function badge(provenance) {
  if (provenance && provenance.status === "anchored") {
    return `<span class="badge anchored" title="Merkle root anchored on chain, as reported by the node">anchored · block ${escapeHtml(provenance.block_number)} (node)</span>`;
  }
  return `<span class="badge pending" title="Signed; waiting for the next anchor batch (as reported by the node)">pending (node)</span>`;
}

export const VERIFY_LEGEND = "CID and signature checked in your browser; anchoring as reported by the node";

// The in-browser check of a hit (verify.js verifyHit's result), or, before it is done, a
// placeholder. `result` may come from a hostile node: every value in it is escaped.
export function renderVerification(result) {
  if (!result) return `<span class="verify checking" title="${VERIFY_LEGEND}">checking in browser…</span>`;
  if (!result.checked) {
    return `<span class="verify unchecked" title="this page is not a secure context (use http://127.0.0.1 or https): WebCrypto is unavailable">not checked (insecure context)</span>`;
  }
  if (!result.ok) {
    const reasons = (result.reasons ?? []).map(String);
    return `<span class="verify failed" title="${escapeHtml(`Checked in your browser: ${reasons.join("; ")}`)}">FAILED: ${escapeHtml(reasons.join("; ") || "unknown")}</span>`;
  }
  // the anchoring itself is shown by the provenance badge next to this one, marked "(node)"
  const merkle = result.merkle ? "; Merkle proof folds to the node's root" : "";
  const anchoring = result.anchored === "anchored" ? `anchored at block ${result.blockNumber ?? "?"}` : "pending";
  const title = `CID recomputed from the record block, record fields match, signature recovers to ${result.signer}${merkle} (all checked in your browser); ${anchoring} as reported by the node`;
  return `<span class="verify verified" title="${escapeHtml(title)}">✓ verified in browser</span>`;
}

export function txLink(tx, template) {
  if (!tx) return "";
  if (template && template.includes("{tx}")) {
    const href = template.replace("{tx}", encodeURIComponent(tx));
    return `<a href="${escapeHtml(href)}" rel="noreferrer">${escapeHtml(shortId(tx))}</a>`;
  }
  return `<code title="${escapeHtml(tx)}">${escapeHtml(shortId(tx))}</code>`;
}

export function relevanceLabel(relevance, threshold) {
  const value = Number(relevance);
  if (relevance === null || relevance === undefined || !Number.isFinite(value)) return "";
  const below = Number.isFinite(Number(threshold)) && value < Number(threshold);
  const title = below ? "below the context threshold: not cited" : "cosine with the query";
  return `<span class="relevance${below ? " not-relevant" : ""}" title="${title}">relevance ${value.toFixed(2)}${below ? " · not relevant" : ""}</span>`;
}

export function renderHit(hit, index, threshold) {
  const meta = Object.entries(hit.metadata ?? {})
    .map(([k, v]) => `<span class="meta">${escapeHtml(k)}: ${escapeHtml(Array.isArray(v) ? v.join(", ") : v)}</span>`)
    .join(" ");
  const cid = escapeHtml(hit.cid);
  return `<li class="hit" data-cid="${cid}">
  <div class="hit-head"><span class="rank">[${index + 1}]</span> ${badge(hit.provenance)}
    <span class="verification">${renderVerification(null)}</span>
    <span class="score">score ${escapeHtml(formatScore(hit.score))}</span>
    ${relevanceLabel(hit.relevance, threshold)}</div>
  <p class="text">${escapeHtml(hit.text)}</p>
  <div class="hit-foot">${meta}
    <span class="contributor" title="contributor">${escapeHtml(shortId(hit.contributor ?? "unsigned", 6))}</span>
    <a href="/ipfs/${cid}?format=raw" title="raw DAG-CBOR block (IPFS gateway)">block</a>
    <a href="/v1/facts/${cid}" title="fact record">record</a>
    <button type="button" class="provenance-button" data-cid="${cid}">provenance</button>
    <code class="cid">${cid}</code></div>
  <div class="provenance" hidden></div>
</li>`;
}

export function renderResults(data) {
  const hits = data?.results ?? [];
  if (!hits.length) return `<p class="empty">No facts found.</p>`;
  const threshold = data?.min_relevance;
  return `<ol class="hits">${hits.map((hit, i) => renderHit(hit, i, threshold)).join("")}</ol>
<p class="legend">✓ verified in browser: ${VERIFY_LEGEND}. <span class="verify-summary"></span></p>`;
}

export function renderProvenance(bundle, explorerTemplate) {
  const rows = [
    ["status", escapeHtml(bundle.status)],
    ["contributor", `<code>${escapeHtml(bundle.contributor ?? "none")}</code>`],
    ["signature valid", bundle.signature_valid ? "yes" : "no"],
  ];
  if (bundle.status === "anchored") {
    rows.push(
      ["transaction", txLink(bundle.tx_hash, explorerTemplate)],
      ["block", escapeHtml(bundle.block_number)],
      ["chain id", escapeHtml(bundle.chain_id)],
      ["registry", `<code>${escapeHtml(bundle.registry)}</code>`],
      ["Merkle root", `<code>${escapeHtml(shortId(bundle.root))}</code>`],
      ["proof", `${escapeHtml((bundle.proof ?? []).length)} steps`],
      ["manifest", `<a href="/ipfs/${escapeHtml(bundle.manifest_cid)}?format=raw">${escapeHtml(shortId(bundle.manifest_cid))}</a>`],
    );
  }
  const body = rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("");
  return `<table class="bundle">${body}</table>
<p class="hint">Check it yourself: <code>knowhub verify ${escapeHtml(bundle.cid)} --rpc YOUR_RPC --registry ${escapeHtml(bundle.registry ?? "ADDRESS")}</code></p>`;
}

export function renderStatus(status) {
  const chain = status.chain;
  const p2p = status.p2p;
  const rows = [
    ["version", escapeHtml(status.version)],
    ["facts", escapeHtml(status.facts)],
    ["index", `${escapeHtml(status.index.kind)} · ${escapeHtml(status.index.size)} vectors`],
    ["model", `${escapeHtml(status.model.name)} (${escapeHtml(status.model.dimension)})`],
    ["content store", escapeHtml(status.ipfs.store)],
    ["operator", `<code>${escapeHtml(shortId(status.operator, 6))}</code>`],
    ["chain", chain ? `id ${escapeHtml(chain.chain_id)} · queue ${escapeHtml(chain.anchor_queue)} · last block ${escapeHtml(chain.last_anchored_block ?? "–")}` : "anchoring off"],
    ["network", p2p ? `${escapeHtml(p2p.connected_peers)} peers · ${escapeHtml(p2p.facts_received)} facts received` : "off"],
  ];
  return rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("");
}

export function renderPeers(peers) {
  const list = peers?.peers ?? [];
  if (!list.length) return `<p class="empty">No peers.</p>`;
  return `<ul class="peers">${list
    .map((p) => {
      const since = p.connected_since ? "connected" : "not connected";
      return `<li><code title="${escapeHtml(p.peer_id)}">${escapeHtml(shortId(p.peer_id, 8))}</code> ${since} · ${escapeHtml(p.facts_received)} facts · ${escapeHtml(p.rejected_messages)} rejected</li>`;
    })
    .join("")}</ul>`;
}

export function errorText(status, body) {
  const err = body?.error;
  if (err) return `${status} ${err.code}: ${err.message}`;
  return `HTTP ${status}`;
}

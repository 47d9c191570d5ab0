// DOM wiring of the knowhub page. Rendering lives in ui.js; this file only talks to the
// node's REST API (same origin) and puts the results on the page.
import {
  buildFilter,
  errorText,
  escapeHtml,
  parseMetadata,
  renderPeers,
  renderProvenance,
  renderResults,
  renderStatus,
  renderVerification,
} from "./ui.js";
import { verifyHit } from "./verify.js";

const $ = (selector) => document.querySelector(selector);
const explorer = document.body.dataset.explorerTx || "";
const KEY_STORE = "knowhub.apiKey";

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key && method !== "GET") headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new Error(errorText(response.status, data));
  return data;
}

function show(target, html) {
  target.innerHTML = html;
}

async function search(event) {
  event.preventDefault();
  const out = $("#results");
  const filter = buildFilter($("#filter").value);
  if (filter.error) return show(out, `<p class="error">${escapeHtml(filter.error)}</p>`);
  const body = { query: $("#query").value, k: Number($("#k").value), mode: $("#mode").value, proofs: true };
  if (filter.filter) body.filter = filter.filter;
  show(out, `<p class="busy">Searching…</p>`);
  try {
    const data = await api("POST", "/v1/query", body);
    show(out, renderResults(data));
    $("#context").textContent = data.context || "";
    verifyHits(out, data.results ?? []);
  } catch (err) {
    show(out, `<p class="error">${escapeHtml(err.message)}</p>`);
  }
}

// Check each hit in the browser (verify.js) and put the outcome in its badge slot. The slots
// are taken now, so a newer search's page is never written by this one's checks.
async function verifyHits(out, hits) {
  const slots = [...out.querySelectorAll(".hit .verification")];
  const summary = out.querySelector(".verify-summary");
  const started = performance.now();
  const results = await Promise.all(
    hits.map(async (hit, i) => {
      const result = await verifyHit(hit).catch((err) => ({ ok: false, checked: true, reasons: [`check crashed: ${err.message}`] }));
      if (slots[i]) show(slots[i], renderVerification(result));
      return result;
    }),
  );
  if (summary) {
    const ok = results.filter((r) => r.ok).length;
    summary.textContent = `${ok} of ${results.length} hits verified in ${Math.round(performance.now() - started)} ms.`;
  }
}

async function toggleProvenance(event) {
  const button = event.target.closest(".provenance-button");
  if (!button) return;
  const panel = button.closest(".hit").querySelector(".provenance");
  if (!panel.hidden) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  show(panel, `<p class="busy">Loading provenance…</p>`);
  try {
    const bundle = await api("GET", `/v1/facts/${encodeURIComponent(button.dataset.cid)}/provenance`);
    show(panel, renderProvenance(bundle, explorer));
  } catch (err) {
    show(panel, `<p class="error">${escapeHtml(err.message)}</p>`);
  }
}

async function contribute(event) {
  event.preventDefault();
  const out = $("#contribute-result");
  const parsed = parseMetadata($("#metadata").value);
  if (parsed.error) return show(out, `<p class="error">${escapeHtml(parsed.error)}</p>`);
  const key = $("#api-key").value.trim();
  if (key) sessionStorage.setItem(KEY_STORE, key);
  try {
    const data = await api("POST", "/v1/facts", { text: $("#text").value, metadata: parsed.metadata });
    show(out, `<p class="ok">${escapeHtml(data.status)}: <a href="/v1/facts/${escapeHtml(data.cid)}"><code>${escapeHtml(data.cid)}</code></a></p>`);
    $("#text").value = "";
    refreshStatus();
  } catch (err) {
    show(out, `<p class="error">${escapeHtml(err.message)}</p>`);
  }
}

async function refreshStatus() {
  try {
    show($("#status"), renderStatus(await api("GET", "/v1/status")));
    show($("#peers"), renderPeers(await api("GET", "/v1/peers")));
  } catch (err) {
    show($("#status"), `<tr><td class="error">${escapeHtml(err.message)}</td></tr>`);
  }
}

$("#search-form").addEventListener("submit", search);
$("#contribute-form").addEventListener("submit", contribute);
$("#results").addEventListener("click", toggleProvenance);
$("#api-key").value = sessionStorage.getItem(KEY_STORE) || "";
refreshStatus();
setInterval(refreshStatus, 5000);

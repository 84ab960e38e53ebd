(function(){
"use strict";
const D = JSON.parse(document.getElementById("gallery-data").textContent);
const state = {page: 0, sel: {}};
const el = (tag, cls, text) => {const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text); return e;};
const valuesOf = (f) => {
  const vals = new Set();
  const add = (v) => { if (v !== null && v !== undefined && v !== "") vals.add(String(v)); };
  for (const it of D.items) { if (f === "t") it.t.forEach(add); else add(it[f]); }
  const idx = {st: 0, r: 1, n: 2, t: 3}[f];
  for (const c of D.combos) { if (f === "t") c[3].forEach(add); else add(c[idx]); }
  return Array.from(vals).sort((a, b) => (isNaN(a) || isNaN(b)) ? a.localeCompare(b) : a - b);
};
const matches = (st, r, n, t) => {
  const s = state.sel;
  return (!s.st || s.st === String(st)) && (!s.r || s.r === String(r || "")) &&
         (!s.n || s.n === String(n)) && (!s.t || t.includes(s.t));
};
function buildFilters(){
  const box = document.getElementById("filters");
  for (const [f, label] of D.filters) {
    const lab = el("label", null, label);
    const sel = el("select"); sel.id = "filter-" + f; sel.dataset.field = f;
    const all = el("option", null, "all"); all.value = ""; sel.appendChild(all);
    for (const v of valuesOf(f)) { const o = el("option", null, v); o.value = v; sel.appendChild(o); }
    sel.addEventListener("change", () => { state.sel[f] = sel.value; state.page = 0; draw(); });
    lab.appendChild(sel); box.appendChild(lab);
  }
}
function card(it){
  const c = el("div", "card"); c.dataset.key = it.k; c.dataset.status = it.st;
  const imgs = el("div", "imgs");
  for (const [head, uri] of it.img) {
    const fig = el("figure"); const img = el("img"); img.src = uri; img.alt = head + " " + it.k;
    fig.appendChild(img); fig.appendChild(el("figcaption", null, head));
    imgs.appendChild(fig);
  }
  if (it.img.length) c.appendChild(imgs);
  const line = el("div");
  const b = el("span", "badge", it.st); b.style.background = D.statusColours[it.st] || "#1565c0";
  line.appendChild(b); if (it.r) line.appendChild(el("span", "reason", it.r));
  c.appendChild(line); c.appendChild(el("div", "key", it.k));
  const ol = el("ol", "subs");
  it.sub.forEach(([text, ok, score], k) => {
    const li = el("li"); const sw = el("span", "sw"); sw.style.background = D.palette[k % D.palette.length];
    sw.title = "mask colour of sub-instruction " + k; li.appendChild(sw);
    li.appendChild(el("span", ok === true ? "ok" : ok === false ? "bad" : "unk", ok === true ? "\u2713" : ok === false ? "\u2717" : "?"));
    li.appendChild(el("span", null, k + ": " + text));
    li.appendChild(el("span", "score", score === null || score === undefined ? "" : Number(score).toFixed(2)));
    ol.appendChild(li);
  });
  c.appendChild(ol);
  if (it.ins) c.appendChild(el("div", "instr", it.ins));
  if (it.err) c.appendChild(el("div", "err", it.err));
  return c;
}
function draw(){
  const shown = D.items.filter((it) => matches(it.st, it.r, it.n, it.t));
  let total = 0;
  for (const c of D.combos) if (matches(c[0], c[1], c[2], c[3])) total += c[4];
  const pages = Math.max(1, Math.ceil(shown.length / D.perPage));
  state.page = Math.min(state.page, pages - 1);
  const start = state.page * D.perPage, page = shown.slice(start, start + D.perPage);
  const cards = document.getElementById("cards"); cards.replaceChildren(...page.map(card));
  const status = document.getElementById("gallery-status");
  status.textContent = total + " candidates match; " + shown.length + " of them in this gallery" +
    (page.length ? ", showing " + (start + 1) + "\u2013" + (start + page.length) : "") + ".";
  status.dataset.total = total; status.dataset.shown = shown.length;
  document.getElementById("page-label").textContent = "page " + (state.page + 1) + " of " + pages;
  document.getElementById("prev").disabled = state.page === 0;
  document.getElementById("next").disabled = state.page >= pages - 1;
}
document.getElementById("prev").addEventListener("click", () => { state.page -= 1; draw(); });
document.getElementById("next").addEventListener("click", () => { state.page += 1; draw(); });
document.getElementById("gallery-note").textContent = D.note;
(function legend(){
  // the mask colours: sub-instruction k is tinted D.palette[k] in every thumbnail
  const box = document.getElementById("legend");
  box.appendChild(el("span", null, "mask colours: "));
  D.palette.forEach((c, k) => {
    const item = el("span", "legend-item"); const sw = el("span", "sw"); sw.style.background = c;
    item.appendChild(sw); item.appendChild(el("span", null, " sub-instruction " + k)); box.appendChild(item);
  });
  box.appendChild(el("span", "legend-item", "dashed black/white line: the mask's edge"));
})();
buildFilters(); draw();
})();

(function(){
"use strict";
const D = JSON.parse(document.getElementById("gallery-data").textContent);
D.items.forEach((it, i) => { it._i = i; });
const state = {page: 0, sel: {}, sort: "status", mode: "outline"};
const el = (tag, cls, text) => {const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text); return e;};
const statusRank = (s) => { const i = (D.statusOrder || []).indexOf(String(s)); return i < 0 ? 1e9 : i; };
const valuesOf = (f) => {
  const vals = new Set();
  const add = (v) => { if (v !== null && v !== undefined && v !== "") vals.add(String(v)); };
  for (const it of D.items) { if (f === "t") it.t.forEach(add); else add(it[f]); }
  const idx = {st: 0, r: 1, n: 2, t: 3}[f];
  for (const c of D.combos) { if (f === "t") c[3].forEach(add); else add(c[idx]); }
  const byName = (a, b) => (isNaN(a) || isNaN(b)) ? a.localeCompare(b) : a - b;
  return Array.from(vals).sort(f === "st" ? (a, b) => (statusRank(a) - statusRank(b)) || byName(a, b) : byName);
};
const matches = (st, r, n, t) => {
  const s = state.sel;
  return (!s.st || s.st === String(st)) && (!s.r || s.r === String(r || "")) &&
         (!s.n || s.n === String(n)) && (!s.t || t.includes(s.t));
};
// sorts: the statuses in D.statusOrder (what needs a look first), the key, the score (lowest
// first, none last), the reason (none last); ties keep the order the page lists them in
const SORTS = {
  status: ["status (failures first)", (a, b) => statusRank(a.st) - statusRank(b.st)],
  key: ["key", (a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0)],
  score: ["score (lowest first)", (a, b) => (a.sc === null || a.sc === undefined ? 2 : a.sc) - (b.sc === null || b.sc === undefined ? 2 : b.sc)],
  reason: ["reason", (a, b) => (a.r ? 0 : 1) - (b.r ? 0 : 1) || String(a.r).localeCompare(String(b.r))],
};
function selectBox(id, label, options, value, onChange){
  const lab = el("label", null, label);
  const sel = el("select"); sel.id = id;
  for (const [v, text] of options) { const o = el("option", null, text); o.value = v; sel.appendChild(o); }
  sel.value = value;
  sel.addEventListener("change", () => onChange(sel.value));
  lab.appendChild(sel); return lab;
}
function buildFilters(){
  const box = document.getElementById("filters");
  for (const [f, label] of D.filters) {
    const opts = [["", "all"], ...valuesOf(f).map((v) => [v, v])];
    box.appendChild(selectBox("filter-" + f, label, opts, "", (v) => { state.sel[f] = v; state.page = 0; draw(); }));
  }
  box.appendChild(selectBox("sort", "sort by", Object.entries(SORTS).map(([k, s]) => [k, s[0]]), state.sort,
    (v) => { state.sort = v; state.page = 0; draw(); }));
  box.appendChild(selectBox("mask-mode", "masks", [["outline", "outline"], ["tint", "tint"], ["off", "off"]], state.mode,
    (v) => { state.mode = v; draw(); if (zoomItem) drawZoom(); }));
}

// ---- masks, drawn over the clean pictures at the size they are shown
const maskCache = new Map();
function maskImages(it){
  if (!maskCache.has(it)) {
    maskCache.set(it, Promise.all((it.m || []).map((uri) => {
      // a mask that does not decode (a damaged run folder) is left out, not the picture
      const im = new Image(); im.src = uri; return im.decode().then(() => im, () => null);
    })));
  }
  return maskCache.get(it);
}
function canvas(w, h){ const c = el("canvas"); c.width = w; c.height = h;
  const x = c.getContext("2d"); x.imageSmoothingEnabled = false; return [c, x]; }
// the mask dilated by r canvas pixels (a square), filled with colour
function grown(mask, w, h, r, colour){
  const [c, x] = canvas(w, h);
  for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) x.drawImage(mask, dx, dy, w, h);
  x.globalCompositeOperation = "source-in"; x.fillStyle = colour; x.fillRect(0, 0, w, h);
  return c;
}
// one sub-edit's layer: a ring OUTSIDE the region (2 px of its colour, 1 px dark beyond), so
// no pixel of the region is covered; in tint mode the region is also filled at D.alpha
function layer(mask, w, h, k, mode, ring){
  const colour = D.palette[k % D.palette.length];
  const [c, x] = canvas(w, h);
  x.drawImage(grown(mask, w, h, ring + 1, "#181818"), 0, 0);
  x.drawImage(grown(mask, w, h, ring, colour), 0, 0);
  x.globalCompositeOperation = "destination-out"; x.drawImage(mask, 0, 0, w, h);
  if (mode === "tint") {
    x.globalCompositeOperation = "source-over"; x.globalAlpha = D.alpha;
    x.drawImage(grown(mask, w, h, 0, colour), 0, 0);
  }
  return c;
}
function paint(cv, it, cssW, cssH, active){
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(cssW * dpr)), h = Math.max(1, Math.round(cssH * dpr));
  cv.width = w; cv.height = h; cv.style.width = cssW + "px"; cv.style.height = cssH + "px";
  if (state.mode === "off") return Promise.resolve();
  return maskImages(it).then((masks) => {
    const x = cv.getContext("2d"); x.clearRect(0, 0, w, h);
    masks.forEach((m, k) => { if (m && active(k)) x.drawImage(layer(m, w, h, k, state.mode, Math.max(1, Math.round(2 * dpr))), 0, 0); });
  });
}
// one picture at cssW x cssH: the clean image, the mask canvas over it
function picture(it, head, uri, cssW, cssH){
  const box = el("div", "pic"); box.style.width = cssW + "px"; box.style.height = cssH + "px";
  const img = el("img"); img.src = uri; img.alt = head + " " + it.k; img.width = cssW; img.height = cssH;
  if (it.wh && cssW > it.wh[0]) img.className = "px";  // enlarged: whole pixels, no blur
  const cv = el("canvas", "masks");
  box.appendChild(img); box.appendChild(cv);
  return [box, cv];
}
function size(it, width){ const wh = it.wh || [1, 1]; return [width, Math.round(width * wh[1] / wh[0])]; }

function card(it, jobs){
  const c = el("div", "card"); c.dataset.key = it.k; c.dataset.status = it.st;
  const imgs = el("div", "imgs");
  const [w, h] = size(it, D.display);
  it.img.forEach(([head, uri], i) => {
    const fig = el("figure"); const [box, cv] = picture(it, head, uri, w, h);
    box.title = "click to enlarge"; box.tabIndex = 0;
    box.addEventListener("click", () => openZoom(it));
    box.addEventListener("keydown", (e) => { if (e.key === "Enter") openZoom(it); });
    fig.appendChild(box); fig.appendChild(el("figcaption", null, head));
    imgs.appendChild(fig);
    jobs.push(() => paint(cv, it, w, h, () => true));
  });
  if (it.img.length) c.appendChild(imgs);
  const line = el("div");
  const b = el("span", "badge", it.st); b.style.background = D.statusColours[it.st] || "#1565c0";
  line.appendChild(b); if (it.r) line.appendChild(el("span", "reason", it.r));
  c.appendChild(line); c.appendChild(el("div", "key", it.k));
  c.appendChild(subList(it, null));
  if (it.ins) c.appendChild(el("div", "instr", it.ins));
  if (it.err) c.appendChild(el("div", "err", it.err));
  return c;
}
// the sub-instructions with swatch, verdict and score; in the enlarged view each has a box
// that switches its mask on or off
function subList(it, boxes){
  const ol = el("ol", "subs");
  it.sub.forEach(([text, ok, score], k) => {
    const li = el("li");
    if (boxes) { const cb = el("input"); cb.type = "checkbox"; cb.checked = true; cb.dataset.k = k;
      cb.addEventListener("change", drawZoom); boxes.push(cb); li.appendChild(cb); }
    const sw = el("span", "sw"); sw.style.background = D.palette[k % D.palette.length];
    sw.title = "mask colour of sub-instruction " + k; li.appendChild(sw);
    li.appendChild(el("span", ok === true ? "ok" : ok === false ? "bad" : "unk", ok === true ? "\u2713" : ok === false ? "\u2717" : "?"));
    li.appendChild(el("span", null, k + ": " + text));
    li.appendChild(el("span", "score", score === null || score === undefined ? "" : Number(score).toFixed(2)));
    ol.appendChild(li);
  });
  return ol;
}
// run the paint jobs of a container; when the last is done, data-painted equals data-gen (a
// later redraw of the same container supersedes an unfinished one)
function paintAll(box, jobs){
  const gen = String(Number(box.dataset.gen || 0) + 1); box.dataset.gen = gen; box.dataset.painted = "";
  Promise.all(jobs.map((j) => j())).then(() => { if (box.dataset.gen === gen) box.dataset.painted = gen; });
}
function draw(){
  const sortBy = SORTS[state.sort][1];
  const shown = D.items.filter((it) => matches(it.st, it.r, it.n, it.t))
    .sort((a, b) => sortBy(a, b) || a._i - b._i);
  let total = 0;
  for (const c of D.combos) if (matches(c[0], c[1], c[2], c[3])) total += c[4];
  const pages = Math.max(1, Math.ceil(shown.length / D.perPage));
  state.page = Math.min(state.page, pages - 1);
  const start = state.page * D.perPage, page = shown.slice(start, start + D.perPage);
  const jobs = [];
  const cards = document.getElementById("cards"); cards.replaceChildren(...page.map((it) => card(it, jobs)));
  paintAll(cards, jobs);
  const status = document.getElementById("gallery-status");
  status.textContent = total + " candidates match; " + shown.length + " of them in this gallery" +
    (page.length ? ", showing " + (start + 1) + "\u2013" + (start + page.length) : "") + ".";
  status.dataset.total = total; status.dataset.shown = shown.length;
  document.getElementById("page-label").textContent = "page " + (state.page + 1) + " of " + pages;
  document.getElementById("prev").disabled = state.page === 0;
  document.getElementById("next").disabled = state.page >= pages - 1;
}

// ---- the enlarged view: every picture of the item at full resolution or more (small images
// enlarged by whole pixels), each mask on or off
const zoom = document.getElementById("zoom");
let zoomItem = null, zoomBoxes = [], zoomPics = null;
function zoomScale(it){
  const n = Math.max(1, it.img.length), wh = it.wh || [256, 256];
  const availW = Math.max(160, (window.innerWidth - 80) / n - 12), availH = Math.max(160, window.innerHeight - 260);
  const fit = Math.min(availW / wh[0], availH / wh[1]);
  return fit >= 1 ? Math.floor(fit) : fit;  // whole-pixel enlargement; shrink only what cannot fit
}
function openZoom(it){
  zoomItem = it; zoomBoxes = [];
  const head = el("div", "zoom-head");
  head.appendChild(el("span", "key", it.st + (it.r ? ": " + it.r : "") + " \u00b7 " + it.k));
  const close = el("button", null, "close"); close.type = "button"; close.id = "zoom-close";
  close.addEventListener("click", () => zoom.close()); head.appendChild(close);
  zoomPics = el("div", "zoom-pics");
  zoom.replaceChildren(head, zoomPics, subList(it, zoomBoxes));
  if (it.ins) zoom.appendChild(el("div", "instr", it.ins));
  if (!zoom.open) zoom.showModal();
  drawZoom();
}
function drawZoom(){
  const it = zoomItem; if (!it) return;
  const s = zoomScale(it), wh = it.wh || [256, 256];
  const w = Math.round(wh[0] * s), h = Math.round(wh[1] * s);
  const on = new Set(zoomBoxes.filter((b) => b.checked).map((b) => Number(b.dataset.k)));
  const jobs = [];
  zoomPics.replaceChildren(...it.img.map(([head, uri]) => {
    const fig = el("figure"); const [box, cv] = picture(it, head, uri, w, h);
    fig.appendChild(box); fig.appendChild(el("figcaption", null, head + " \u00b7 " + wh[0] + "\u00d7" + wh[1] + " px, shown \u00d7" + (Math.round(s * 100) / 100)));
    jobs.push(() => paint(cv, it, w, h, (k) => on.has(k)));
    return fig;
  }));
  paintAll(zoom, jobs);
}
zoom.addEventListener("click", (e) => { if (e.target === zoom) zoom.close(); });  // the backdrop
zoom.addEventListener("close", () => { zoomItem = null; });

document.getElementById("prev").addEventListener("click", () => { state.page -= 1; draw(); });
document.getElementById("next").addEventListener("click", () => { state.page += 1; draw(); });
document.getElementById("gallery-note").textContent = D.note;
(function legend(){
  // the mask colours: sub-instruction k is drawn in D.palette[k] over every picture
  const box = document.getElementById("legend");
  box.appendChild(el("span", null, "mask colours: "));
  D.palette.forEach((c, k) => {
    const item = el("span", "legend-item"); const sw = el("span", "sw"); sw.style.background = c;
    item.appendChild(sw); item.appendChild(el("span", null, " sub-instruction " + k)); box.appendChild(item);
  });
  box.appendChild(el("span", "legend-note", "a ring in that colour (dark beyond it) runs just outside each mask; the pictures' own pixels are untouched"));
})();
// a card is as wide as its pictures: two for a build, three for a benchmark set
const cols = Math.max(1, ...D.items.map((it) => it.img.length));
document.getElementById("cards").style.gridTemplateColumns =
  "repeat(auto-fill,minmax(" + (cols * (D.display + 6) + 14) + "px,1fr))";
buildFilters(); draw();
})();

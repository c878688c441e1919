// AnomalyViewer front end (anywidget ESM; plain JavaScript, no imports, no build step).
//
// The kernel sends the selected image at display resolution (PNG), its anomaly map (uint16 over its range)
// and ground truth (packed bits) at the same resolution; the page colours the map, draws the
// predicted-mask and ground-truth contours and redraws at once when a slider moves. Counts
// and the grid's contents come from the kernel (the single source of truth).

const FILTERS = ["all", "true anomalous", "true normal", "called anomalous", "called normal", "hits", "misses",
                 "false alarms"];

function u8(v) {
  if (!v) return new Uint8Array(0);
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return new Uint8Array(0);
}
function u16(v) { return new Uint16Array(u8(v).slice().buffer); } // copy: alignment
function i32(v) { return new Int32Array(u8(v).slice().buffer); }

function el_(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "n/a";
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e4 || a < 1e-3) ? v.toExponential(3) : Number(v.toPrecision(4)).toString();
}

function slider(cls, label) {
  const wrap = el_("label", "wb-av-slider");
  wrap.append(el_("span", "", label));
  const input = el_("input", cls);
  input.type = "range";
  input.min = "0";
  input.max = "1000";
  input.step = "1";
  const value = el_("span", `${cls}-value wb-av-value`);
  wrap.append(input, value);
  return { wrap, input, value };
}

function render({ model, el }) {
  const root = el_("div", "wb-av");
  root.tabIndex = 0;
  root.setAttribute("data-lm-suppress-shortcuts", "true");

  // ---------------------------------------------------------------- controls
  const controls = el_("div", "wb-av-controls");
  const kindLabel = el_("label", "", "Kind ");
  const kindSel = el_("select", "wb-av-kind");
  for (const k of ["all", ...model.get("_kinds")]) kindSel.append(new Option(k, k));
  kindLabel.append(kindSel);
  const filterLabel = el_("label", "", "Show ");
  const filterSel = el_("select", "wb-av-filter");
  for (const f of FILTERS) filterSel.append(new Option(f, f));
  filterLabel.append(filterSel);
  const thr = slider("wb-av-threshold", "Image threshold");
  const pix = slider("wb-av-pixel-threshold", "Pixel threshold");
  const opa = slider("wb-av-opacity", "Map opacity");
  controls.append(kindLabel, filterLabel, thr.wrap, pix.wrap, opa.wrap);

  const counts = el_("div", "wb-av-counts");
  const main = el_("div", "wb-av-main");
  const grid = el_("div", "wb-av-grid");
  const view = el_("div", "wb-av-view");
  const caption = el_("div", "wb-av-caption");
  const canvas = el_("canvas", "wb-av-canvas");
  const legend = el_("div", "wb-av-legend");
  const ramp = el_("canvas", "wb-av-ramp");
  ramp.width = 160;
  ramp.height = 10;
  const lo = el_("span", "wb-av-lo"), hi = el_("span", "wb-av-hi");
  legend.append(lo, ramp, hi, el_("span", "wb-av-key wb-av-key-pred", "predicted"),
                el_("span", "wb-av-key wb-av-key-gt", "ground truth"));
  const info = el_("div", "wb-av-info");
  view.append(caption, canvas, legend, info);
  main.append(grid, view);
  const notes = el_("div", "wb-av-notes");
  root.append(controls, counts, main, notes);
  el.appendChild(root);
  const ctx = canvas.getContext("2d");

  // ---------------------------------------------------------------- sliders
  const ranges = model.get("_ranges");
  const toPos = (v, [a, b]) => String(Math.round(((v - a) / (b - a || 1)) * 1000));
  const fromPos = (p, [a, b]) => a + (Number(p) / 1000) * (b - a);
  function bind(s, name, range) {
    s.input.addEventListener("input", () => {
      model.set(name, range ? fromPos(s.input.value, range) : Number(s.input.value) / 1000);
      model.save_changes();
      syncSliders();
      draw();
    });
  }
  bind(thr, "threshold", ranges.image);
  bind(pix, "pixel_threshold", ranges.pixel);
  bind(opa, "opacity", null);
  function syncSliders() {
    thr.input.value = toPos(model.get("threshold"), ranges.image);
    thr.value.textContent = fmt(model.get("threshold"));
    pix.input.value = toPos(model.get("pixel_threshold"), ranges.pixel);
    pix.value.textContent = fmt(model.get("pixel_threshold"));
    opa.input.value = String(Math.round(model.get("opacity") * 1000));
    opa.value.textContent = `${Math.round(model.get("opacity") * 100)}%`;
    kindSel.value = model.get("kind");
    filterSel.value = model.get("label_filter");
    updateOutcomes();
    updateCaption();
  }
  kindSel.addEventListener("change", () => { model.set("kind", kindSel.value); model.save_changes(); });
  filterSel.addEventListener("change", () => { model.set("label_filter", filterSel.value); model.save_changes(); });

  // ---------------------------------------------------------------- grid
  const items = model.get("_items");
  const T = model.get("_thumb_size"), cols = model.get("_thumb_cols");
  const spriteUrl = URL.createObjectURL(new Blob([u8(model.get("_thumbs"))], { type: "image/png" }));
  const cells = new Map();
  function cell(i) {
    if (cells.has(i)) return cells.get(i);
    const it = items[i];
    const c = el_("div", "wb-av-thumb");
    c.dataset.index = String(i);
    c.title = `${it.kind}/${it.name} · score ${fmt(it.score)} · ${it.label ? "anomalous" : "normal"}`;
    const pic = el_("div", "wb-av-pic");
    pic.style.width = `${T}px`;
    pic.style.height = `${T}px`;
    pic.style.backgroundImage = `url(${spriteUrl})`;
    pic.style.backgroundPosition = `-${(i % cols) * T}px -${Math.floor(i / cols) * T}px`;
    const cap = el_("div", "wb-av-cap", `${fmt(it.score)} ${it.kind}`);
    cap.style.maxWidth = `${T}px`;
    c.append(pic, cap);
    c.addEventListener("click", () => { select(i); root.focus({ preventScroll: true }); });
    cells.set(i, c);
    return c;
  }
  let visible = [];
  function rebuildGrid() {
    visible = Array.from(i32(model.get("_visible")));
    grid.replaceChildren(...visible.map(cell));
    if (!visible.length) grid.append(el_("div", "wb-av-empty", "no image matches the filters"));
    updateOutcomes();
    markSelected();
  }
  function outcome(it, t) {
    const called = it.score >= t;
    if (it.label) return called ? "hit" : "miss";
    return called ? "false-alarm" : "pass";
  }
  function updateOutcomes() {
    const t = model.get("threshold");
    for (const [i, c] of cells) {
      const o = outcome(items[i], t);
      if (c.dataset.outcome !== o) {
        c.classList.remove(`wb-av-${c.dataset.outcome}`);
        c.classList.add(`wb-av-${o}`);
        c.dataset.outcome = o;
      }
    }
  }
  function markSelected() {
    const s = model.get("selected");
    for (const [i, c] of cells) c.classList.toggle("wb-av-selected", i === s);
    const c = cells.get(s);
    if (c && c.isConnected) {
      const g = grid.getBoundingClientRect(), r = c.getBoundingClientRect();
      if (r.top < g.top || r.bottom > g.bottom) grid.scrollTop += r.top - g.top - (g.height - r.height) / 2;
    }
  }
  function select(i) {
    if (i === model.get("selected")) return;
    model.set("selected", i);
    model.save_changes();
    markSelected();
  }

  // ---------------------------------------------------------------- the large view
  let bitmap = null, amap = null, gt = null, vw = 0, vh = 0, closed = false, viewToken = 0;
  const lut = u8(model.get("_lut"));
  function drawRamp() {
    const rc = ramp.getContext("2d");
    const img = rc.createImageData(ramp.width, ramp.height);
    for (let x = 0; x < ramp.width; x++) {
      const k = Math.round((x / (ramp.width - 1)) * 255) * 3;
      for (let y = 0; y < ramp.height; y++) {
        const p = 4 * (y * ramp.width + x);
        img.data[p] = lut[k]; img.data[p + 1] = lut[k + 1]; img.data[p + 2] = lut[k + 2]; img.data[p + 3] = 255;
      }
    }
    rc.putImageData(img, 0, 0);
    const [a, b] = model.get("_color_range");
    lo.textContent = fmt(a);
    hi.textContent = fmt(b);
  }
  function onView() {
    const v = model.get("_view");
    if (!v || v.w === undefined) return;
    const token = ++viewToken;
    vw = v.w; vh = v.h;
    const q = u16(v.map), scale = (v.map_hi - v.map_lo) / 65535;
    amap = new Float32Array(q.length);
    for (let i = 0; i < q.length; i++) amap[i] = v.map_lo + q[i] * scale;
    canvas.width = vw; canvas.height = vh;
    canvas.style.width = `${vw}px`;
    canvas.style.height = `${vh}px`;
    createImageBitmap(new Blob([u8(v.png)], { type: "image/png" })).then((b) => {
      if (closed || token !== viewToken) { b.close(); return; }
      if (bitmap) bitmap.close();
      bitmap = b;
      draw();
    });
    updateCaption();
  }
  function onGt() {
    const g = model.get("_gt");
    gt = null;
    if (g && g.bits && u8(g.bits).length && g.w === vw && g.h === vh) {
      const bits = u8(g.bits), n = g.w * g.h;
      gt = new Uint8Array(n);
      for (let i = 0; i < n; i++) gt[i] = (bits[i >> 3] >> (7 - (i & 7))) & 1;
    }
    draw();
  }
  function edges(m, w, h) { // inner 4-neighbourhood boundary, thickened by one pixel right/down
    const e = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (!m[i]) continue;
        if (x === 0 || y === 0 || x === w - 1 || y === h - 1 || !m[i - 1] || !m[i + 1] || !m[i - w] || !m[i + w]) {
          e[i] = 1;
          if (x + 1 < w) e[i + 1] = 1;
          if (y + 1 < h) e[i + w] = 1;
        }
      }
    }
    return e;
  }
  function draw() {
    if (!bitmap || !amap || amap.length !== vw * vh) return;
    ctx.drawImage(bitmap, 0, 0, vw, vh);
    const img = ctx.getImageData(0, 0, vw, vh), d = img.data;
    const [a, b] = model.get("_color_range");
    const span = b - a || 1e-12, op = model.get("opacity"), t = model.get("pixel_threshold");
    const pred = new Uint8Array(vw * vh);
    for (let i = 0, p = 0; i < amap.length; i++, p += 4) {
      const v = amap[i];
      pred[i] = v >= t ? 1 : 0;
      let s = (v - a) / span;
      s = s < 0 ? 0 : s > 1 ? 1 : s;
      const al = op * s;
      if (al > 0) {
        const k = Math.floor(s * 255) * 3;
        d[p] = d[p] * (1 - al) + lut[k] * al;
        d[p + 1] = d[p + 1] * (1 - al) + lut[k + 1] * al;
        d[p + 2] = d[p + 2] * (1 - al) + lut[k + 2] * al;
      }
    }
    const pe = edges(pred, vw, vh);
    for (let i = 0, p = 0; i < pe.length; i++, p += 4) if (pe[i]) { d[p] = 0; d[p + 1] = 255; d[p + 2] = 255; }
    if (gt) {
      const ge = edges(gt, vw, vh);
      for (let i = 0, p = 0; i < ge.length; i++, p += 4) if (ge[i]) { d[p] = 0; d[p + 1] = 255; d[p + 2] = 0; }
    }
    ctx.putImageData(img, 0, 0);
  }
  function updateCaption() {
    const v = model.get("_view");
    if (!v || v.name === undefined) return;
    const called = v.score >= model.get("threshold");
    caption.textContent = `#${v.index} ${v.kind}/${v.name} (${v.width}×${v.height}) · ${v.label ? "anomalous" : "normal"}`
      + ` · score ${fmt(v.score)} · called ${called ? "anomalous" : "normal"}`;
    caption.dataset.called = called ? "anomalous" : "normal";
  }
  function updateInfo() {
    const f = model.get("_info") || {};
    info.textContent = `predicted mask ${f.predicted_px ?? "?"} px · ground truth `
      + (f.gt_px === null || f.gt_px === undefined ? "none" : `${f.gt_px} px`)
      + ` · IoU ${f.iou === null || f.iou === undefined ? "n/a" : f.iou.toFixed(3)}`;
  }
  function updateCounts() {
    const c = model.get("counts") || {};
    const k = model.get("kind");
    counts.replaceChildren();
    const part = (cls, label, n) => {
      const s = el_("span", `wb-av-count ${cls}`);
      s.append(el_("b", "", String(n ?? "?")), document.createTextNode(` ${label}`));
      counts.append(s);
    };
    part("wb-av-count-hits", "hits", c.hits);
    part("wb-av-count-misses", "misses", c.misses);
    part("wb-av-count-false-alarms", "false alarms", c.false_alarms);
    part("wb-av-count-rejections", "correct rejections", c.correct_rejections);
    counts.append(el_("span", "wb-av-count-of", `of ${c.n ?? "?"} images${k === "all" ? "" : ` of kind ${k}`}`));
  }
  const n = model.get("_notes") || {};
  notes.textContent = "An image is called anomalous when its score ≥ the image threshold: hits = anomalous images "
    + "called anomalous, misses = anomalous images called normal, false alarms = normal images called anomalous. "
    + "The pixel threshold draws the predicted mask (cyan) of the selected image; green is its ground truth. "
    + `${n.image || ""}; ${n.pixel || ""}.`;

  // ---------------------------------------------------------------- keys
  function onKey(e) {
    if (e.target instanceof HTMLSelectElement || e.target instanceof HTMLInputElement) return;
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
    if (!step || !visible.length) return;
    const at = visible.indexOf(model.get("selected"));
    const next = visible[Math.min(visible.length - 1, Math.max(0, at < 0 ? 0 : at + step))];
    select(next);
    e.preventDefault();
    e.stopPropagation();
  }
  root.addEventListener("keydown", onKey);

  // ---------------------------------------------------------------- model -> page
  const handlers = {
    "change:_view": onView,
    "change:_gt": onGt,
    "change:_visible": rebuildGrid,
    "change:selected": markSelected,
    "change:counts": updateCounts,
    "change:_info": updateInfo,
    "change:threshold": syncSliders,
    "change:pixel_threshold": () => { syncSliders(); draw(); },
    "change:opacity": () => { syncSliders(); draw(); },
    "change:kind": syncSliders,
    "change:label_filter": syncSliders,
  };
  for (const [ev, fn] of Object.entries(handlers)) model.on(ev, fn);
  drawRamp();
  rebuildGrid();
  syncSliders();
  updateCounts();
  updateInfo();
  onView();
  onGt();

  return () => {
    closed = true;
    for (const [ev, fn] of Object.entries(handlers)) model.off(ev, fn);
    URL.revokeObjectURL(spriteUrl);
    if (bitmap) bitmap.close();
    root.remove();
  };
}

export default { render };

// MaskPainter front end (anywidget ESM; plain JavaScript, no imports, no build step).
//
// The page keeps a copy of the mask (one byte per pixel), shows every stroke at once and
// sends it to the kernel as a compact diff: bounding box + packed bits of the brush footprint
// (see widgets/_mask_painter.py for the format). The kernel is the authority: it answers each
// edit with a patch of its mask, and the page re-applies its own edits the kernel has not
// acknowledged yet, so both converge even when the kernel is slow.

const MODES = [
  ["paint", "Paint", "p"],
  ["erase", "Erase", "e"],
  ["fill", "Fill", "f"],
  ["pan_zoom", "Pan/zoom", "z"],
];
const MASK_RGB = [0, 229, 255];
const MASK_ALPHA = 0.45;
const MAX_BRUSH = 512;

function u8(v) {
  if (!v) return new Uint8Array(0);
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return new Uint8Array(0);
}

// packed bits (row-major, most significant bit first) -> region of dst (1 byte per pixel)
function unpackRegion(dst, W, x, y, w, h, bits) {
  let i = 0;
  for (let r = 0; r < h; r++) {
    const o = (y + r) * W + x;
    for (let c = 0; c < w; c++, i++) dst[o + c] = (bits[i >> 3] >> (7 - (i & 7))) & 1;
  }
}

// set dst = value where the packed footprint has a 1
function applyFootprint(dst, W, x, y, w, h, bits, value) {
  let i = 0;
  for (let r = 0; r < h; r++) {
    const o = (y + r) * W + x;
    for (let c = 0; c < w; c++, i++) if ((bits[i >> 3] >> (7 - (i & 7))) & 1) dst[o + c] = value;
  }
}

function packRegion(src, W, x, y, w, h) {
  const out = new Uint8Array((w * h + 7) >> 3);
  let i = 0;
  for (let r = 0; r < h; r++) {
    const o = (y + r) * W + x;
    for (let c = 0; c < w; c++, i++) if (src[o + c]) out[i >> 3] |= 128 >> (i & 7);
  }
  return out;
}

function union(a, b) {
  if (!a) return b ? { ...b } : null;
  if (!b) return a;
  return { x0: Math.min(a.x0, b.x0), y0: Math.min(a.y0, b.y0), x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1) };
}

// 4-connected region of equal value around (x, y): a scanline flood fill into `out` (0/1)
function floodRegion(mask, W, H, x, y, out) {
  const v = mask[y * W + x];
  const stack = [x, y];
  let box = null;
  while (stack.length) {
    const sy = stack.pop(), sx = stack.pop();
    let l = sx;
    const row = sy * W;
    if (out[row + sx] || mask[row + sx] !== v) continue;
    while (l > 0 && mask[row + l - 1] === v && !out[row + l - 1]) l--;
    let r = sx;
    while (r < W - 1 && mask[row + r + 1] === v && !out[row + r + 1]) r++;
    for (let i = l; i <= r; i++) out[row + i] = 1;
    box = union(box, { x0: l, y0: sy, x1: r, y1: sy });
    for (const ny of [sy - 1, sy + 1]) {
      if (ny < 0 || ny >= H) continue;
      const nrow = ny * W;
      let i = l;
      while (i <= r) {
        if (mask[nrow + i] === v && !out[nrow + i]) {
          stack.push(i, ny);
          while (i <= r && mask[nrow + i] === v && !out[nrow + i]) i++;
        } else i++;
      }
    }
  }
  return box;
}

function el_(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render({ model, el }) {
  const H = model.get("_height"), W = model.get("_width");
  const client = Math.random().toString(36).slice(2) + Date.now().toString(36);
  let seq = 0;
  let pending = []; // own edits the kernel has not acknowledged: {seq, value, x, y, w, h, bits}

  // ---------------------------------------------------------------- state
  const mask = new Uint8Array(W * H);
  unpackRegion(mask, W, 0, 0, W, H, u8(model.get("_mask_bits")));
  const foot = new Uint8Array(W * H); // footprint of the stroke being drawn
  const maskCanvas = document.createElement("canvas");
  maskCanvas.width = W;
  maskCanvas.height = H;
  const mctx = maskCanvas.getContext("2d");
  const maskImg = mctx.createImageData(W, H);

  function refreshMask(box) {
    if (!box) return;
    const x0 = Math.max(0, box.x0), y0 = Math.max(0, box.y0);
    const x1 = Math.min(W - 1, box.x1), y1 = Math.min(H - 1, box.y1);
    if (x1 < x0 || y1 < y0) return;
    const d = maskImg.data;
    for (let y = y0; y <= y1; y++) {
      let i = y * W + x0, p = 4 * i;
      for (let x = x0; x <= x1; x++, i++, p += 4) {
        if (mask[i]) { d[p] = MASK_RGB[0]; d[p + 1] = MASK_RGB[1]; d[p + 2] = MASK_RGB[2]; d[p + 3] = 255; }
        else d[p + 3] = 0;
      }
    }
    mctx.putImageData(maskImg, 0, 0, x0, y0, x1 - x0 + 1, y1 - y0 + 1);
  }
  refreshMask({ x0: 0, y0: 0, x1: W - 1, y1: H - 1 });

  // ---------------------------------------------------------------- DOM
  const root = el_("div", "wb-mp");
  root.tabIndex = 0;
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  const bar = el_("div", "wb-mp-toolbar");
  const modeButtons = {};
  for (const [m, label, key] of MODES) {
    const b = el_("button", "wb-mp-mode", label);
    b.type = "button";
    b.dataset.mode = m;
    b.title = `${label} (${key.toUpperCase()})`;
    b.addEventListener("click", () => { model.set("mode", m); model.save_changes(); root.focus({ preventScroll: true }); });

    modeButtons[m] = b;
    bar.appendChild(b);
  }
  const brushLabel = el_("label", "wb-mp-brush", "Brush ");
  const brush = el_("input");
  brush.type = "range";
  brush.min = "1";
  brush.max = String(Math.min(MAX_BRUSH, Math.max(8, Math.round(Math.max(W, H) / 4))));
  brush.addEventListener("input", () => { model.set("brush_size", Number(brush.value)); model.save_changes(); });
  const brushValue = el_("span", "wb-mp-brush-value");
  brushLabel.append(brush, brushValue);
  bar.appendChild(brushLabel);
  const undoBtn = el_("button", "wb-mp-undo", "Undo");
  undoBtn.type = "button";
  undoBtn.title = "Undo (Ctrl-Z)";
  const redoBtn = el_("button", "wb-mp-redo", "Redo");
  redoBtn.type = "button";
  redoBtn.title = "Redo (Ctrl-Shift-Z)";
  // keep the keyboard focus in the widget (a button that becomes disabled would drop it)
  const refocus = () => root.focus({ preventScroll: true });
  undoBtn.addEventListener("click", () => { sendOp("undo"); refocus(); });
  redoBtn.addEventListener("click", () => { sendOp("redo"); refocus(); });
  const fitBtn = el_("button", "wb-mp-fit", "Fit");
  fitBtn.type = "button";
  fitBtn.title = "Show the whole image (0)";
  fitBtn.addEventListener("click", () => { resetView(); requestDraw(); refocus(); });
  bar.append(undoBtn, redoBtn, fitBtn);

  const legendInfo = model.get("_overlay_legend") || {};
  const hasOverlay = u8(model.get("_overlay_png")).length > 0;
  const opacity = el_("input");
  if (hasOverlay) {
    const lab = el_("label", "wb-mp-opacity", "Overlay ");
    opacity.type = "range";
    opacity.min = "0";
    opacity.max = "100";
    opacity.addEventListener("input", () => {
      model.set("overlay_opacity", Number(opacity.value) / 100);
      model.save_changes();
      requestDraw();
    });
    lab.appendChild(opacity);
    if (legendInfo.colors && legendInfo.colors.length) {
      const lg = el_("span", "wb-mp-legend");
      const fmt = (v) => (Math.abs(v) >= 100 || Math.abs(v) < 0.01 ? v.toExponential(2) : v.toFixed(3));
      const ramp = el_("span", "wb-mp-ramp");
      ramp.style.background = `linear-gradient(to right, ${legendInfo.colors.join(", ")})`;
      lg.append(el_("span", "", fmt(legendInfo.vmin)), ramp, el_("span", "", fmt(legendInfo.vmax)));
      lab.appendChild(lg);
    }
    bar.appendChild(lab);
  }

  const stage = el_("div", "wb-mp-stage");
  const canvas = el_("canvas", "wb-mp-canvas");
  stage.appendChild(canvas);
  const footer = el_("div", "wb-mp-footer");
  const info = el_("span", "wb-mp-info");
  const status = el_("span", "wb-mp-status");
  footer.append(info, status);
  root.append(bar, stage, footer);
  el.appendChild(root);
  const ctx = canvas.getContext("2d");

  // ---------------------------------------------------------------- view transform
  let fit = 1, s = 1, tx = 0, ty = 0, cssW = 1, cssH = 1;
  function layout() {
    const size = model.get("view_size");
    fit = size / Math.max(W, H);
    cssW = W * fit;
    cssH = H * fit;
    canvas.style.width = `${cssW}px`;
    canvas.style.height = `${cssH}px`;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(cssW * dpr));
    canvas.height = Math.max(1, Math.round(cssH * dpr));
  }
  function resetView() { s = fit; tx = 0; ty = 0; }
  layout();
  resetView();

  function toImage(e) {
    const r = canvas.getBoundingClientRect();
    const cx = (e.clientX - r.left) * (cssW / r.width), cy = (e.clientY - r.top) * (cssH / r.height);
    return { x: (cx - tx) / s, y: (cy - ty) / s, cx, cy };
  }

  // ---------------------------------------------------------------- images
  let bitmap = null, overlayBitmap = null, closed = false;
  const decode = async (bytes) => createImageBitmap(new Blob([bytes], { type: "image/png" }));
  decode(u8(model.get("_image_png"))).then((b) => { if (closed) b.close(); else { bitmap = b; requestDraw(); } });
  if (hasOverlay) {
    decode(u8(model.get("_overlay_png"))).then((b) => { if (closed) b.close(); else { overlayBitmap = b; requestDraw(); } });
  }

  // ---------------------------------------------------------------- drawing
  let raf = 0, cursor = null;
  function requestDraw() { if (!raf && !closed) raf = requestAnimationFrame(draw); }
  function draw() {
    raf = 0;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#202020";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(dpr * s, 0, 0, dpr * s, dpr * tx, dpr * ty);
    ctx.imageSmoothingEnabled = s < 1;
    if (bitmap) ctx.drawImage(bitmap, 0, 0);
    const op = model.get("overlay_opacity");
    if (overlayBitmap && op > 0) {
      ctx.globalAlpha = op;
      ctx.drawImage(overlayBitmap, 0, 0);
    }
    ctx.globalAlpha = MASK_ALPHA;
    ctx.drawImage(maskCanvas, 0, 0);
    ctx.globalAlpha = 1;
    if (cursor && (mode() === "paint" || mode() === "erase")) {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      const r = Math.max(0.5, model.get("brush_size") / 2) * s;
      ctx.beginPath();
      ctx.arc(cursor.cx, cursor.cy, r, 0, 2 * Math.PI);
      ctx.strokeStyle = mode() === "paint" ? "rgba(0,229,255,0.9)" : "rgba(255,80,80,0.9)";
      ctx.lineWidth = 1;
      ctx.stroke();
    }
    info.textContent = `${model.get("_title")} · ${W}×${H} px · zoom ${Math.round((s / fit) * 100)}%`;
  }

  // ---------------------------------------------------------------- edits
  function send(edit) {
    edit.client = client;
    edit.seq = ++seq;
    model.set("_edit", edit);
    model.save_changes();
    return edit.seq;
  }
  function sendOp(op) { send({ op }); }

  let stroke = null; // {value, box, last}
  function stamp(ax, ay, bx, by) {
    const r = Math.max(0.5, model.get("brush_size") / 2), r2 = r * r;
    const x0 = Math.max(0, Math.floor(Math.min(ax, bx) - r)), x1 = Math.min(W - 1, Math.ceil(Math.max(ax, bx) + r));
    const y0 = Math.max(0, Math.floor(Math.min(ay, by) - r)), y1 = Math.min(H - 1, Math.ceil(Math.max(ay, by) + r));
    if (x1 < x0 || y1 < y0) return;
    const dx = bx - ax, dy = by - ay, L2 = dx * dx + dy * dy;
    const v = stroke.value;
    let hit = null;
    for (let y = y0; y <= y1; y++) {
      const py = y + 0.5;
      for (let x = x0; x <= x1; x++) {
        const px = x + 0.5;
        let t = L2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / L2 : 0;
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        const ex = ax + t * dx - px, ey = ay + t * dy - py;
        if (ex * ex + ey * ey <= r2) {
          const i = y * W + x;
          foot[i] = 1;
          mask[i] = v;
          if (!hit) hit = { x0: x, y0: y, x1: x, y1: y };
          else { if (x < hit.x0) hit.x0 = x; if (x > hit.x1) hit.x1 = x; hit.y1 = y; }
        }
      }
    }
    if (hit) {
      stroke.box = union(stroke.box, hit);
      refreshMask(hit);
    }
  }
  function startStroke(p, value) {
    stroke = { value, box: null, last: p };
    stamp(p.x, p.y, p.x, p.y);
    requestDraw();
  }
  function extendStroke(p) {
    stamp(stroke.last.x, stroke.last.y, p.x, p.y);
    stroke.last = p;
  }
  function endStroke() {
    const st = stroke;
    stroke = null;
    if (!st || !st.box) return;
    const { x0, y0, x1, y1 } = st.box;
    const w = x1 - x0 + 1, h = y1 - y0 + 1;
    const bits = packRegion(foot, W, x0, y0, w, h);
    for (let y = y0; y <= y1; y++) foot.fill(0, y * W + x0, y * W + x1 + 1);
    const edit = { op: "stroke", value: st.value, x: x0, y: y0, w, h, bits: new DataView(bits.buffer) };
    const n = send(edit);
    pending.push({ seq: n, value: st.value, x: x0, y: y0, w, h, bits });
  }
  function fillAt(p, value) {
    const x = Math.floor(p.x), y = Math.floor(p.y);
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    if (mask[y * W + x] === value) return;
    const region = new Uint8Array(W * H);
    const box = floodRegion(mask, W, H, x, y, region);
    if (!box) return;
    const w = box.x1 - box.x0 + 1, h = box.y1 - box.y0 + 1;
    const bits = packRegion(region, W, box.x0, box.y0, w, h);
    applyFootprint(mask, W, box.x0, box.y0, w, h, bits, value);
    refreshMask(box);
    requestDraw();
    const n = send({ op: "fill", row: y, col: x, value });
    pending.push({ seq: n, value, x: box.x0, y: box.y0, w, h, bits });
  }

  // the kernel's answer: its mask in a box, and which of our edits it has applied
  function onPatch() {
    const p = model.get("_patch");
    if (!p || p.rev === undefined) return;
    const ack = (p.acks && p.acks[client]) || 0;
    pending = pending.filter((q) => q.seq > ack);
    let box = null;
    if (p.w > 0 && p.h > 0) {
      unpackRegion(mask, W, p.x, p.y, p.w, p.h, u8(p.bits));
      box = { x0: p.x, y0: p.y, x1: p.x + p.w - 1, y1: p.y + p.h - 1 };
    }
    if (box) {
      for (const q of pending) {
        applyFootprint(mask, W, q.x, q.y, q.w, q.h, q.bits, q.value);
        box = union(box, { x0: q.x, y0: q.y, x1: q.x + q.w - 1, y1: q.y + q.h - 1 });
      }
      if (stroke && stroke.box) { // a stroke in progress stays on top
        const b = stroke.box;
        for (let y = b.y0; y <= b.y1; y++) for (let x = b.x0, i = y * W + b.x0; x <= b.x1; x++, i++) if (foot[i]) mask[i] = stroke.value;
        box = union(box, b);
      }
      refreshMask(box);
      requestDraw();
    }
  }

  // ---------------------------------------------------------------- pointer and keys
  const mode = () => model.get("mode");
  let pan = null;
  function onDown(e) {
    root.focus({ preventScroll: true });
    const p = toImage(e);
    if (e.button === 1 || (e.button === 0 && mode() === "pan_zoom")) {
      pan = { x: e.clientX, y: e.clientY, tx, ty };
    } else if (e.button === 0 && mode() === "fill") {
      fillAt(p, e.shiftKey || e.altKey ? 0 : 1);
    } else if (e.button === 0) {
      startStroke(p, mode() === "erase" ? 0 : 1);
    } else return;
    canvas.setPointerCapture(e.pointerId);
    e.preventDefault();
  }
  function onMove(e) {
    const p = toImage(e);
    cursor = p;
    if (stroke) {
      const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
      for (const ce of events.length ? events : [e]) extendStroke(toImage(ce));
    } else if (pan) {
      const r = canvas.getBoundingClientRect(), k = cssW / r.width;
      tx = pan.tx + (e.clientX - pan.x) * k;
      ty = pan.ty + (e.clientY - pan.y) * k;
    }
    requestDraw();
  }
  function onUp(e) {
    if (stroke) {
      extendStroke(toImage(e));
      endStroke();
    }
    pan = null;
    if (canvas.hasPointerCapture && canvas.hasPointerCapture(e.pointerId)) canvas.releasePointerCapture(e.pointerId);
    requestDraw();
  }
  function onLeave() { cursor = null; requestDraw(); }
  function zoomAt(cx, cy, f) {
    const ns = Math.min(Math.max(s * f, fit * 0.25), Math.max(fit * 64, 32));
    tx = cx - ((cx - tx) * ns) / s;
    ty = cy - ((cy - ty) * ns) / s;
    s = ns;
    requestDraw();
  }
  function onWheel(e) {
    if (mode() !== "pan_zoom" && !e.ctrlKey) return; // let the notebook scroll
    e.preventDefault();
    const p = toImage(e);
    zoomAt(p.cx, p.cy, Math.exp(-e.deltaY * 0.002));
  }
  function onKey(e) {
    const k = e.key.toLowerCase();
    const mod = e.ctrlKey || e.metaKey;
    let handled = true;
    if (mod && k === "z") sendOp(e.shiftKey ? "redo" : "undo");
    else if (mod && k === "y") sendOp("redo");
    else if (mod || e.altKey) handled = false;
    else if (MODES.some(([, , key]) => key === k)) {
      model.set("mode", MODES.find(([, , key]) => key === k)[0]);
      model.save_changes();
    } else if (k === "[" || k === "]") {
      const b = model.get("brush_size");
      const nb = k === "]" ? Math.min(MAX_BRUSH, Math.ceil(b * 1.25)) : Math.max(1, Math.floor(b / 1.25));
      model.set("brush_size", nb);
      model.save_changes();
    } else if (k === "0") { resetView(); requestDraw(); }
    else handled = false;
    if (handled) { e.preventDefault(); e.stopPropagation(); }
  }
  canvas.addEventListener("pointerdown", onDown);
  canvas.addEventListener("pointermove", onMove);
  canvas.addEventListener("pointerup", onUp);
  canvas.addEventListener("pointercancel", onUp);
  canvas.addEventListener("pointerleave", onLeave);
  canvas.addEventListener("wheel", onWheel, { passive: false });
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  root.addEventListener("keydown", onKey);

  // ---------------------------------------------------------------- model -> page
  function syncControls() {
    for (const [m] of MODES) modeButtons[m].classList.toggle("wb-mp-active", mode() === m);
    for (const [m] of MODES) modeButtons[m].setAttribute("aria-pressed", String(mode() === m));
    canvas.dataset.mode = mode();
    brush.value = String(model.get("brush_size"));
    brushValue.textContent = ` ${model.get("brush_size")} px`;
    if (hasOverlay) opacity.value = String(Math.round(model.get("overlay_opacity") * 100));
    undoBtn.disabled = model.get("_undo_depth") === 0;
    redoBtn.disabled = model.get("_redo_depth") === 0;
    status.textContent = model.get("save_status");
    status.classList.toggle("wb-mp-failed", model.get("save_status").startsWith("save failed"));
    requestDraw();
  }
  function onViewSize() { layout(); resetView(); requestDraw(); }
  const events = ["change:mode", "change:brush_size", "change:overlay_opacity", "change:_undo_depth",
                  "change:_redo_depth", "change:save_status"];
  for (const ev of events) model.on(ev, syncControls);
  model.on("change:_patch", onPatch);
  model.on("change:view_size", onViewSize);
  syncControls();
  requestDraw();
  sendOp("sync"); // a view rendered later (second display, page reload) gets the kernel's mask

  return () => {
    closed = true;
    if (raf) cancelAnimationFrame(raf);
    for (const ev of events) model.off(ev, syncControls);
    model.off("change:_patch", onPatch);
    model.off("change:view_size", onViewSize);
    if (bitmap) bitmap.close();
    if (overlayBitmap) overlayBitmap.close();
    root.remove();
  };
}

export default { render };

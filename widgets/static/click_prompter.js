// ClickPrompter front end (anywidget ESM; plain JavaScript, no imports, no build step).
//
// A click on the canvas becomes an image pixel (row, col) -- the canvas may be scaled by CSS,
// zoomed and panned -- and is sent to the kernel as {op: "add", row, col, label}. The kernel owns
// the clicks and the mask (see widgets/_click_prompter.py); the page draws its own clicks at once
// and replaces them with the kernel's list when that acknowledges them.

const MASK_RGB = [30, 144, 255];
const MASK_ALPHA = 0.45;
const MARKER_RADIUS = 7; // CSS pixels, whatever the zoom
const POSITIVE = "#2e7d32";
const NEGATIVE = "#c62828";

function u8(v) {
  if (!v) return new Uint8Array(0);
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return new Uint8Array(0);
}

function el_(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(cls, text, title) {
  const b = el_("button", cls, text);
  b.type = "button";
  b.title = title;
  return b;
}

function render({ model, el }) {
  const H = model.get("_height"), W = model.get("_width");
  const client = Math.random().toString(36).slice(2) + Date.now().toString(36);
  let seq = 0;
  let pending = []; // own edits the kernel has not acknowledged: {seq, op, row, col, label}

  // ---------------------------------------------------------------- mask layer (image pixels)
  const maskCanvas = document.createElement("canvas");
  maskCanvas.width = W;
  maskCanvas.height = H;
  const mctx = maskCanvas.getContext("2d");
  const maskImg = mctx.createImageData(W, H);
  function refreshMask() {
    const bits = u8(model.get("_mask_bits"));
    const d = maskImg.data;
    const n = W * H;
    if (bits.length < (n + 7) >> 3) { d.fill(0); mctx.putImageData(maskImg, 0, 0); return; }
    for (let i = 0, p = 0; i < n; i++, p += 4) {
      if ((bits[i >> 3] >> (7 - (i & 7))) & 1) { d[p] = MASK_RGB[0]; d[p + 1] = MASK_RGB[1]; d[p + 2] = MASK_RGB[2]; d[p + 3] = 255; }
      else d[p + 3] = 0;
    }
    mctx.putImageData(maskImg, 0, 0);
  }
  refreshMask();

  // ---------------------------------------------------------------- DOM
  const root = el_("div", "wb-cp");
  root.tabIndex = 0;
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  const bar = el_("div", "wb-cp-toolbar");
  const undoBtn = button("wb-cp-undo", "Undo click", "Remove the last click (Ctrl-Z)");
  const clearBtn = button("wb-cp-clear", "Clear", "Remove every click");
  const acceptBtn = button("wb-cp-accept", "Accept", "Save the mask to the annotation store");
  const fitBtn = button("wb-cp-fit", "Fit", "Show the whole image (0)");
  const hint = el_("span", "wb-cp-hint");
  hint.append(el_("span", "wb-cp-key-pos", "+ left click"), el_("span", "wb-cp-key-neg", "− shift/right click"));
  bar.append(undoBtn, clearBtn, acceptBtn, fitBtn, hint);
  const stage = el_("div", "wb-cp-stage");
  const canvas = el_("canvas", "wb-cp-canvas");
  stage.appendChild(canvas);
  const footer = el_("div", "wb-cp-footer");
  const info = el_("span", "wb-cp-info");
  const status = el_("span", "wb-cp-status");
  const saveStatus = el_("span", "wb-cp-save-status");
  footer.append(info, status, saveStatus);
  root.append(bar, stage, footer);
  el.appendChild(root);
  const ctx = canvas.getContext("2d");

  // ---------------------------------------------------------------- view transform
  // canvas CSS box: cssW x cssH; image point (x, y) is drawn at CSS (tx + s x, ty + s y)
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

  // page event -> image coordinates; the rendered box may differ from cssW x cssH (CSS zoom,
  // transforms, a notebook scaled by the browser), so scale by the ratio first
  function toImage(e) {
    const r = canvas.getBoundingClientRect();
    const cx = (e.clientX - r.left) * (cssW / r.width), cy = (e.clientY - r.top) * (cssH / r.height);
    return { x: (cx - tx) / s, y: (cy - ty) / s, cx, cy };
  }

  // ---------------------------------------------------------------- image
  let bitmap = null, closed = false;
  createImageBitmap(new Blob([u8(model.get("_image_png"))], { type: "image/png" }))
    .then((b) => { if (closed) b.close(); else { bitmap = b; requestDraw(); } });

  // ---------------------------------------------------------------- clicks shown
  function shownClicks() {
    let list = (model.get("_clicks") || []).map((c) => [c[0], c[1], c[2]]);
    for (const q of pending) {
      if (q.op === "add") list.push([q.row, q.col, q.label]);
      else if (q.op === "undo") list.pop();
      else if (q.op === "clear") list = [];
    }
    return list;
  }

  // ---------------------------------------------------------------- drawing
  let raf = 0;
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
    ctx.globalAlpha = MASK_ALPHA;
    ctx.drawImage(maskCanvas, 0, 0);
    ctx.globalAlpha = 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    for (const [row, col, label] of shownClicks()) {
      const x = tx + (col + 0.5) * s, y = ty + (row + 0.5) * s, r = MARKER_RADIUS;
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fillStyle = label > 0 ? POSITIVE : NEGATIVE;
      ctx.fill();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
      ctx.beginPath();
      ctx.moveTo(x - r * 0.55, y);
      ctx.lineTo(x + r * 0.55, y);
      if (label > 0) { ctx.moveTo(x, y - r * 0.55); ctx.lineTo(x, y + r * 0.55); }
      ctx.lineWidth = 2;
      ctx.stroke();
    }
    const n = shownClicks().length;
    info.textContent = `${model.get("_title")} · ${W}×${H} px · ${n} click${n === 1 ? "" : "s"} · zoom ${Math.round((s / fit) * 100)}%`;
  }

  // ---------------------------------------------------------------- edits
  function send(edit) {
    edit.client = client;
    edit.seq = ++seq;
    model.set("_edit", edit);
    model.save_changes();
    return edit.seq;
  }
  function sendOp(op, extra) {
    const edit = { op, ...(extra || {}) };
    const n = send(edit);
    if (op !== "accept") pending.push({ seq: n, ...edit });
    requestDraw();
  }
  function onAcks() {
    const acks = model.get("_acks") || {};
    const ack = acks[client] || 0;
    pending = pending.filter((q) => q.seq > ack);
    syncControls();
  }

  // ---------------------------------------------------------------- pointer and keys
  let pan = null;
  function onDown(e) {
    root.focus({ preventScroll: true });
    if (e.button === 1 || (e.button === 0 && e.altKey)) {
      pan = { x: e.clientX, y: e.clientY, tx, ty };
      canvas.setPointerCapture(e.pointerId);
      e.preventDefault();
      return;
    }
    if (e.button !== 0 && e.button !== 2) return;
    e.preventDefault();
    const p = toImage(e);
    const col = Math.floor(p.x), row = Math.floor(p.y);
    if (col < 0 || row < 0 || col >= W || row >= H) return; // outside the image (zoomed out)
    const label = e.button === 2 || e.shiftKey ? -1 : 1;
    sendOp("add", { row, col, label });
  }
  function onMove(e) {
    if (!pan) return;
    const r = canvas.getBoundingClientRect(), k = cssW / r.width;
    tx = pan.tx + (e.clientX - pan.x) * k;
    ty = pan.ty + (e.clientY - pan.y) * k;
    requestDraw();
  }
  function onUp(e) {
    pan = null;
    if (canvas.hasPointerCapture && canvas.hasPointerCapture(e.pointerId)) canvas.releasePointerCapture(e.pointerId);
  }
  function onWheel(e) {
    if (!e.ctrlKey) return; // let the notebook scroll
    e.preventDefault();
    const p = toImage(e);
    const ns = Math.min(Math.max(s * Math.exp(-e.deltaY * 0.002), fit * 0.25), Math.max(fit * 64, 32));
    tx = p.cx - ((p.cx - tx) * ns) / s;
    ty = p.cy - ((p.cy - ty) * ns) / s;
    s = ns;
    requestDraw();
  }
  function onKey(e) {
    const k = e.key.toLowerCase();
    const mod = e.ctrlKey || e.metaKey;
    let handled = true;
    if (mod && k === "z" && !e.shiftKey) undo();
    else if (!mod && !e.altKey && k === "0") { resetView(); requestDraw(); }
    else handled = false;
    if (handled) { e.preventDefault(); e.stopPropagation(); }
  }
  const refocus = () => root.focus({ preventScroll: true });
  function undo() { if (shownClicks().length) sendOp("undo"); }
  undoBtn.addEventListener("click", () => { undo(); refocus(); });
  clearBtn.addEventListener("click", () => { if (shownClicks().length) sendOp("clear"); refocus(); });
  acceptBtn.addEventListener("click", () => { sendOp("accept"); refocus(); });
  fitBtn.addEventListener("click", () => { resetView(); requestDraw(); refocus(); });
  canvas.addEventListener("pointerdown", onDown);
  canvas.addEventListener("pointermove", onMove);
  canvas.addEventListener("pointerup", onUp);
  canvas.addEventListener("pointercancel", onUp);
  canvas.addEventListener("wheel", onWheel, { passive: false });
  canvas.addEventListener("contextmenu", (e) => { e.preventDefault(); e.stopPropagation(); });
  root.addEventListener("keydown", onKey);

  // ---------------------------------------------------------------- model -> page
  function syncControls() {
    const n = shownClicks().length;
    undoBtn.disabled = n === 0;
    clearBtn.disabled = n === 0;
    const hasStore = model.get("_has_store");
    acceptBtn.disabled = !hasStore;
    if (!hasStore) acceptBtn.title = "No annotation store: create the widget with store= and key=";
    const busy = model.get("_busy");
    root.classList.toggle("wb-cp-busy", busy);
    status.textContent = model.get("status");
    status.classList.toggle("wb-cp-failed", model.get("status").startsWith("segmentation failed"));
    saveStatus.textContent = model.get("save_status");
    saveStatus.classList.toggle("wb-cp-failed", /^(accept failed|cannot accept)/.test(model.get("save_status")));
    requestDraw();
  }
  function onMask() { refreshMask(); requestDraw(); }
  function onViewSize() { layout(); resetView(); requestDraw(); }
  const events = ["change:_clicks", "change:_busy", "change:status", "change:save_status", "change:_has_store"];
  for (const ev of events) model.on(ev, syncControls);
  model.on("change:_acks", onAcks);
  model.on("change:_mask_bits", onMask);
  model.on("change:view_size", onViewSize);
  syncControls();

  return () => {
    closed = true;
    if (raf) cancelAnimationFrame(raf);
    for (const ev of events) model.off(ev, syncControls);
    model.off("change:_acks", onAcks);
    model.off("change:_mask_bits", onMask);
    model.off("change:view_size", onViewSize);
    if (bitmap) bitmap.close();
    root.remove();
  };
}

export default { render };

// Box editor for detection images: draw, move, resize, retag and delete boxes on an SVG laid
// over the image; every change is saved (debounced) with the version the page was loaded at.
//
// Expects (templates/labeling/box_editor.html):
//   <div data-box-editor="ID-OF-JSON-SCRIPT">
//     <div class="box-stage"><svg class="box-canvas" viewBox="0 0 W H">
//       <image class="box-image" width="W" height="H"/><g class="box-layer"/></svg></div>
//     <button data-tag-id="7">…</button> …          tag list, in key order 1–9
//     <p data-key-target/>                            says what keys 1–9 set right now
//     <button data-action="no-objects">               the "No objects" mark (key 0)
//     <ul class="box-list"/> <span data-testid="box-count"/> <span data-info="counts"/>
//     <p class="box-status"/> <div class="box-conflict" hidden><p class="box-conflict-message"/>
//       <button data-action="reload"/></div>
//   </div>
//   <script id="ID-OF-JSON-SCRIPT" type="application/json">{version, imageUrl, width, height,
//     tags: [{id, name}], regions: [{tag_id, left, top, width, height}], noObjects, saveUrl,
//     prevUrl, nextUrl, nextUntaggedUrl, preload: [url], taggedCount, untaggedLeft}</script>
//
// Boxes live in image pixels inside the SVG (its viewBox is the image), and are sent to the
// server as fractions of the image, Custom Vision's convention. Zoom and pan change the viewBox.
//
// Keys 1–9 set the tag of the *next* box, unless a box was explicitly clicked (on the image or in
// the list): then they retag that box. A box just drawn stays selected (Del removes it, its
// corners resize it) but is not "clicked", so the next key never silently retags it; the line
// [data-key-target] always says which of the two a key will do.

const SAVE_DELAY_MS = 250;
// A shorter drag is a click, not a box: selects or deselects instead of drawing. A hand that
// clicks moves a few pixels; 6 px keeps those slips from leaving specks of boxes behind.
const MIN_DRAG_SCREEN_PX = 6;
const HANDLE_SCREEN_PX = 9;
const NAV_START_KEY = "loupe-box-nav-start";
const COLORS = ["#ff4d4f", "#40a9ff", "#52c41a", "#faad14", "#b37feb", "#13c2c2", "#eb2f96",
  "#a0d911", "#fa8c16"];
const SVG_NS = "http://www.w3.org/2000/svg";

class BoxEditor {
  constructor(root) {
    this.root = root;
    this.svg = root.querySelector(".box-canvas");
    this.layer = root.querySelector(".box-layer");
    this.imageEl = root.querySelector(".box-image");
    this.status = root.querySelector(".box-status");
    this.drag = null;
    this.spaceDown = false;
    this.saveTimer = null;
    this.saving = null; // the in-flight save's promise
    this.decoded = new Map(); // image url -> decoded Image, kept so showing it costs no decode
    this.bind();
    this.load(JSON.parse(document.getElementById(root.dataset.boxEditor).textContent));
    const started = Number(sessionStorage.getItem(NAV_START_KEY));
    sessionStorage.removeItem(NAV_START_KEY);
    this.showImage(started ? performance.now() - (Date.now() - started) : null);
  }

  // One image's state: the page's own at first, then each image the editor moves to.
  load(data) {
    this.data = data;
    this.W = data.width;
    this.H = data.height;
    this.version = data.version;
    this.tagIndex = new Map(data.tags.map((t, i) => [t.id, i]));
    this.boxes = data.regions.map((r) => ({
      tagId: r.tag_id, x: r.left * this.W, y: r.top * this.H, w: r.width * this.W,
      h: r.height * this.H,
    }));
    // "No objects": a reviewer looked and found nothing to box. Only on an image without boxes;
    // drawing a box clears it (the server applies the same rule).
    this.noObjects = Boolean(data.noObjects) && !this.boxes.length;
    this.selected = -1;
    this.clicked = false; // the selected box was clicked (keys retag it), not just drawn
    this.lastTagId = this.lastTagId ?? (data.tags.length ? data.tags[0].id : null);
    const remembered = Number(sessionStorage.getItem(this.tagKey()));
    if (this.tagIndex.has(remembered)) this.lastTagId = remembered;
    this.undoStack = [];
    this.redoStack = [];
    this.dirty = false;
    this.conflicted = false;
    this.root.querySelector(".box-conflict").hidden = true;
    this.setStatus("Saved.");
    this.imageEl.setAttribute("width", this.W);
    this.imageEl.setAttribute("height", this.H);
    this.setView({ x: 0, y: 0, w: this.W, h: this.H });
    this.showNeighbours(data);
    const info = (name, text) => { this.root.querySelector(`[data-info=${name}]`).textContent = text; };
    info("name", data.name);
    info("size", `${this.W}×${this.H} px`);
    document.title = document.title.replace(/^[^·]*·/, `${data.name} ·`);
    // Other modules that show something per image (box-prediction.js) follow the editor.
    this.root.dispatchEvent(new CustomEvent("box-editor:load", { detail: data }));
  }

  showNeighbours(data) {
    for (const key of ["prevUrl", "nextUrl", "nextUntaggedUrl", "preload"]) {
      this.data[key] = data[key];
    }
    this.root.querySelectorAll("[data-nav]").forEach((a) => {
      const url = data[a.dataset.nav];
      a.hidden = !url;
      if (url) a.href = url; else a.removeAttribute("href");
    });
    this.showCounts(data);
  }

  // The project's images with and without boxes: every answer carries them, saves included, so
  // the line follows the annotator's own work (and everyone else's) without a reload.
  showCounts({ taggedCount, untaggedLeft }) {
    if (taggedCount === undefined || untaggedLeft === undefined) return;
    Object.assign(this.data, { taggedCount, untaggedLeft });
    this.root.querySelector("[data-info=counts]").textContent =
      `${taggedCount} with boxes · ${untaggedLeft} without`;
  }

  tagKey() { return `loupe-box-tag-${this.data.saveUrl.split("/")[2]}`; }

  // --- the image --------------------------------------------------------------------------
  decode(url) {
    if (!this.decoded.has(url)) {
      const img = new Image();
      img.src = url;
      this.decoded.set(url, img.decode().then(() => img, () => img));
      if (this.decoded.size > 8) this.decoded.delete(this.decoded.keys().next().value);
    }
    return this.decoded.get(url);
  }

  async showImage(navStart) {
    const url = this.data.imageUrl;
    this.root.dataset.ready = "0";
    await this.decode(url);
    if (url !== this.data.imageUrl) return; // moved on meanwhile
    this.imageEl.setAttribute("href", url);
    requestAnimationFrame(() => {
      this.root.dataset.ready = "1";
      // Time from the key press to this image on screen (bench/box_editor.py reads it).
      if (navStart !== null) this.root.dataset.navMs = (performance.now() - navStart).toFixed(1);
    });
    for (const next of this.data.preload || []) this.decode(next);
    this.prefetch();
  }

  // The editor data of the images a key leads to, fetched ahead so a key shows its image at
  // once; `go` checks it against the server right after (see revalidate).
  prefetch() {
    this.prefetched = new Map();
    for (const url of [this.data.nextUntaggedUrl, this.data.nextUrl, this.data.prevUrl]) {
      if (url && !this.prefetched.has(url)) this.prefetched.set(url, fetchData(url).catch(() => null));
    }
  }

  // --- coordinates ------------------------------------------------------------------------
  toImage(evt) {
    const pt = this.svg.createSVGPoint();
    pt.x = evt.clientX;
    pt.y = evt.clientY;
    const p = pt.matrixTransform(this.svg.getScreenCTM().inverse());
    return { x: p.x, y: p.y };
  }

  scale() { return this.svg.getScreenCTM().a; } // screen px per image px

  clampPoint(p) {
    return { x: Math.min(this.W, Math.max(0, p.x)), y: Math.min(this.H, Math.max(0, p.y)) };
  }

  // --- input ------------------------------------------------------------------------------
  bind() {
    this.svg.addEventListener("pointerdown", (e) => this.onDown(e));
    window.addEventListener("pointermove", (e) => this.onMove(e));
    window.addEventListener("pointerup", (e) => this.onUp(e));
    this.svg.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    document.addEventListener("keydown", (e) => this.onKey(e));
    document.addEventListener("keyup", (e) => { if (e.code === "Space") this.spaceDown = false; });
    this.root.querySelectorAll("[data-tag-id]").forEach((button) => {
      button.addEventListener("click", () => this.pickTag(Number(button.dataset.tagId)));
    });
    this.root.querySelector("[data-action=no-objects]")?.addEventListener("click",
      () => this.toggleNoObjects());
    this.root.querySelector("[data-action=reload]").addEventListener("click",
      () => window.location.reload());
    window.addEventListener("popstate", () => window.location.reload());
    window.addEventListener("beforeunload", (e) => {
      if (this.dirty || this.saving) { this.flush(); e.preventDefault(); }
    });
    this.root.querySelectorAll("[data-nav]").forEach((a) => {
      a.addEventListener("click", (e) => { e.preventDefault(); this.go(this.data[a.dataset.nav]); });
    });
  }

  onDown(e) {
    if (e.button !== 0 || this.conflicted) return;
    e.preventDefault();
    const p = this.toImage(e);
    const target = e.target;
    if (this.spaceDown) {
      this.drag = { kind: "pan", sx: e.clientX, sy: e.clientY, view: { ...this.view } };
    } else if (target.dataset.handle) {
      const i = Number(target.dataset.index);
      this.drag = { kind: "resize", index: i, corner: target.dataset.handle, start: p,
        orig: { ...this.boxes[i] }, before: this.snapshot() };
    } else if (target.dataset.index !== undefined) {
      const i = Number(target.dataset.index);
      this.select(i);
      this.drag = { kind: "move", index: i, start: p, orig: { ...this.boxes[i] },
        before: this.snapshot() };
    } else {
      this.drag = { kind: "draw", start: this.clampPoint(p), sx: e.clientX, sy: e.clientY };
    }
    this.svg.setPointerCapture?.(e.pointerId);
  }

  onMove(e) {
    const d = this.drag;
    if (!d) return;
    if (d.kind === "pan") {
      const k = this.view.w / this.svg.getBoundingClientRect().width;
      this.setView({ ...d.view, x: d.view.x - (e.clientX - d.sx) * k,
        y: d.view.y - (e.clientY - d.sy) * k });
      return;
    }
    const p = this.toImage(e);
    if (d.kind === "draw") {
      const q = this.clampPoint(p);
      d.rect = { x: Math.min(d.start.x, q.x), y: Math.min(d.start.y, q.y),
        w: Math.abs(q.x - d.start.x), h: Math.abs(q.y - d.start.y) };
      d.moved = Math.hypot(e.clientX - d.sx, e.clientY - d.sy) >= MIN_DRAG_SCREEN_PX;
    } else if (d.kind === "move") {
      const b = this.boxes[d.index];
      b.x = Math.min(this.W - d.orig.w, Math.max(0, d.orig.x + p.x - d.start.x));
      b.y = Math.min(this.H - d.orig.h, Math.max(0, d.orig.y + p.y - d.start.y));
      d.moved = true;
    } else if (d.kind === "resize") {
      const o = d.orig;
      const q = this.clampPoint(p);
      // The corner opposite the handle stays put; dragging past it flips the box.
      const fx = d.corner.includes("w") ? o.x + o.w : o.x;
      const fy = d.corner.includes("n") ? o.y + o.h : o.y;
      Object.assign(this.boxes[d.index], { x: Math.min(fx, q.x), y: Math.min(fy, q.y),
        w: Math.abs(q.x - fx), h: Math.abs(q.y - fy) });
      d.moved = true;
    }
    this.render(d.kind === "draw" ? d.rect : null);
  }

  onUp() {
    const d = this.drag;
    if (!d) return;
    this.drag = null;
    if (d.kind === "draw") {
      if (d.moved && d.rect && d.rect.w >= 1 && d.rect.h >= 1 && this.lastTagId !== null) {
        this.change(() => {
          this.boxes.push({ tagId: this.lastTagId, ...d.rect });
          this.selected = this.boxes.length - 1;
          this.clicked = false;
        });
      } else {
        this.select(-1);
      }
    } else if ((d.kind === "move" || d.kind === "resize") && d.moved) {
      const b = this.boxes[d.index];
      if (b.w < 1 || b.h < 1) {
        this.restore(d.before); // a box squashed under a pixel is not a box
      } else {
        this.undoStack.push(d.before);
        this.redoStack = [];
        this.scheduleSave();
      }
    }
    this.render();
  }

  onWheel(e) {
    e.preventDefault();
    const p = this.toImage(e);
    const factor = Math.exp(e.deltaY * 0.0015);
    const w = Math.min(this.W * 4, Math.max(this.W / 40, this.view.w * factor));
    const h = w * (this.view.h / this.view.w);
    // Keep the image point under the cursor where it is.
    this.setView({ x: p.x - (p.x - this.view.x) * (w / this.view.w),
      y: p.y - (p.y - this.view.y) * (h / this.view.h), w, h });
  }

  onKey(e) {
    if (document.querySelector("dialog[open]")) return; // the ? help is open (keymap-dialog.js)
    if (e.target.closest("input, textarea, select")) return;
    const ctrl = e.ctrlKey || e.metaKey;
    if (e.code === "Space") { this.spaceDown = true; e.preventDefault(); return; }
    if (ctrl && (e.key === "z" || e.key === "Z")) {
      e.preventDefault();
      if (e.shiftKey) this.redo(); else this.undo();
    } else if (ctrl && (e.key === "y" || e.key === "Y")) {
      e.preventDefault();
      this.redo();
    } else if (ctrl || e.altKey) {
      return;
    } else if (/^[1-9]$/.test(e.key)) {
      const tag = this.data.tags[Number(e.key) - 1];
      if (tag) this.pickTag(tag.id);
    } else if (e.key === "Delete" || e.key === "Backspace") {
      if (this.selected >= 0) {
        e.preventDefault();
        this.change(() => {
          this.boxes.splice(this.selected, 1);
          this.selected = -1;
          this.clicked = false;
        });
      }
    } else if (e.key === "Escape") {
      this.select(-1);
    } else if (e.key === "0") {
      this.toggleNoObjects();
    } else if (e.key === "f" || e.key === "F") {
      this.setView({ x: 0, y: 0, w: this.W, h: this.H });
    } else if (e.key === "n" || e.key === "N") {
      this.go(this.data.nextUntaggedUrl);
    } else if (e.key === "ArrowRight") {
      this.go(this.data.nextUrl);
    } else if (e.key === "ArrowLeft") {
      this.go(this.data.prevUrl);
    }
  }

  // --- edits ------------------------------------------------------------------------------
  snapshot() { return JSON.stringify(this.boxes); }

  restore(state) { this.boxes = JSON.parse(state); this.selected = -1; this.clicked = false; }

  change(edit) {
    this.undoStack.push(this.snapshot());
    this.redoStack = [];
    edit();
    this.render();
    this.scheduleSave();
  }

  undo() {
    if (!this.undoStack.length) return;
    this.redoStack.push(this.snapshot());
    this.restore(this.undoStack.pop());
    this.render();
    this.scheduleSave();
  }

  redo() {
    if (!this.redoStack.length) return;
    this.undoStack.push(this.snapshot());
    this.restore(this.redoStack.pop());
    this.render();
    this.scheduleSave();
  }

  // An explicit choice of a box (a click on it or on its line in the list), or -1 for none.
  select(i) { this.selected = i; this.clicked = i >= 0; this.render(); }

  toggleNoObjects() {
    if (this.conflicted) return;
    if (this.boxes.length) {
      this.setStatus("This image has boxes, so it has objects: delete them first.", "error");
      return;
    }
    this.noObjects = !this.noObjects;
    this.render();
    this.scheduleSave();
  }

  pickTag(tagId) {
    if (this.clicked && this.selected >= 0) {
      if (this.boxes[this.selected].tagId !== tagId) {
        this.change(() => { this.boxes[this.selected].tagId = tagId; });
      }
      return;
    }
    this.lastTagId = tagId;
    sessionStorage.setItem(this.tagKey(), String(tagId));
    this.render();
  }

  setView(v) { this.view = v; this.svg.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`); this.render(); }

  // --- saving -----------------------------------------------------------------------------
  scheduleSave() {
    if (this.conflicted) return;
    this.dirty = true;
    this.setStatus("Saving…");
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => this.flush(), SAVE_DELAY_MS);
  }

  async flush() {
    clearTimeout(this.saveTimer);
    while (this.saving) await this.saving; // one request at a time, in order
    if (!this.dirty || this.conflicted) return;
    this.dirty = false;
    this.saving = this.send().finally(() => { this.saving = null; });
    await this.saving;
  }

  async send() {
    const regions = this.boxes.map((b) => ({ tag_id: b.tagId, left: b.x / this.W,
      top: b.y / this.H, width: b.w / this.W, height: b.h / this.H }));
    let response;
    try {
      response = await fetch(this.data.saveUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json",
          "X-CSRFToken": csrfToken() },
        body: JSON.stringify({ version: this.version, regions,
          no_objects: this.noObjects && !regions.length }),
        keepalive: true,
      });
    } catch (err) {
      this.dirty = true;
      this.setStatus("Not saved: the server cannot be reached. Retrying…", "error");
      this.saveTimer = setTimeout(() => this.flush(), 2000);
      return;
    }
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      this.version = body.version;
      this.showCounts(body);
      if (!this.dirty) this.setStatus("Saved.", "ok");
    } else if (response.status === 409) {
      this.conflicted = true;
      this.setStatus("Not saved.", "error");
      const box = this.root.querySelector(".box-conflict");
      box.querySelector(".box-conflict-message").textContent = body.message
        || "Someone else changed this image. Reload to see their change.";
      box.hidden = false;
    } else {
      this.setStatus(body.message || "The boxes could not be saved.", "error");
    }
  }

  setStatus(text, kind = "muted") {
    this.status.textContent = text;
    this.status.className = `box-status ${kind}`;
  }

  async go(url) {
    if (!url) return;
    const navStart = performance.now();
    if (this.dirty || this.saving) await this.flush();
    if (this.conflicted) return;
    const ahead = this.prefetched?.get(url);
    let data = ahead ? await ahead : null;
    const fromPrefetch = Boolean(data);
    try {
      data = data || await fetchData(url);
    } catch (err) {
      // Let the server answer with its page (an error page, or the login form).
      sessionStorage.setItem(NAV_START_KEY, String(Date.now()));
      window.location.assign(url);
      return;
    }
    delete this.root.dataset.navMs;
    history.pushState({ boxEditor: true }, "", url);
    this.load(data);
    this.showImage(navStart);
    if (fromPrefetch) this.revalidate(url, data);
  }

  // Prefetched data may be seconds old: take the server's current boxes if nothing was edited
  // here yet (else the save's version check answers 409 with a Reload prompt), and always its
  // current neighbours.
  async revalidate(url, shown) {
    let fresh;
    try { fresh = await fetchData(url); } catch (err) { return; }
    if (this.data !== shown) return; // moved on meanwhile
    if (fresh.version !== shown.version && !this.dirty && !this.saving
        && !this.undoStack.length && !this.drag) {
      this.load(fresh);
      this.render();
    } else {
      this.showNeighbours(fresh);
    }
  }

  // --- drawing ----------------------------------------------------------------------------
  render(draft = null) {
    if (this.boxes.length) this.noObjects = false;
    const k = 1 / this.scale();
    const parts = [];
    this.boxes.forEach((b, i) => {
      const color = COLORS[(this.tagIndex.get(b.tagId) ?? 0) % COLORS.length];
      const sel = i === this.selected;
      parts.push(`<rect data-index="${i}" data-testid="box" class="box${sel ? " selected" : ""}"
        x="${b.x}" y="${b.y}" width="${b.w}" height="${b.h}" stroke="${color}"
        fill="${color}" fill-opacity="${sel ? 0.25 : 0.1}"/>`);
      if (sel) {
        const hs = HANDLE_SCREEN_PX * k;
        for (const [c, hx, hy] of [["nw", b.x, b.y], ["ne", b.x + b.w, b.y],
          ["sw", b.x, b.y + b.h], ["se", b.x + b.w, b.y + b.h]]) {
          parts.push(`<rect data-handle="${c}" data-index="${i}" class="box-handle handle-${c}"
            x="${hx - hs / 2}" y="${hy - hs / 2}" width="${hs}" height="${hs}"/>`);
        }
      }
    });
    if (draft) {
      parts.push(`<rect class="box draft" x="${draft.x}" y="${draft.y}" width="${draft.w}"
        height="${draft.h}"/>`);
    }
    this.layer.innerHTML = parts.join("");
    this.renderSide();
  }

  renderSide() {
    const tagName = (id) => this.data.tags[this.tagIndex.get(id)]?.name ?? "?";
    const list = this.root.querySelector(".box-list");
    list.replaceChildren(...this.boxes.map((b, i) => {
      const li = document.createElement("li");
      li.dataset.testid = "box-item";
      li.className = i === this.selected ? "selected" : "";
      li.textContent = `${tagName(b.tagId)} · ${Math.round(b.w)}×${Math.round(b.h)} px`;
      li.addEventListener("click", () => this.select(i));
      return li;
    }));
    this.root.querySelector("[data-testid=box-count]").textContent = String(this.boxes.length);
    const mark = this.root.querySelector("[data-action=no-objects]");
    if (mark) {
      mark.classList.toggle("active", this.noObjects);
      mark.setAttribute("aria-pressed", String(this.noObjects));
      mark.disabled = this.boxes.length > 0;
    }
    const retag = this.clicked && this.selected >= 0;
    const current = retag ? this.boxes[this.selected].tagId : this.lastTagId;
    this.root.querySelectorAll("[data-tag-id]").forEach((button) => {
      const id = Number(button.dataset.tagId);
      button.classList.toggle("active", id === current);
      button.setAttribute("aria-pressed", String(id === current));
    });
    const target = this.root.querySelector("[data-key-target]");
    if (target) {
      target.textContent = retag
        ? `Keys 1–9 retag the selected box (${tagName(current)}). Esc: back to the next box.`
        : `Keys 1–9 choose the tag of the next box: ${current === null ? "none" : tagName(current)}.`;
      target.dataset.mode = retag ? "selected-box" : "next-box";
    }
  }
}

async function fetchData(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return response.json();
}

function csrfToken() {
  try {
    return JSON.parse(document.body.getAttribute("hx-headers"))["x-csrftoken"];
  } catch (err) {
    return "";
  }
}

for (const root of document.querySelectorAll("[data-box-editor]")) {
  root.boxEditor = new BoxEditor(root);
}

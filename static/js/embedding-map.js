// The embedding map: every training image drawn at its 2-D layout position (Chart.js scatter on
// a canvas), coloured by tag or by review status; hover shows the thumbnail; a lasso selects a
// region, lists its thumbnails and tags all of them through the map's tag action (the gallery's
// bulk tagging service on the server). Wheel zooms around the pointer; in pan mode a drag moves
// the view (Shift+drag draws a lasso there too).
//
// Why Chart.js and not a WebGL scatter library: regl (under regl-scatterplot and Plotly's
// scattergl) compiles its draw calls with `new Function`, which Loupe's Content-Security-Policy
// (no 'unsafe-eval') refuses. Chart.js is already vendored, needs no eval, and draws 20,000
// points in a few milliseconds per frame when animations and parsing are off and redraws are
// coalesced into one per animation frame (bench/embedding_map.py measures the frame rate).
//
// Expects:
//   <section data-embedding-map data-points-url data-tag-url data-image-url=".../images/0/"
//            data-like-url="...?like=0">
//     [data-map-status] [data-map-toolbar] (buttons [data-map-mode="lasso|pan"], [data-map-reset],
//     select[data-map-colour], [data-map-count])
//     [data-map-stage] > canvas[data-map-canvas] + canvas[data-map-lasso]
//     [data-map-hover] > img[data-map-hover-img] [data-map-hover-caption] a[data-map-hover-open]
//                        a[data-map-hover-like]
//     [data-map-selection] > [data-map-selection-title] form[data-map-tag-form]
//                            (select[name=tag], [data-map-clear]) [data-map-notice] ul[data-map-thumbs]
//   </section>
/* global Chart */

const root = document.querySelector("[data-embedding-map]");
const $ = (selector) => root.querySelector(selector);
const statusLine = $("[data-map-status]");
const toolbar = $("[data-map-toolbar]");
const stage = $("[data-map-stage]");
const canvas = $("[data-map-canvas]");
const lassoCanvas = $("[data-map-lasso]");
const colourSelect = $("[data-map-colour]");
const hover = $("[data-map-hover]");
const selectionBox = $("[data-map-selection]");
const tagForm = $("[data-map-tag-form]");
const notice = $("[data-map-notice]");

const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
];
const UNTAGGED = "#9aa3ad";
const REVIEW = [
  { key: "mispredicted", label: "Mispredicted", colour: "#d62728" },
  { key: "suggested", label: "Has a suggestion", colour: "#ff9f1c" },
  { key: "untagged", label: "Untagged", colour: UNTAGGED },
  { key: "other", label: "Tagged, predicted right", colour: "#5b8fd9" },
];
const MAX_THUMBS = 48;
const HOVER_PX = 8;

let data = { points: [], tags: [] };
let selected = new Set();
let chart = null;
let view = { cx: 0, cy: 0, span: 2.2 }; // the visible height in layout units
let mode = "lasso";
let drawQueued = false;

function urlFor(template, id) {
  return template.replace(/\/0\/(?=[^/]*$)|=0$/, (match) => match.replace("0", String(id)));
}

// --- Categories and datasets --------------------------------------------------------------

function categoriesFor(point) {
  if (colourSelect.value === "review") {
    if (point.mispredicted) return "mispredicted";
    if (point.suggested) return "suggested";
    return point.tags.length ? "other" : "untagged";
  }
  if (!point.tags.length) return "untagged";
  return point.tags.length > 1 ? "several" : `tag-${point.tags[0]}`;
}

function legend() {
  if (colourSelect.value === "review") return REVIEW;
  const entries = data.tags.map((tag, i) => ({
    key: `tag-${tag.id}`, label: tag.name, colour: PALETTE[i % PALETTE.length],
  }));
  entries.push({ key: "several", label: "Several tags", colour: "#222" });
  entries.push({ key: "untagged", label: "Untagged", colour: UNTAGGED });
  return entries;
}

function datasets() {
  const entries = legend();
  const byKey = new Map(entries.map((entry) => [entry.key, []]));
  const chosen = [];
  for (const point of data.points) {
    const item = { x: point.x, y: point.y, id: point.id };
    byKey.get(categoriesFor(point))?.push(item);
    if (selected.has(point.id)) chosen.push(item);
  }
  const sets = entries
    .filter((entry) => byKey.get(entry.key).length)
    .map((entry) => ({
      label: `${entry.label} (${byKey.get(entry.key).length})`,
      data: byKey.get(entry.key),
      backgroundColor: entry.colour,
      pointRadius: 2.5,
      borderWidth: 0,
    }));
  showLegend(sets);
  sets.push({
    label: `Selected (${chosen.length})`, data: chosen, backgroundColor: "rgba(0,0,0,0)",
    borderColor: "#000", borderWidth: 1.5, pointRadius: 4, order: -1,
  });
  return sets;
}

function showLegend(sets) {
  const list = $("[data-map-legend]");
  list.replaceChildren(
    ...sets.map((set) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "map-swatch";
      swatch.style.backgroundColor = set.backgroundColor; // CSSOM: allowed by the CSP
      item.append(swatch, set.label);
      return item;
    }),
  );
}

// --- Drawing, zoom and pan ----------------------------------------------------------------

function applyView() {
  const ratio = stage.clientWidth / Math.max(1, stage.clientHeight);
  const x = chart.options.scales.x;
  const y = chart.options.scales.y;
  x.min = view.cx - (view.span * ratio) / 2;
  x.max = view.cx + (view.span * ratio) / 2;
  y.min = view.cy - view.span / 2;
  y.max = view.cy + view.span / 2;
}

// A full redraw (Chart.js lays out and paints every point) costs tens of milliseconds at 20,000
// points on a CPU-rendered canvas, too slow for every frame of a drag. So while the view moves,
// each frame paints the last full drawing moved and scaled (one drawImage), and the full redraw
// follows once the pointer rests for IDLE_MS: pan and zoom follow the hand at the display's
// frame rate, and the points are sharp again a moment after it stops (as map tiles do).
const IDLE_MS = 120;
const snapshot = document.createElement("canvas");
let snapView = null;
let idleTimer = 0;

function fullDraw() {
  drawQueued = false;
  clearTimeout(idleTimer);
  idleTimer = 0;
  applyView();
  chart.update("none");
  snapshot.width = canvas.width;
  snapshot.height = canvas.height;
  snapshot.getContext("2d").drawImage(canvas, 0, 0);
  snapView = { ...view };
}

function viewPixel(v, x, y) {
  // Where layout point (x, y) is drawn, in CSS pixels, when the view is `v`.
  const area = chart.chartArea;
  const ratio = stage.clientWidth / Math.max(1, stage.clientHeight);
  const width = v.span * ratio;
  return [
    area.left + ((x - (v.cx - width / 2)) / width) * (area.right - area.left),
    area.top + ((v.cy + v.span / 2 - y) / v.span) * (area.bottom - area.top),
  ];
}

function previewDraw() {
  drawQueued = false;
  if (!snapView) return fullDraw();
  const scale = snapView.span / view.span;
  const [fromX, fromY] = viewPixel(snapView, snapView.cx, snapView.cy);
  const [toX, toY] = viewPixel(view, snapView.cx, snapView.cy);
  const r = canvas.width / Math.max(1, canvas.clientWidth);
  const ctx = chart.ctx;
  ctx.save();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.setTransform(scale, 0, 0, scale, r * (toX - scale * fromX), r * (toY - scale * fromY));
  ctx.drawImage(snapshot, 0, 0);
  ctx.restore();
}

function requestDraw({ moving = false } = {}) {
  if (moving) {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(fullDraw, IDLE_MS);
  }
  if (!drawQueued) {
    drawQueued = true;
    requestAnimationFrame(() => (moving && idleTimer ? previewDraw() : fullDraw()));
  }
}

function settle() {
  // Pixel positions (lasso, hover) need the full drawing of the current view.
  if (idleTimer || drawQueued) fullDraw();
}

function build() {
  const scale = { type: "linear", display: false, grid: { display: false } };
  chart = new Chart(canvas, {
    type: "scatter",
    data: { datasets: datasets() },
    options: {
      animation: false,
      parsing: false,
      responsive: true,
      maintainAspectRatio: false,
      events: [], // the lasso canvas above takes the pointer; hover is computed here
      layout: { padding: 4 },
      scales: { x: { ...scale }, y: { ...scale } },
      plugins: {
        tooltip: { enabled: false },
        legend: { display: false }, // drawn as HTML beside the map: see showLegend
      },
    },
  });
  fullDraw();
}

function toPixel(point) {
  return [chart.scales.x.getPixelForValue(point.x), chart.scales.y.getPixelForValue(point.y)];
}

function zoomAt(px, py, factor) {
  // The value under the pointer, from the view itself (the scales lag behind while moving).
  const ratio = stage.clientWidth / Math.max(1, stage.clientHeight);
  const area = chart.chartArea;
  const vx = view.cx + ((px - (area.left + area.right) / 2) / (area.right - area.left)) * view.span * ratio;
  const vy = view.cy - ((py - (area.top + area.bottom) / 2) / (area.bottom - area.top)) * view.span;
  view.span = Math.min(20, Math.max(0.01, view.span * factor));
  // Keep the value under the pointer where it was.
  view.cx = vx + (view.cx - vx) * factor;
  view.cy = vy + (view.cy - vy) * factor;
  requestDraw({ moving: true });
}

function panBy(dx, dy) {
  const perPixel = view.span / Math.max(1, stage.clientHeight);
  view.cx -= dx * perPixel;
  view.cy += dy * perPixel;
  requestDraw({ moving: true });
}

// --- Pointer: lasso, pan, hover -----------------------------------------------------------

let gesture = null; // {kind: "lasso"|"pan", path: [[x, y]], last: [x, y], moved}

function stagePoint(event) {
  const box = lassoCanvas.getBoundingClientRect();
  return [event.clientX - box.left, event.clientY - box.top];
}

function drawLasso(path) {
  const ratio = window.devicePixelRatio || 1;
  if (lassoCanvas.width !== lassoCanvas.clientWidth * ratio) {
    lassoCanvas.width = lassoCanvas.clientWidth * ratio;
    lassoCanvas.height = lassoCanvas.clientHeight * ratio;
  }
  const ctx = lassoCanvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, lassoCanvas.clientWidth, lassoCanvas.clientHeight);
  if (path.length < 2) return;
  ctx.beginPath();
  ctx.moveTo(path[0][0], path[0][1]);
  for (const [x, y] of path.slice(1)) ctx.lineTo(x, y);
  ctx.closePath();
  ctx.fillStyle = "rgba(31, 91, 216, 0.12)";
  ctx.strokeStyle = "#1f5bd8";
  ctx.lineWidth = 1.5;
  ctx.fill();
  ctx.stroke();
}

function inside(path, x, y) {
  let hit = false;
  for (let i = 0, j = path.length - 1; i < path.length; j = i++) {
    const [xi, yi] = path[i];
    const [xj, yj] = path[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
  }
  return hit;
}

function nearestPoint(px, py) {
  let best = null;
  let bestDistance = HOVER_PX * HOVER_PX;
  for (const point of data.points) {
    const [x, y] = toPixel(point);
    const distance = (x - px) ** 2 + (y - py) ** 2;
    if (distance <= bestDistance) {
      best = point;
      bestDistance = distance;
    }
  }
  return best;
}

function tagNames(point) {
  const names = new Map(data.tags.map((tag) => [tag.id, tag.name]));
  return point.tags.map((id) => names.get(id)).join(", ") || "untagged";
}

function showHover(point) {
  if (!point) return;
  hover.hidden = false;
  const img = hover.querySelector("[data-map-hover-img]");
  if (point.thumb) img.src = point.thumb;
  img.alt = `Image ${point.id}`;
  img.hidden = !point.thumb;
  const notes = [tagNames(point)];
  if (point.mispredicted) notes.push("mispredicted");
  if (point.suggested) notes.push("has a suggestion");
  hover.querySelector("[data-map-hover-caption]").textContent = `Image ${point.id}: ${notes.join(" · ")} · `;
  hover.querySelector("[data-map-hover-open]").href = urlFor(root.dataset.imageUrl, point.id);
  hover.querySelector("[data-map-hover-like]").href = urlFor(root.dataset.likeUrl, point.id);
}

lassoCanvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  lassoCanvas.setPointerCapture(event.pointerId);
  settle();
  const at = stagePoint(event);
  const kind = mode === "lasso" || event.shiftKey ? "lasso" : "pan";
  gesture = { kind, path: [at], last: at, moved: 0 };
});

lassoCanvas.addEventListener("pointermove", (event) => {
  const at = stagePoint(event);
  if (!gesture) {
    if (!idleTimer) showHover(nearestPoint(...at));
    return;
  }
  gesture.moved += Math.abs(at[0] - gesture.last[0]) + Math.abs(at[1] - gesture.last[1]);
  if (gesture.kind === "pan") panBy(at[0] - gesture.last[0], at[1] - gesture.last[1]);
  else {
    gesture.path.push(at);
    drawLasso(gesture.path);
  }
  gesture.last = at;
});

function endGesture(event) {
  if (!gesture) return;
  settle();
  const done = gesture;
  gesture = null;
  drawLasso([]);
  if (done.moved < 4) {
    showHover(nearestPoint(...stagePoint(event))); // a click pins the image under the pointer
    return;
  }
  if (done.kind === "lasso" && done.path.length > 2) {
    const ids = data.points.filter((point) => inside(done.path, ...toPixel(point))).map((p) => p.id);
    select(new Set(ids));
  }
}
lassoCanvas.addEventListener("pointerup", endGesture);
lassoCanvas.addEventListener("pointercancel", () => {
  gesture = null;
  drawLasso([]);
});

lassoCanvas.addEventListener(
  "wheel",
  (event) => {
    event.preventDefault();
    zoomAt(...stagePoint(event), Math.exp(event.deltaY * 0.0015));
  },
  { passive: false },
);

for (const button of root.querySelectorAll("[data-map-mode]")) {
  button.addEventListener("click", () => setMode(button.dataset.mapMode));
}

function setMode(next) {
  mode = next;
  for (const button of root.querySelectorAll("[data-map-mode]")) {
    button.setAttribute("aria-pressed", String(button.dataset.mapMode === mode));
  }
  stage.classList.toggle("lasso-mode", mode === "lasso");
  stage.classList.toggle("pan-mode", mode === "pan");
}

$("[data-map-reset]").addEventListener("click", () => {
  view = { cx: 0, cy: 0, span: 2.2 };
  requestDraw();
});

colourSelect.addEventListener("change", () => {
  chart.data.datasets = datasets();
  requestDraw();
});

// --- Selection and tagging ----------------------------------------------------------------

function select(ids) {
  selected = ids;
  chart.data.datasets = datasets();
  requestDraw();
  notice.textContent = "";
  selectionBox.hidden = ids.size === 0;
  const title = $("[data-map-selection-title]");
  title.textContent = `${ids.size} image${ids.size === 1 ? "" : "s"} selected`;
  const list = $("[data-map-thumbs]");
  list.replaceChildren();
  const chosen = data.points.filter((point) => ids.has(point.id));
  for (const point of chosen.slice(0, MAX_THUMBS)) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = urlFor(root.dataset.imageUrl, point.id);
    link.title = `Image ${point.id}: ${tagNames(point)}`;
    link.dataset.testid = "map-thumb";
    if (point.thumb) {
      const img = document.createElement("img");
      img.src = point.thumb;
      img.alt = `Image ${point.id}`;
      img.loading = "lazy";
      link.append(img);
    } else link.textContent = `Image ${point.id}`;
    item.append(link);
    list.append(item);
  }
  if (chosen.length > MAX_THUMBS) {
    const more = document.createElement("li");
    more.className = "muted";
    more.textContent = `and ${chosen.length - MAX_THUMBS} more`;
    list.append(more);
  }
  if (ids.size) (tagForm?.querySelector("[data-map-tag-select]") ?? title).focus();
}

$("[data-map-clear]")?.addEventListener("click", () => select(new Set()));

tagForm?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = new FormData(tagForm);
  for (const id of selected) body.append("image_ids", String(id));
  const button = tagForm.querySelector("[type=submit]");
  button.disabled = true;
  try {
    const response = await fetch(root.dataset.tagUrl, {
      method: "POST",
      body,
      headers: { Accept: "application/json", "X-CSRFToken": body.get("csrfmiddlewaretoken") },
      credentials: "same-origin",
    });
    const answer = await response.json().catch(() => ({ error: "The server did not answer." }));
    if (!response.ok) {
      notice.textContent = answer.error || `Tagging failed (${response.status}).`;
      notice.className = "error";
      return;
    }
    await load(false);
    select(new Set());
    selectionBox.hidden = false;
    $("[data-map-selection-title]").textContent = "";
    notice.textContent = answer.notice;
    notice.className = "ok";
  } finally {
    button.disabled = false;
  }
});

// --- Loading ------------------------------------------------------------------------------

function describe(answer) {
  const count = answer.points.length;
  const stale = answer.status === "queued" || answer.status === "running";
  if (!count) {
    if (stale) return "Laying out the map… this page updates when it is done.";
    if (answer.status === "failed") return answer.failure_message;
    return "No images to place yet: upload some first.";
  }
  const note = stale ? " A new layout is being computed; the map updates when it is done." : "";
  const failed = answer.status === "failed" ? ` ${answer.failure_message}` : "";
  return `${count} images.${note}${failed}`;
}

async function load(poll = true) {
  const response = await fetch(root.dataset.pointsUrl, {
    headers: { Accept: "application/json" }, credentials: "same-origin",
  });
  if (!response.ok) {
    statusLine.textContent = `The map could not be loaded (${response.status}).`;
    return;
  }
  const answer = await response.json();
  data = answer;
  statusLine.textContent = describe(answer);
  $("[data-map-count]").textContent = `${answer.points.length} images`;
  const known = new Set(answer.points.map((point) => point.id));
  selected = new Set([...selected].filter((id) => known.has(id)));
  if (answer.points.length) {
    stage.hidden = false;
    toolbar.hidden = false;
    if (!chart) build();
    else {
      chart.data.datasets = datasets();
      requestDraw();
    }
    root.dataset.ready = "true";
  }
  if (poll && (answer.status === "queued" || answer.status === "running")) {
    setTimeout(() => load(true), 2000);
  }
}

setMode("lasso");
load();

// Probability and overlap sliders of the detection performance page: per-tag precision and
// recall and the mispredicted held-out images are recomputed here, in the browser, from the
// true boxes and detections the page embeds, so moving a slider never sends a request.
// Same rule as training.ml.detection_metrics.precision_recall_at (COCO's greedy matching): per
// image and tag, the detections with probability >= threshold, highest first (ties keep their
// stored order), each take the still-unmatched true box of their tag with the highest
// IoU >= the overlap threshold (on equal IoU the later box). A detection that takes none is a
// wrong box; a true box nobody took is a missed one.
// Expects:
//   <section data-detection-performance>
//     <input type="range" data-threshold> <output data-threshold-value>
//     <input type="range" data-overlap> <output data-overlap-value>
//     <form data-threshold-form><input type="hidden" data-threshold-input> <span data-threshold-saved></form>
//     [data-overall-precision] [data-overall-recall]
//     <td data-tag-precision="i"> <td data-tag-recall="i"> <td data-tag-found="i"> <td data-tag-wrong="i">
//   </section>
//   <div data-mispredicted> [data-mispredicted-count] <a data-mispredicted-gallery>
//   <script id="detection-performance-data" type="application/json">{tags, images: [{id, name,
//     url, gt: [[tag, l, t, w, h]], dets: [[tag, p, l, t, w, h]]}], boxes_url, id_placeholder}</script>
// Each mispredicted image links to the box editor with ?mispredicted=<iteration>&threshold=<t>
// &overlap=<o>: the editor walks the same set, computed on the server by the same rule
// (training.services.mispredicted), and its "back" returns here at those thresholds.

const MAX_MISPREDICTED = 60;
const SVG_NS = "http://www.w3.org/2000/svg";
const data = JSON.parse(document.getElementById("detection-performance-data").textContent);
const T = data.tags.length;
const fmt = (x) => x.toFixed(3);
// A precision with no box kept (threshold 1.00, say) is undefined: "—", not 0.000.
const fmtPrecision = (x, kept) => (kept ? fmt(x) : "—");

// IoU of two (left, top, width, height) boxes, with box_iou's operations in box_iou's order so
// the floating-point results are the same as numpy's.
function iou(a, b) {
  const iw = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const ih = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  const inter = Math.max(iw, 0) * Math.max(ih, 0);
  const union = a[2] * a[3] + b[2] * b[3] - inter;
  return union > 0 ? inter / union : 0;
}

// One image and tag: which kept detections found a true box. Returns {kept, hit, truths, taken}.
function matchTag(image, tag, threshold, overlap) {
  const truths = image.gt.filter((g) => g[0] === tag).map((g) => g.slice(1));
  const kept = image.dets.filter((d) => d[0] === tag && d[1] >= threshold)
    .sort((a, b) => b[1] - a[1]); // Array.prototype.sort is stable, like numpy's mergesort
  const taken = new Array(truths.length).fill(false);
  const hit = kept.map((det) => {
    const box = det.slice(2);
    let bestIou = Math.min(overlap, 1 - 1e-10);
    let best = -1;
    truths.forEach((truth, g) => {
      if (taken[g]) return;
      const value = iou(box, truth);
      if (value < bestIou) return;
      bestIou = value;
      best = g;
    });
    if (best >= 0) taken[best] = true;
    return best >= 0;
  });
  return { kept, hit, truths, taken };
}

export function figures(threshold, overlap) {
  const tp = new Array(T).fill(0), fp = new Array(T).fill(0), gt = new Array(T).fill(0);
  const wrongImages = [];
  for (const image of data.images) {
    let missed = 0, wrong = 0;
    const predicted = [];
    for (let tag = 0; tag < T; tag++) {
      const m = matchTag(image, tag, threshold, overlap);
      const found = m.hit.filter(Boolean).length;
      tp[tag] += found;
      fp[tag] += m.kept.length - found;
      gt[tag] += m.truths.length;
      missed += m.truths.length - found;
      wrong += m.kept.length - found;
      m.kept.forEach((det, k) => predicted.push({ det, hit: m.hit[k] }));
    }
    if (missed || wrong) wrongImages.push({ image, predicted, missed, wrong });
  }
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  const found = sum(tp), kept = found + sum(fp), truths = sum(gt);
  return {
    perTag: tp.map((t, j) => ({
      precision: t + fp[j] ? t / (t + fp[j]) : 0,
      recall: gt[j] ? t / gt[j] : 0,
      truePositives: t, falsePositives: fp[j], truths: gt[j],
    })),
    precision: kept ? found / kept : 0,
    kept,
    recall: truths ? found / truths : 0,
    wrongImages,
  };
}

function svgRect(box, className) {
  const rect = document.createElementNS(SVG_NS, "rect");
  const [left, top, width, height] = box;
  rect.setAttribute("x", left);
  rect.setAttribute("y", top);
  rect.setAttribute("width", width);
  rect.setAttribute("height", height);
  rect.setAttribute("class", className);
  rect.setAttribute("vector-effect", "non-scaling-stroke");
  return rect;
}

// The query naming this iteration's mispredicted set at the two thresholds (labeling.image_sets).
const setQuery = (threshold, overlap) => new URLSearchParams({
  [data.set_key]: String(data.iteration_id), threshold: String(threshold), overlap: String(overlap),
}).toString();

function imageCard({ image, predicted, missed, wrong }, query) {
  const card = document.createElement(image.id && data.boxes_url ? "a" : "div");
  card.className = "mispredicted-image detection";
  card.dataset.testid = "mispredicted-image";
  if (card.tagName === "A") {
    card.href = `${data.boxes_url.replace(data.id_placeholder, String(image.id))}?${query}`;
  }
  const figure = document.createElement("div");
  figure.className = "det-figure";
  const img = document.createElement("img");
  img.src = image.url;
  img.alt = image.name;
  img.loading = "lazy";
  // Boxes are fractions of the image: a unit viewBox stretched over it draws them in place.
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 1 1");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "det-overlay");
  for (const truth of image.gt) svg.append(svgRect(truth.slice(1), "det-true"));
  for (const { det, hit } of predicted) {
    svg.append(svgRect(det.slice(2), `det-predicted${hit ? "" : " det-wrong"}`));
  }
  figure.append(img, svg);
  const caption = document.createElement("span");
  const names = (boxes) => [...new Set(boxes.map((b) => data.tags[b[0]].name))].join(", ") || "none";
  caption.textContent = `${missed} missed · ${wrong} wrong · true: ${names(image.gt)}`;
  card.append(figure, caption);
  return card;
}

function render(threshold, overlap) {
  const result = figures(threshold, overlap);
  document.querySelector("[data-threshold-value]").textContent = threshold.toFixed(2);
  document.querySelector("[data-overlap-value]").textContent = overlap.toFixed(2);
  result.perTag.forEach((tag, j) => {
    const set = (name, text, value) => {
      const cell = document.querySelector(`[data-tag-${name}="${j}"]`);
      cell.textContent = text;
      if (value !== undefined) cell.dataset.value = String(value);
    };
    set("precision", fmtPrecision(tag.precision, tag.truePositives + tag.falsePositives), tag.precision);
    set("recall", fmt(tag.recall), tag.recall);
    set("found", `${tag.truePositives} of ${tag.truths}`);
    set("wrong", String(tag.falsePositives));
  });
  document.querySelector("[data-overall-precision]").textContent = fmtPrecision(result.precision, result.kept);
  document.querySelector("[data-overall-recall]").textContent = fmt(result.recall);
  const hidden = document.querySelector("[data-threshold-input]");
  if (hidden) hidden.value = String(threshold);
  document.querySelector("[data-mispredicted-count]").textContent = String(result.wrongImages.length);
  const query = setQuery(threshold, overlap);
  const gallery = document.querySelector("[data-mispredicted-gallery]");
  if (gallery) gallery.href = `${data.gallery_url}?${query}`;
  document.querySelector("[data-mispredicted]").replaceChildren(
    ...result.wrongImages.slice(0, MAX_MISPREDICTED).map((wrong) => imageCard(wrong, query)));
}

const slider = document.querySelector("[data-threshold]");
const overlapSlider = document.querySelector("[data-overlap]");
const update = () => render(Number(slider.value), Number(overlapSlider.value));
slider.addEventListener("input", update);
overlapSlider.addEventListener("input", update);
// Leaving for the editor or the gallery, the URL takes both thresholds, so the browser's Back
// returns to them too (set on leaving, not per move: Chromium refetches the favicon per change).
document.addEventListener("click", (event) => {
  if (!event.target.closest("[data-mispredicted] a, a[data-mispredicted-gallery]")) return;
  const url = new URL(window.location.href);
  url.searchParams.set("threshold", String(Number(slider.value)));
  url.searchParams.set("overlap", String(Number(overlapSlider.value)));
  history.replaceState(history.state, "", url);
});

const form = document.querySelector("[data-threshold-form]");
if (form) {
  // One POST when the user chooses to keep the threshold, never one per slider move.
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const saved = form.querySelector("[data-threshold-saved]");
    const response = await fetch(form.action, {
      method: "POST", body: new FormData(form), headers: { "X-Requested-With": "fetch" },
    });
    saved.textContent = response.ok ? `Saved ${Number(slider.value).toFixed(2)}.` : "Could not save the threshold.";
  });
}

update();

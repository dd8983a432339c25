// Threshold slider of the performance page: precision and recall per tag, the confusion matrix
// and the mispredicted images are recomputed here, in the browser, from the out-of-fold scores the
// page embeds, so moving the slider never sends a request. Same rule as
// training.ml.metrics.classification_metrics: a tag is predicted when its score >= threshold;
// multiclass predicts the best tag if its score >= threshold, else Negative (no tag). A precision
// with nothing predicted (threshold 1.00, say) is undefined: shown as "—", not as 0.000.
// Expects:
//   <section data-performance>
//     <input type="range" data-threshold> <output data-threshold-value>
//     <form data-threshold-form><input type="hidden" data-threshold-input> <span data-threshold-saved></form>
//     [data-overall-precision] [data-overall-recall] <td data-tag-precision="i"> <td data-tag-recall="i">
//   </section>
//   <canvas data-pr-chart> <canvas data-confusion-chart> <table data-confusion-table>
//   <div data-mispredicted> [data-mispredicted-count] <a data-mispredicted-gallery>
//   <script id="performance-data" type="application/json">{tags, images, multiclass, ...}</script>
// Each mispredicted image links to the editor with ?mispredicted=<iteration>&threshold=<t>: the
// editor then walks the same set, computed on the server by the same rule
// (training.services.mispredicted), and its "back" returns here at that threshold.

const MAX_MISPREDICTED = 60;
const MAX_CURVE_POINTS = 200;
const data = JSON.parse(document.getElementById("performance-data").textContent);
const T = data.tags.length;
const fmt = (x) => (x === null ? "—" : x.toFixed(3));

function predictedTags(scores, threshold) {
  if (data.multiclass) {
    let best = -1;
    for (let j = 0; j < T; j++) if (best < 0 || scores[j] > scores[best]) best = j;
    return best >= 0 && scores[best] >= threshold ? [best] : [];
  }
  const tags = [];
  for (let j = 0; j < T; j++) if (scores[j] >= threshold) tags.push(j);
  return tags;
}

export function figures(threshold) {
  const tp = new Array(T).fill(0), predicted = new Array(T).fill(0), positives = new Array(T).fill(0);
  for (const image of data.images) {
    for (let j = 0; j < T; j++) {
      const isPredicted = image.s[j] >= threshold;
      const isTrue = image.y.includes(j);
      if (isPredicted) predicted[j] += 1;
      if (isTrue) positives[j] += 1;
      if (isPredicted && isTrue) tp[j] += 1;
    }
  }
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  return {
    perTag: tp.map((t, j) => ({
      precision: predicted[j] ? t / predicted[j] : null,
      recall: positives[j] ? t / positives[j] : 0,
    })),
    precision: sum(predicted) ? sum(tp) / sum(predicted) : null,
    recall: sum(positives) ? sum(tp) / sum(positives) : 0,
  };
}

function confusion(threshold) {
  const matrix = Array.from({ length: T + 1 }, () => new Array(T + 1).fill(0));
  for (const image of data.images) {
    const truth = image.y.length ? image.y[0] : T;
    const guess = predictedTags(image.s, threshold);
    matrix[truth][guess.length ? guess[0] : T] += 1;
  }
  return matrix;
}

function mispredicted(threshold) {
  const wrong = [];
  for (const image of data.images) {
    const guess = predictedTags(image.s, threshold);
    const same = guess.length === image.y.length && guess.every((j) => image.y.includes(j));
    if (!same) wrong.push({ image, guess });
  }
  return wrong;
}

// No tag at all is what a Negative image has and what a prediction below the threshold says.
const NEGATIVE = "Negative";
const names = (indexes) => (indexes.length ? indexes.map((j) => data.tags[j].name).join(", ") : NEGATIVE);

// The query naming this iteration's mispredicted set at `threshold` (labeling.image_sets).
const setQuery = (threshold) => new URLSearchParams(
  { [data.set_key]: String(data.iteration_id), threshold: String(threshold) }).toString();

function renderMispredicted(threshold) {
  const grid = document.querySelector("[data-mispredicted]");
  const wrong = mispredicted(threshold);
  document.querySelector("[data-mispredicted-count]").textContent = String(wrong.length);
  const gallery = document.querySelector("[data-mispredicted-gallery]");
  if (gallery) gallery.href = `${data.gallery_url}?${setQuery(threshold)}`;
  grid.replaceChildren(...wrong.slice(0, MAX_MISPREDICTED).map(({ image, guess }) => {
    const cell = document.createElement(image.id && data.tag_url ? "a" : "div");
    cell.className = "mispredicted-image";
    cell.dataset.testid = "mispredicted-image";
    if (cell.tagName === "A") {
      cell.href = `${data.tag_url.replace(data.id_placeholder, String(image.id))}?${setQuery(threshold)}`;
    }
    const img = document.createElement("img");
    img.src = image.url;
    img.alt = image.name;
    img.loading = "lazy";
    const caption = document.createElement("span");
    caption.textContent = `predicted: ${names(guess)} · true: ${names(image.y)}`;
    cell.append(img, caption);
    return cell;
  }));
}

function renderConfusionTable(matrix) {
  const table = document.querySelector("[data-confusion-table]");
  if (!table) return;
  const labels = [...data.tags.map((t) => t.name), NEGATIVE];
  const max = Math.max(1, ...matrix.flat());
  const head = `<tr><th></th>${labels.map((l) => `<th>${escape(l)}</th>`).join("")}</tr>`;
  const rows = matrix.map((row, i) => `<tr><th>${escape(labels[i])}</th>${row.map((n) =>
    `<td>${n}</td>`).join("")}</tr>`);
  table.innerHTML = head + rows.join("");
  // Shading from script, not style="…" in the markup: the Content-Security-Policy refuses those.
  table.querySelectorAll("tr").forEach((tr, r) => {
    tr.querySelectorAll("td").forEach((td, j) => {
      const i = r - 1;
      td.style.background = `rgba(${i === j ? "31,138,76" : "210,60,60"}, ${(matrix[i][j] / max) * 0.6})`;
    });
  });
}

function escape(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span.innerHTML;
}

function prCurve(j) {
  const pairs = data.images.map((image) => [image.s[j], image.y.includes(j)]).sort((a, b) => b[0] - a[0]);
  const positives = pairs.filter((p) => p[1]).length;
  const points = [];
  let tp = 0;
  pairs.forEach(([score, isTrue], i) => {
    if (isTrue) tp += 1;
    const last = i === pairs.length - 1 || pairs[i + 1][0] !== score;
    if (last) points.push({ x: positives ? tp / positives : 0, y: tp / (i + 1) });
  });
  const step = Math.max(1, Math.ceil(points.length / MAX_CURVE_POINTS));
  return points.filter((_, i) => i % step === 0 || i === points.length - 1);
}

let confusionChart = null;

function drawCharts(threshold) {
  if (!window.Chart) return;
  const pr = document.querySelector("[data-pr-chart]");
  if (pr && !pr.chart) {
    pr.chart = new Chart(pr, {
      type: "scatter",
      data: { datasets: data.tags.map((tag, j) => ({ label: tag.name, data: prCurve(j), showLine: true, pointRadius: 0 })) },
      options: { animation: false, scales: { x: { title: { display: true, text: "Recall" }, min: 0, max: 1 },
                                             y: { title: { display: true, text: "Precision" }, min: 0, max: 1 } } },
    });
  }
  const canvas = document.querySelector("[data-confusion-chart]");
  if (!canvas) return;
  const matrix = confusion(threshold);
  renderConfusionTable(matrix);
  const labels = [...data.tags.map((t) => t.name), NEGATIVE];
  const max = Math.max(1, ...matrix.flat());
  const points = [];
  matrix.forEach((row, i) => row.forEach((n, j) => { if (n) points.push({ x: j, y: i, r: 4 + 20 * Math.sqrt(n / max), n }); }));
  if (confusionChart) {
    confusionChart.data.datasets[0].data = points;
    confusionChart.update("none");
    return;
  }
  // One tick per class at its integer position (the axis spans -0.5..T+0.5 to fit the bubbles).
  const tick = { callback: (v) => labels[v] ?? "" };
  const classTicks = (axis) => { axis.ticks = labels.map((_, i) => ({ value: i })); };
  confusionChart = new Chart(canvas, {
    type: "bubble",
    data: { datasets: [{ label: "images", data: points }] },
    options: {
      animation: false,
      plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `true ${labels[c.raw.y]}, predicted ${labels[c.raw.x]}: ${c.raw.n}` } } },
      scales: { x: { min: -0.5, max: T + 0.5, ticks: tick, afterBuildTicks: classTicks, title: { display: true, text: "Predicted" } },
                y: { min: -0.5, max: T + 0.5, reverse: true, ticks: tick, afterBuildTicks: classTicks, title: { display: true, text: "True" } } },
    },
  });
}

function render(threshold) {
  const result = figures(threshold);
  document.querySelector("[data-threshold-value]").textContent = threshold.toFixed(2);
  result.perTag.forEach((tag, j) => {
    document.querySelector(`[data-tag-precision="${j}"]`).textContent = fmt(tag.precision);
    document.querySelector(`[data-tag-recall="${j}"]`).textContent = fmt(tag.recall);
  });
  document.querySelector("[data-overall-precision]").textContent = fmt(result.precision);
  document.querySelector("[data-overall-recall]").textContent = fmt(result.recall);
  const hidden = document.querySelector("[data-threshold-input]");
  if (hidden) hidden.value = String(threshold);
  renderMispredicted(threshold);
  drawCharts(threshold);
}

const slider = document.querySelector("[data-threshold]");
slider.addEventListener("input", () => render(Number(slider.value)));
// Leaving for the editor or the gallery, the URL takes the threshold, so the browser's Back
// returns to it too (set on leaving, not per move: Chromium refetches the favicon per change).
document.addEventListener("click", (event) => {
  if (!event.target.closest("[data-mispredicted] a, a[data-mispredicted-gallery]")) return;
  const url = new URL(window.location.href);
  url.searchParams.set("threshold", String(Number(slider.value)));
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

render(Number(slider.value));

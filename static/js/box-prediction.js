// What a model predicted, beside the box editor: for an image opened from a performance page's
// mispredicted images (labeling.image_sets), its boxes are drawn dashed over the image, under
// the editable ones, and listed with their probabilities; the true boxes are the editor's own.
// Follows the editor from image to image through its "box-editor:load" event.
//
// Expects (templates/labeling/box_editor.html):
//   <div data-box-editor="ID-OF-JSON-SCRIPT"> <svg class="box-canvas"><g class="box-layer"/></svg>
//     <section data-box-prediction> <h2 data-prediction-title> <p data-prediction-summary>
//       <ul data-prediction-list> <p data-prediction-truth> </section>
//     [data-info=set]
//   </div>
//   editor data: {width, height, setLabel, prediction: {source, threshold, summary, trueLabels,
//     boxes: [{name, probability, left, top, width, height}]} | null}

const SVG_NS = "http://www.w3.org/2000/svg";
const PREDICTED = "#c25400"; // dashed orange: the performance page's colour for predicted boxes

const root = document.querySelector("[data-box-editor]");
const panel = root?.querySelector("[data-box-prediction]");

function layer() {
  let g = root.querySelector(".prediction-layer");
  if (!g) {
    g = document.createElementNS(SVG_NS, "g");
    g.setAttribute("class", "prediction-layer");
    g.setAttribute("pointer-events", "none"); // drawing and selecting stay the editor's
    root.querySelector(".box-layer").before(g);
  }
  return g;
}

function rect(box, width, height) {
  const r = document.createElementNS(SVG_NS, "rect");
  const attrs = {
    x: box.left * width, y: box.top * height, width: box.width * width,
    height: box.height * height, fill: "none", stroke: PREDICTED, "stroke-width": 2,
    "stroke-dasharray": "6 4", "vector-effect": "non-scaling-stroke", "data-testid": "predicted-box",
  };
  for (const [name, value] of Object.entries(attrs)) r.setAttribute(name, String(value));
  return r;
}

function show(data) {
  const prediction = data.prediction;
  const set = root.querySelector("[data-info=set]");
  if (set && data.setLabel) set.textContent = data.setLabel;
  const boxes = prediction ? prediction.boxes : [];
  layer().replaceChildren(...boxes.map((box) => rect(box, data.width, data.height)));
  panel.hidden = !prediction;
  if (!prediction) return;
  panel.querySelector("[data-prediction-title]").textContent =
    `${prediction.source} predicted (dashed), at threshold ${prediction.threshold.toFixed(2)}`;
  panel.querySelector("[data-prediction-summary]").textContent = prediction.summary;
  panel.querySelector("[data-prediction-list]").replaceChildren(...boxes.map((box) => {
    const li = document.createElement("li");
    li.dataset.testid = "predicted-box-item";
    li.textContent = `${box.name} · ${box.probability.toFixed(3)}`;
    return li;
  }));
  panel.querySelector("[data-prediction-truth]").textContent =
    `True when it trained: ${prediction.trueLabels.join(", ")}. The solid boxes are the labels now.`;
}

if (root && panel) {
  // The editor has loaded the page's own image before this module runs: start from its data.
  show(JSON.parse(document.getElementById(root.dataset.boxEditor).textContent));
  root.addEventListener("box-editor:load", (event) => show(event.detail));
}

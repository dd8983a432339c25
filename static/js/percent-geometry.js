/* Percent geometry from data- attributes: sizes and positions that come from the server, in
 * markup that may not carry style="…" (the Content-Security-Policy refuses inline styles).
 *
 *   <div class="progress"><div data-percent-width="40"></div></div>      (width: 40%)
 *   <span class="prediction-box" data-percent-box="10 20 30 40"></span>  (left top width height, %)
 *
 * Applied when the page loads and to every part htmx swaps in (htmx:load), so polled partials
 * (a dataset import's progress) keep their bars. Styles set from script are allowed by the CSP.
 */

const BOX = ["left", "top", "width", "height"];

function apply(root) {
  if (!(root instanceof Element) && root !== document) return;
  const select = (query) => [
    ...(root instanceof Element && root.matches(query) ? [root] : []),
    ...root.querySelectorAll(query),
  ];
  for (const element of select("[data-percent-width]")) {
    const value = Number.parseFloat(element.dataset.percentWidth);
    if (Number.isFinite(value)) element.style.width = `${Math.min(100, Math.max(0, value))}%`;
  }
  for (const element of select("[data-percent-box]")) {
    const values = element.dataset.percentBox.trim().split(/\s+/).map(Number.parseFloat);
    if (values.length !== BOX.length || !values.every(Number.isFinite)) continue;
    BOX.forEach((side, index) => { element.style[side] = `${values[index]}%`; });
  }
}

apply(document);
document.addEventListener("htmx:load", (event) => apply(event.target));

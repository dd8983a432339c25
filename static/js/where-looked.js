// "Where the model looked": lays a worker-computed Grad-CAM overlay (a translucent PNG) over a
// picture and toggles it. Expects (templates/components/_where_looked.html):
//   <div data-where-looked data-target="#stage-image">
//     <button data-where-looked-toggle data-overlay-url="/…/i12.png" aria-pressed="false">…</button>
//   </div>
// The overlay is an <img> placed in the picture's parent at the picture's box (kept in step
// by a ResizeObserver); positions are set through the CSSOM, which the CSP allows.
// A button rendered after a poll with data-auto-show opens at once (the user asked for it).

const OVERLAY_CLASS = "where-looked-overlay";

function pictureFor(box) {
  const selector = box.dataset.target;
  if (selector) {
    try {
      const found = document.querySelector(selector);
      if (found) return found;
    } catch (error) {
      // An invalid selector: fall through to the nearest picture.
    }
  }
  return null;
}

const SVG_NS = "http://www.w3.org/2000/svg";

// An SVG picture (the box editor's <image>): the overlay is an SVG <image> right after it, in
// the same user units, so it follows the editor's zoom and pan by itself.
function svgOverlayOf(picture, url) {
  let overlay = picture.parentNode.querySelector(`:scope > image.${OVERLAY_CLASS}`);
  if (!overlay || overlay.dataset.src !== url) {
    if (overlay) overlay.remove();
    overlay = document.createElementNS(SVG_NS, "image");
    overlay.setAttribute("class", OVERLAY_CLASS);
    overlay.setAttribute("data-testid", "where-looked-overlay");
    overlay.setAttribute("pointer-events", "none");
    overlay.setAttribute("preserveAspectRatio", "none");
    overlay.dataset.src = url;
    for (const name of ["x", "y", "width", "height"]) {
      overlay.setAttribute(name, picture.getAttribute(name) || "0");
    }
    overlay.setAttribute("href", url);
    picture.after(overlay);
  }
  return overlay;
}

function place(overlay, picture) {
  overlay.style.left = `${picture.offsetLeft}px`;
  overlay.style.top = `${picture.offsetTop}px`;
  overlay.style.width = `${picture.offsetWidth}px`;
  overlay.style.height = `${picture.offsetHeight}px`;
}

function overlayOf(picture, url) {
  const host = picture.parentElement;
  let overlay = host.querySelector(`:scope > img.${OVERLAY_CLASS}`);
  if (!overlay || overlay.dataset.src !== url) {
    if (overlay) overlay.remove();
    overlay = document.createElement("img");
    overlay.className = OVERLAY_CLASS;
    overlay.alt = "";
    overlay.dataset.src = url;
    overlay.dataset.testid = "where-looked-overlay";
    overlay.setAttribute("data-testid", "where-looked-overlay");
    overlay.hidden = true;
    overlay.src = url;
    host.classList.add("where-looked-host");
    host.appendChild(overlay);
    new ResizeObserver(() => place(overlay, picture)).observe(picture);
  }
  place(overlay, picture);
  return overlay;
}

function setShown(button, shown) {
  const box = button.closest("[data-where-looked]");
  const picture = box && pictureFor(box);
  if (!picture) return;
  if (picture instanceof SVGElement) {
    const overlay = svgOverlayOf(picture, button.dataset.overlayUrl);
    overlay.setAttribute("display", shown ? "inline" : "none");
  } else {
    const overlay = overlayOf(picture, button.dataset.overlayUrl);
    overlay.hidden = !shown;
  }
  button.setAttribute("aria-pressed", shown ? "true" : "false");
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-where-looked-toggle]");
  if (!button) return;
  setShown(button, button.getAttribute("aria-pressed") !== "true");
});

function autoShow(root) {
  for (const button of root.querySelectorAll("[data-where-looked-toggle][data-auto-show]")) {
    button.removeAttribute("data-auto-show");
    setShown(button, true);
  }
}

document.addEventListener("htmx:afterSettle", () => autoShow(document));
// A navigation inside the page (htmx) replaces the picture: drop overlays of the old one.
document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail && event.detail.target;
  if (target && target.querySelectorAll && !target.matches("[data-where-looked]")) {
    for (const overlay of target.querySelectorAll(`img.${OVERLAY_CLASS}`)) overlay.remove();
  }
});
autoShow(document);

// The box editor moves between images without reloading (its "box-editor:load" event, which
// does not bubble: caught on the way down): drop the old image's overlay and ask for the new
// image's state of the same iteration.
document.addEventListener("box-editor:load", (event) => {
  const root = event.target;
  const imageId = event.detail && event.detail.imageId;
  for (const overlay of root.querySelectorAll(`.${OVERLAY_CLASS}`)) overlay.remove();
  const box = root.querySelector("[data-where-looked][data-url]");
  if (!box || !imageId || !window.htmx) return;
  const url = new URL(box.dataset.url, window.location.href);
  if (url.searchParams.get("image") === String(imageId)) return;
  url.searchParams.set("image", String(imageId));
  url.searchParams.set("target", box.dataset.target || "");
  window.htmx.ajax("GET", url.pathname + url.search, { target: box, swap: "outerHTML" });
}, true);

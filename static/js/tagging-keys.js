// Keyboard shortcuts of the tagging view (templates/labeling/tagging.html). Expects:
//
//   <div data-tagging-keys data-multiclass="true|false">
//     <input type="checkbox" id="auto-advance" data-remember="loupe.autoAdvance">  (multiclass)
//     <button data-keymap-toggle>   <div id="keymap" hidden>…</div>
//     <div id="tagging-stage" data-preload="url url" [data-conflict]>   (swapped by htmx)
//       <form id="tag-form"> <button data-key="1">…</button> … </form>
//       <a data-nav="next|previous|next-untagged">  <button data-action="delete">
//
// Keys: 1–9 press the tag button with that key, → / ← / U follow the nav links, Delete presses
// the delete button (htmx asks to confirm), ? toggles the keymap. The buttons and links do the
// work (htmx requests), so keyboard and mouse share one path. While a request is in flight the
// next key is dropped: a tag key must never land on an image the user has not seen yet.
const root = document.querySelector("[data-tagging-keys]");

if (root) {
  const keymap = document.getElementById("keymap");
  let busy = false;

  const stage = () => document.getElementById("tagging-stage");

  function preloadNeighbours() {
    // The next image's bytes are fetched while the user looks at this one; the swap that shows
    // it then decodes from memory instead of waiting on the network.
    const urls = (stage()?.dataset.preload || "").split(" ").filter(Boolean);
    for (const url of urls) {
      const img = new Image();
      img.decoding = "async";
      img.src = url;
    }
  }

  function rememberCheckbox(box) {
    const key = box.dataset.remember;
    const stored = localStorage.getItem(key);
    if (stored !== null) box.checked = stored === "true";
    box.addEventListener("change", () => localStorage.setItem(key, String(box.checked)));
  }

  function toggleKeymap(show) {
    keymap.hidden = show === undefined ? !keymap.hidden : !show;
  }

  function press(selector) {
    const el = stage()?.querySelector(selector);
    if (!el || el.disabled || el.closest("fieldset:disabled")) return false;
    el.click();
    return true;
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input:not([type=checkbox]), textarea, select, [contenteditable]")) return;
    if (event.key === "?") {
      toggleKeymap();
    } else if (event.key === "Escape") {
      toggleKeymap(false);
    } else if (busy || stage()?.hasAttribute("data-conflict")) {
      return;
    } else if (/^[1-9]$/.test(event.key)) {
      press(`#tag-form button[data-key="${event.key}"]`);
    } else if (event.key === "ArrowRight") {
      press('[data-nav="next"]');
    } else if (event.key === "ArrowLeft") {
      press('[data-nav="previous"]');
    } else if (event.key === "u" || event.key === "U") {
      press('[data-nav="next-untagged"]');
    } else if (event.key === "Delete") {
      press('[data-action="delete"]');
    } else {
      return;
    }
    event.preventDefault();
  }

  const inStage = (event) => event.detail.target?.id === "tagging-stage";

  document.addEventListener("keydown", onKey);
  for (const toggle of root.querySelectorAll("[data-keymap-toggle]")) {
    toggle.addEventListener("click", () => toggleKeymap());
  }
  for (const box of root.querySelectorAll("input[data-remember]")) rememberCheckbox(box);
  document.body.addEventListener("htmx:beforeRequest", (event) => { if (inStage(event)) busy = true; });
  document.body.addEventListener("htmx:afterRequest", (event) => { if (inStage(event)) busy = false; });
  document.body.addEventListener("htmx:beforeSwap", (event) => {
    // The stage answers refusals (403, 404) with itself and a message: show it.
    const status = event.detail.xhr.status;
    if (inStage(event) && (status === 403 || status === 404)) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.body.addEventListener("htmx:afterSettle", (event) => {
    if (event.detail.target?.id === "tagging-stage" || event.detail.elt?.id === "tagging-stage") {
      preloadNeighbours();
    }
  });
  preloadNeighbours();
}

// Multi-select in the gallery (templates/labeling/gallery.html). Expects:
//
//   <div data-gallery-select>                       (may be swapped by htmx as a whole)
//     <form id="bulk-form" data-bulk-form>
//       <input type="checkbox" data-select-all>  <span data-selected-count>
//       <button data-bulk-action hx-post=…>…</button>
//     </form>
//     <section id="image-grid">                      (swapped by htmx after a bulk action)
//       <input type="checkbox" class="thumb-check" form="bulk-form" name="image_ids" value="…">
//
// Click toggles one image, shift-click sets the whole range since the last click to the same
// state, "select all" toggles the page. The bulk buttons are enabled only with a selection.
let lastClicked = null;

const checks = () => [...document.querySelectorAll("#image-grid .thumb-check")];

function refresh() {
  const all = checks();
  const selected = all.filter((box) => box.checked).length;
  const count = document.querySelector("[data-selected-count]");
  if (count) count.textContent = `${selected} selected`;
  for (const button of document.querySelectorAll("[data-bulk-action]")) button.disabled = !selected;
  const selectAll = document.querySelector("[data-select-all]");
  if (selectAll) {
    selectAll.checked = selected > 0 && selected === all.length;
    selectAll.indeterminate = selected > 0 && selected < all.length;
  }
  for (const box of all) box.closest(".thumb")?.classList.toggle("selected", box.checked);
}

document.addEventListener("click", (event) => {
  const box = event.target.closest?.(".thumb-check");
  if (!box) return;
  const all = checks();
  if (event.shiftKey && lastClicked && all.includes(lastClicked)) {
    const [from, to] = [all.indexOf(lastClicked), all.indexOf(box)].sort((a, b) => a - b);
    for (const other of all.slice(from, to + 1)) other.checked = box.checked;
  }
  lastClicked = box;
  refresh();
});

document.addEventListener("change", (event) => {
  if (event.target.matches?.("[data-select-all]")) {
    for (const box of checks()) box.checked = event.target.checked;
    lastClicked = null;
  }
  refresh();
});

document.body.addEventListener("htmx:beforeSwap", (event) => {
  // A refused bulk action (403, 404, 422) answers with the grid and its message: show it.
  const status = event.detail.xhr.status;
  if (event.detail.requestConfig?.elt?.closest("[data-bulk-form]") && [403, 404, 422].includes(status)) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

document.body.addEventListener("htmx:afterSettle", () => {
  lastClicked = null;
  refresh();
});

refresh();

// Predictions tab: count the ticked thumbnails and enable the triage buttons.
//
// Expects:
//   <form id="triage-form" data-prediction-select>
//     <span data-selected-count>0 selected</span>
//     <button data-needs-selection disabled>Review selected</button>
//   </form>
//   <input type="checkbox" name="image_ids" form="triage-form">  (anywhere, also in htmx swaps)
const form = document.querySelector("[data-prediction-select]");

function refresh() {
  if (!form) return;
  const ticked = document.querySelectorAll(`input[name="image_ids"][form="${form.id}"]:checked`).length;
  const counter = form.querySelector("[data-selected-count]");
  if (counter) counter.textContent = `${ticked} selected`;
  form.querySelectorAll("[data-needs-selection]").forEach((button) => {
    button.disabled = ticked === 0;
  });
}

document.addEventListener("change", (event) => {
  if (event.target.matches?.('input[name="image_ids"]')) refresh();
});
document.addEventListener("htmx:afterSwap", refresh);
refresh();

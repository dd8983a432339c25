// The Train form (templates/training/train.html): the budget only means something for advanced
// training, so it is disabled (and says why) while "Quick" is chosen. Expects:
//
//   <form data-train-form>
//     <input type="radio" name="training_type" value="quick">
//     <input type="radio" name="training_type" value="advanced">
//     <input type="number" name="budget_minutes" data-budget>
//     <span data-budget-note></span>
//   </form>
//
// Without JavaScript the field stays enabled and the server ignores it for quick training.

function sync(form) {
  const budget = form.querySelector("[data-budget]");
  const note = form.querySelector("[data-budget-note]");
  const checked = form.querySelector("input[name=training_type]:checked");
  const isQuick = !checked || checked.value === "quick";
  budget.disabled = isQuick;
  if (note) note.hidden = !isQuick;
}

document.querySelectorAll("[data-train-form]").forEach((form) => {
  form.addEventListener("change", (event) => {
    if (event.target.name === "training_type") sync(form);
  });
  sync(form);
});

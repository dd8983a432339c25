// Tagging view, prediction panel: one key for the panel's main action.
//   S  "Save and close" a stored prediction   <button data-save-close>
//   A  accept the suggested tags              <button data-suggestion-accept>
// The buttons are looked up at key time, so the panel may be swapped in by htmx (the listener
// is registered once: a module runs once per page however often its <script> is swapped in).
const KEYS = { s: "[data-save-close]", a: "[data-suggestion-accept]" };

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest?.("input, textarea, select, [contenteditable]")) return;
  const selector = KEYS[event.key.toLowerCase()];
  const button = selector && document.querySelector(selector);
  if (!button || button.disabled) return;
  event.preventDefault();
  button.click();
});

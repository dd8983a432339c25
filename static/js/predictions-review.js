// Tagging view, prediction panel: one key for each of the panel's actions.
//   S  "Save and close" / "Save and next" a stored prediction   <button data-save-close>
//   D  dismiss the stored prediction under review                 <button data-dismiss-prediction>
//   A  accept the suggested tags                                  <button data-suggestion-accept>
// The buttons are looked up at key time, so the panel may be swapped in by htmx (the listener
// is registered once: a module runs once per page however often its <script> is swapped in).
//
// A tag key just before S is still on its way to the server (an htmx request on the tag form):
// S waits for it, so the image is saved into the training data with the tag the reviewer chose.
const KEYS = { s: "[data-save-close]", d: "[data-dismiss-prediction]", a: "[data-suggestion-accept]" };

function whenIdle(run) {
  if (!document.querySelector(".htmx-request")) {
    run();
    return;
  }
  document.body.addEventListener("htmx:afterRequest", () => setTimeout(() => whenIdle(run), 0),
    { once: true });
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (document.querySelector("dialog[open]")) return; // the ? help is open: keys act on nothing
  if (event.target.closest?.("input, textarea, select, [contenteditable]")) return;
  const selector = KEYS[event.key.toLowerCase()];
  const button = selector && document.querySelector(selector);
  if (!button || button.disabled) return;
  event.preventDefault();
  whenIdle(() => {
    button.click();
    button.disabled = true; // a second S must not post the same decision again
  });
});

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

// Requests in flight, counted from htmx's events: beforeSend (a request really sent, past
// hx-confirm and hx-sync) and afterRequest (it reaches the body even when the requesting element
// was swapped out, and also ends failed requests). Not the .htmx-request class: during the settle after an outerHTML
// swap htmx puts the old element's classes, htmx-request included, on the new one for ~20 ms.
let inFlight = 0;
let waiting = [];
document.body.addEventListener("htmx:beforeSend", () => { inFlight += 1; });
document.body.addEventListener("htmx:afterRequest", () => {
  inFlight = Math.max(0, inFlight - 1);
  if (inFlight) return;
  const ready = waiting;
  waiting = [];
  for (const run of ready) run();
});

function whenIdle(run) {
  if (inFlight) waiting.push(run); else run();
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

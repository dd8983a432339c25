// Busy form: while a plain (full-page) form submission runs, its button is disabled and a
// spinner says so, so a slow request (the quick test runs a model, perhaps fetches a URL) is
// neither clicked twice nor taken for a dead button.
//
// The HTML it expects (templates/predictions/quick_test.html):
//
//   <form method="post" data-busy-form>
//     ...
//     <button type="submit" data-busy-button>Predict</button>
//     <span role="status" data-busy-indicator hidden><span class="spinner"></span> Running…</span>
//   </form>

function setBusy(form, busy) {
  for (const button of form.querySelectorAll("[data-busy-button]")) {
    button.disabled = busy;
    button.setAttribute("aria-busy", String(busy));
  }
  for (const indicator of form.querySelectorAll("[data-busy-indicator]")) {
    indicator.hidden = !busy;
  }
}

for (const form of document.querySelectorAll("[data-busy-form]")) {
  form.addEventListener("submit", (event) => {
    // Another script may have taken the submission over, or the browser refused it as invalid.
    if (event.defaultPrevented) return;
    setBusy(form, true);
  });
}

// Back to this page from the result (bfcache): the form is idle again.
window.addEventListener("pageshow", () => {
  for (const form of document.querySelectorAll("[data-busy-form]")) setBusy(form, false);
});

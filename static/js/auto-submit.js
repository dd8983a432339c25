/* Auto-submit: a form is sent as soon as one of its marked controls changes (filter bars).
 *
 *   <form method="get">
 *     <select name="sort" data-auto-submit>…</select>
 *     <noscript><button type="submit">Show</button></noscript>
 *   </form>
 *
 * Replaces inline `onchange="this.form.submit()"`, which the Content-Security-Policy refuses.
 * Listens on the document, so controls that arrive in an htmx swap work too.
 */

document.addEventListener("change", (event) => {
  const control = event.target instanceof Element ? event.target.closest("[data-auto-submit]") : null;
  const form = control?.form;
  if (!form) return;
  if (typeof form.requestSubmit === "function") form.requestSubmit();
  else form.submit();
});

// htmx settings shared by every page: 422 answers carry a re-rendered form and are swapped in
// (htmx 2 ignores 4xx bodies by default), other errors are shown, not silently dropped.
//
// Content-Security-Policy (script-src/style-src 'self', no 'unsafe-eval' or 'unsafe-inline'):
// set at once, before htmx's own DOMContentLoaded start (this file is deferred right after
// htmx): no injected <style> for .htmx-indicator (no template uses indicators; one that does
// styles them in loupe.css), and no eval, which hx-on, hx-vals="js:…" and hx-trigger event
// filters ("click[ctrlKey]") would need: Loupe uses none of them.
if (window.htmx) {
  htmx.config.includeIndicatorStyles = false;
  htmx.config.allowEval = false;
}

document.addEventListener("DOMContentLoaded", () => {
  if (!window.htmx) return;
  htmx.config.responseHandling = [
    { code: "204", swap: false },
    { code: "[23]..", swap: true },
    { code: "422", swap: true },
    { code: "409", swap: true, error: false },
    { code: "[45]..", swap: false, error: true },
  ];
});

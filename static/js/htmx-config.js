// htmx settings shared by every page: 422 answers carry a re-rendered form and are swapped in
// (htmx 2 ignores 4xx bodies by default), other errors are shown, not silently dropped.
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

// The iteration switcher of the performance pages (templates/training/_performance_header.html):
// choosing an iteration opens its page at once; the Show button is for use without JavaScript.
// Expects:
//   <form data-iteration-switcher> <select name="iteration"> <button data-switcher-button> </form>

document.querySelectorAll("[data-iteration-switcher]").forEach((form) => {
  const button = form.querySelector("[data-switcher-button]");
  if (button) button.style.display = "none"; // not `hidden`: the button rule sets display
  form.querySelector("select").addEventListener("change", () => form.requestSubmit());
});

// Keyboard for the "Possible mislabels" queue: a key clicks the control that names it.
// Expects:
//   <section data-mislabel-keys>
//     <button data-key="a">Accept</button> <button data-key="k">Keep</button> <a data-key="e">Open</a>
//   </section>
// Keys typed into a field, or with Ctrl/Alt/Meta, are left alone.
const root = document.querySelector("[data-mislabel-keys]");
if (root) {
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.altKey || event.metaKey || event.repeat) return;
    const target = event.target;
    if (target instanceof Element && target.closest("input, textarea, select, [contenteditable]")) return;
    const control = root.querySelector(`[data-key="${CSS.escape(event.key.toLowerCase())}"]`);
    if (control) {
      event.preventDefault();
      control.click();
    }
  });
}

// The "?" key help of a keyboard page (tagging, review, box editor): one modal dialog, opened
// and closed by ? or by a toggle button; Esc closes it (the browser's own dialog behaviour).
//
// Expects:
//   <button type="button" data-keymap-toggle aria-controls="keymap">Keys <kbd>?</kbd></button>
//   <dialog id="keymap" data-keymap> … <form method="dialog"><button>Close</button></form></dialog>
//
// While the dialog is open the page's own keys must not act behind it: the other key modules
// return early when `dialog[open]` exists. Closing gives focus back to where it was.
const dialog = document.querySelector("dialog[data-keymap]");

if (dialog) {
  let opener = null;

  const toggle = () => {
    if (dialog.open) {
      dialog.close();
      return;
    }
    opener = document.activeElement;
    dialog.showModal();
  };

  document.addEventListener("keydown", (event) => {
    if (event.key !== "?" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest?.("input:not([type=checkbox]), textarea, select, [contenteditable]")) return;
    event.preventDefault();
    toggle();
  });
  for (const button of document.querySelectorAll("[data-keymap-toggle]")) {
    button.addEventListener("click", toggle);
  }
  dialog.addEventListener("close", () => {
    if (opener?.isConnected) opener.focus();
    opener = null;
  });
}

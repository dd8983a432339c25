/* Copy button: copies the text of another element to the clipboard and says so.
 *
 *   <code id="key-secret">lpk_…</code>
 *   <button type="button" data-copy="key-secret">Copy</button>
 *   <span data-copy-status="key-secret" aria-live="polite"></span>   (optional: announces it)
 *
 * The Clipboard API needs a secure context (https or localhost). Loupe served over plain http
 * on a LAN address has none: the text is then selected and copied with execCommand, or left
 * selected for Ctrl+C when even that is refused. Listens on the document, so buttons that
 * arrive in an htmx swap work too.
 */

const RESET_MS = 2000;

function selectContents(element) {
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

async function copyText(element) {
  const text = element.textContent.trim();
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Refused (permission, focus): fall back to the selection below.
    }
  }
  selectContents(element);
  try {
    return document.execCommand("copy");
  } catch {
    return false;
  }
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  button.dataset.label ??= button.textContent;
  const copied = await copyText(source);
  button.textContent = copied ? "Copied" : "Press Ctrl+C";
  const status = document.querySelector(`[data-copy-status="${button.dataset.copy}"]`);
  if (status) status.textContent = copied ? "Copied" : "Selected: press Ctrl+C to copy";
  clearTimeout(Number(button.dataset.resetTimer));
  button.dataset.resetTimer = String(
    setTimeout(() => {
      button.textContent = button.dataset.label;
    }, RESET_MS),
  );
});

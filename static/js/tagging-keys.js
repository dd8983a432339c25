// Keyboard shortcuts of the tagging view (templates/labeling/tagging.html). Expects:
//
//   <div data-tagging-keys data-multiclass="true|false">
//     <input type="checkbox" id="auto-advance" data-remember="loupe.autoAdvance">  (multiclass)
//     <p id="save-status" hidden></p>
//   (sets data-pending-saves="<n>" and data-next-stage="pending|ready" on the root element)
//     <button data-keymap-toggle>   <div id="keymap" hidden>…</div>
//     <div id="tagging-stage" data-preload="url url" data-image-url="…">   (swapped by htmx)
//       <form id="tag-form" [data-conflict]> <button data-key="1">…</button> … </form>
//       <a data-nav="next|previous|next-untagged">  <button data-action="delete">
//
// Keys: 1–9 press the tag button with that key, → / ← / U follow the nav links, Delete presses
// the delete button (htmx asks to confirm), ? toggles the keymap.
//
// Speed (goal: key press to next image ≤ 100 ms): the next image's file and its stage (HTML
// partial) are fetched while the user looks at the current one. A multiclass tag key with
// auto-advance then sends the save and shows the fetched stage at once, without waiting for the
// save; a save that fails (EditConflict: someone else changed that image) is reported in
// #save-status with a link back to the image, so nothing is overwritten silently. Without a
// fetched stage the key falls back to one htmx request (save + next image, server-side).
// While an htmx request on the stage is in flight further keys are dropped: a tag key must never
// land on an image the user has not seen yet.
const root = document.querySelector("[data-tagging-keys]");

if (root) {
  const keymap = document.getElementById("keymap");
  const saveStatus = document.getElementById("save-status");
  const isMulticlass = root.dataset.multiclass === "true";
  const STAGE_MAX_AGE_MS = 30_000; // an older fetched stage may show stale tags: fetch again
  const stages = new Map(); // url -> {html, at}
  let busy = false;
  let pendingSaves = 0;

  // Back/forward must never show a stage from a stale snapshot: reload the page instead.
  if (window.htmx) {
    htmx.config.historyCacheSize = 0;
    htmx.config.refreshOnHistoryMiss = true;
  }

  const stage = () => document.getElementById("tagging-stage");
  const navUrl = (name) => stage()?.querySelector(`[data-nav="${name}"]`)?.getAttribute("href");

  function preloadNeighbours() {
    for (const url of (stage()?.dataset.preload || "").split(" ").filter(Boolean)) {
      const img = new Image();
      img.decoding = "async";
      img.src = url;
    }
    const next = navUrl("next");
    for (const url of stages.keys()) if (url !== next) stages.delete(url);
    if (next && !stages.has(next)) fetchStage(next);
  }

  function fetchStage(url) {
    stages.set(url, null);
    root.dataset.nextStage = "pending";
    fetch(url, { headers: { "HX-Request": "true", "HX-Target": "tagging-stage" } })
      .then((response) => (response.ok ? response.text() : null))
      .then((html) => {
        if (!html || !stages.has(url)) return;
        stages.set(url, { html, at: Date.now() });
        if (url === navUrl("next")) root.dataset.nextStage = "ready";
      })
      .catch(() => stages.delete(url));
  }

  function readyStage(url) {
    const entry = url && stages.get(url);
    return entry && Date.now() - entry.at < STAGE_MAX_AGE_MS ? entry.html : null;
  }

  function showStage(url, html) {
    htmx.swap(stage(), html, { swapStyle: "outerHTML", swapDelay: 0, settleDelay: 0 });
    history.pushState({}, "", url);
    stages.delete(url);
    preloadNeighbours();
  }

  function reportSave(state) {
    pendingSaves += state === "start" ? 1 : -1;
    root.dataset.pendingSaves = String(pendingSaves);
  }

  function showSaveProblem(html, imageUrl, imageName) {
    const doc = new DOMParser().parseFromString(html || "", "text/html");
    const message = doc.querySelector('[data-testid="conflict"] p, [data-testid="tagging-error"]')
      ?.textContent || "The server did not accept the change.";
    saveStatus.replaceChildren(
      document.createTextNode(`Your tag on ${imageName} was not saved. ${message} `),
      Object.assign(document.createElement("a"), { href: imageUrl, textContent: "Open it" }),
    );
    saveStatus.hidden = false;
  }

  // Multiclass + auto-advance with the next stage at hand: save in the background, show next.
  function tagAndAdvance(button) {
    const next = navUrl("next");
    const html = readyStage(next);
    const form = button.form;
    if (!html || !form) return false;
    const body = new FormData(form);
    body.delete("advance");
    body.set("tag", button.value);
    const current = stage();
    const imageUrl = current.dataset.imageUrl;
    const imageName = current.querySelector("#stage-image")?.alt || "the previous image";
    reportSave("start");
    fetch(form.action, { method: "POST", body, headers: { "HX-Request": "true" } })
      .then(async (response) => {
        if (response.ok) {
          document.body.dispatchEvent(new CustomEvent("tags-changed", { bubbles: true }));
        } else {
          showSaveProblem(await response.text(), imageUrl, imageName);
        }
      })
      .catch(() => showSaveProblem("", imageUrl, imageName))
      .finally(() => reportSave("end"));
    showStage(next, html);
    return true;
  }

  function rememberCheckbox(box) {
    const key = box.dataset.remember;
    const stored = localStorage.getItem(key);
    if (stored !== null) box.checked = stored === "true";
    box.addEventListener("change", () => localStorage.setItem(key, String(box.checked)));
  }

  function toggleKeymap(show) {
    keymap.hidden = show === undefined ? !keymap.hidden : !show;
  }

  function usable(selector) {
    const el = stage()?.querySelector(selector);
    return el && !el.disabled && !el.closest("fieldset:disabled") ? el : null;
  }

  function press(selector) {
    const el = usable(selector);
    if (el) el.click();
  }

  function tagKey(key) {
    const button = usable(`#tag-form button[data-key="${key}"]`);
    if (!button) return;
    const advance = isMulticlass && document.getElementById("auto-advance")?.checked;
    if (!(advance && tagAndAdvance(button))) button.click();
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input:not([type=checkbox]), textarea, select, [contenteditable]")) return;
    if (event.key === "?") {
      toggleKeymap();
    } else if (event.key === "Escape") {
      toggleKeymap(false);
    } else if (busy || stage()?.querySelector("[data-conflict]")) {
      return;
    } else if (/^[1-9]$/.test(event.key)) {
      tagKey(event.key);
    } else if (event.key === "ArrowRight") {
      const next = navUrl("next");
      const html = readyStage(next);
      if (html) showStage(next, html); else press('[data-nav="next"]');
    } else if (event.key === "ArrowLeft") {
      press('[data-nav="previous"]');
    } else if (event.key === "u" || event.key === "U") {
      press('[data-nav="next-untagged"]');
    } else if (event.key === "Delete") {
      press('[data-action="delete"]');
    } else {
      return;
    }
    event.preventDefault();
  }

  // Requests that replace the stage or its tag form (a plain toggle answers with the form only).
  const inStage = (event) => ["tagging-stage", "tag-form"].includes(event.detail.target?.id);

  document.addEventListener("keydown", onKey);
  for (const toggle of root.querySelectorAll("[data-keymap-toggle]")) {
    toggle.addEventListener("click", () => toggleKeymap());
  }
  for (const box of root.querySelectorAll("input[data-remember]")) rememberCheckbox(box);
  document.body.addEventListener("htmx:beforeRequest", (event) => { if (inStage(event)) busy = true; });
  document.body.addEventListener("htmx:afterRequest", (event) => { if (inStage(event)) busy = false; });
  document.body.addEventListener("htmx:beforeSwap", (event) => {
    // The stage answers refusals (403, 404) with itself and a message: show it.
    const status = event.detail.xhr.status;
    if (inStage(event) && (status === 403 || status === 404)) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.body.addEventListener("htmx:afterSettle", (event) => {
    if (event.detail.target?.id === "tagging-stage" || event.detail.elt?.id === "tagging-stage") {
      preloadNeighbours();
    }
  });
  root.dataset.pendingSaves = "0";
  preloadNeighbours();
}

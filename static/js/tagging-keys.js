// Keyboard shortcuts of the tagging view (templates/labeling/tagging.html). Expects:
//
//   <div data-tagging-keys data-multiclass="true|false">
//     <input type="checkbox" id="auto-advance" data-remember="loupe.autoAdvance">  (multiclass)
//     <p id="save-status" hidden></p>  <p id="change-status" hidden></p>
//   (sets data-pending-saves="<n>" and data-next-stage="pending|ready" on the root element)
//     <div id="tagging-stage" data-preload="url url" data-image-url="…" data-review="true|false">
//       (swapped by htmx)
//       <form id="tag-form" [data-conflict]> <button data-key="1">…</button> … </form>
//       <a data-nav="next|previous|next-untagged">  <button data-action="delete">
//
// Keys: 1–9 press the tag button with that key, → / ← / N follow the nav links, U or Ctrl+Z
// undoes the last change, Delete presses the delete button (htmx asks to confirm). The ? help
// is static/js/keymap-dialog.js; while it is open these keys do nothing.
//
// Only a key that adds a tag moves on (multiclass, auto-advance): a key that removes one stays,
// and every change is said in #change-status ("apple removed on cat_1.jpg") with an Undo. The
// server sends what to undo with each save (the `tags-changed` event: the tags before and the
// version the save made); undo posts them back, version-checked, and shows that image again.
// A prediction under review (data-review="true") never moves on by a tag key: S saves it.
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
  const saveStatus = document.getElementById("save-status");
  const isMulticlass = root.dataset.multiclass === "true";
  const STAGE_MAX_AGE_MS = 30_000; // an older fetched stage may show stale tags: fetch again
  const stages = new Map(); // url -> {html, at}
  const changeStatus = document.getElementById("change-status");
  let busy = false;
  let pendingSaves = 0;
  let lastSave = Promise.resolve();
  let lastChange = null; // {url, image_url, tags, version, imageName}: what U puts back

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
    lastSave = fetch(form.action, { method: "POST", body, headers: { "HX-Request": "true" } })
      .then(async (response) => {
        if (response.ok) {
          const detail = triggerDetail(response, "tags-changed");
          document.body.dispatchEvent(new CustomEvent("tags-changed", { bubbles: true, detail }));
        } else {
          showSaveProblem(await response.text(), imageUrl, imageName);
        }
      })
      .catch(() => showSaveProblem("", imageUrl, imageName))
      .finally(() => reportSave("end"));
    showStage(next, html);
    return true;
  }

  function triggerDetail(response, name) {
    try {
      return JSON.parse(response.headers.get("HX-Trigger") || "{}")[name] ?? null;
    } catch (err) {
      return null;
    }
  }

  function noteChange(detail) {
    if (!detail?.message) return;
    lastChange = detail.undo ? { ...detail.undo, imageName: detail.image_name } : null;
    const text = `${detail.message} · ${detail.image_name}.`;
    const parts = [document.createTextNode(`${text} `)];
    if (lastChange) {
      const button = Object.assign(document.createElement("button"), { type: "button" });
      button.className = "link";
      button.dataset.action = "undo";
      button.dataset.testid = "undo";
      button.append("Undo ", Object.assign(document.createElement("kbd"), { textContent: "U" }));
      button.addEventListener("click", undo);
      parts.push(button);
    }
    changeStatus.replaceChildren(...parts);
    changeStatus.hidden = false;
  }

  // U / Ctrl+Z: put back the labels the last changed image had, and show that image.
  async function undo() {
    await lastSave; // a background save still on its way is the change to undo
    const change = lastChange;
    if (!change) {
      changeStatus.textContent = "Nothing to undo.";
      changeStatus.hidden = false;
      return;
    }
    lastChange = null;
    const body = new FormData();
    body.set("tags", change.tags);
    body.set("version", String(change.version));
    body.set("csrfmiddlewaretoken", csrfToken());
    busy = true;
    try {
      const response = await fetch(change.url, {
        method: "POST", body, headers: { "HX-Request": "true", "HX-Target": "tagging-stage" },
      });
      const html = await response.text();
      if (response.ok || [404, 409, 422].includes(response.status)) {
        // The answer is that image's stage: with its labels put back, or with the reason not
        // (409: someone changed it since, with a Reload).
        htmx.swap(stage(), html, { swapStyle: "outerHTML", swapDelay: 0, settleDelay: 0 });
        if (change.image_url && `${location.pathname}${location.search}` !== change.image_url) {
          history.pushState({}, "", change.image_url);
        }
        if (response.ok) noteChange(triggerDetail(response, "tags-changed"));
        else changeStatus.hidden = true;
        preloadNeighbours();
      } else {
        changeStatus.textContent = "The server refused the undo.";
        lastChange = change;
      }
    } catch (err) {
      changeStatus.textContent = "The undo did not reach the server. Try again.";
      lastChange = change;
    } finally {
      busy = false;
    }
  }

  function csrfToken() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (field) return field.value;
    try {
      return JSON.parse(document.body.getAttribute("hx-headers"))["x-csrftoken"];
    } catch (err) {
      return "";
    }
  }

  function rememberCheckbox(box) {
    const key = box.dataset.remember;
    const stored = localStorage.getItem(key);
    if (stored !== null) box.checked = stored === "true";
    box.addEventListener("change", () => localStorage.setItem(key, String(box.checked)));
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
    // Removing a tag, or any key on a prediction under review, stays on the image (the server
    // applies the same rule to the plain request).
    const advance = isMulticlass && document.getElementById("auto-advance")?.checked
      && stage()?.dataset.review !== "true" && button.getAttribute("aria-pressed") !== "true";
    if (!(advance && tagAndAdvance(button))) button.click();
  }

  function onKey(event) {
    if (document.querySelector("dialog[open]")) return;
    if (event.target.closest("input:not([type=checkbox]), textarea, select, [contenteditable]")) return;
    const ctrl = event.ctrlKey || event.metaKey;
    if (ctrl && !event.shiftKey && !event.altKey && event.key.toLowerCase() === "z") {
      event.preventDefault();
      if (!busy) undo();
      return;
    }
    if (ctrl || event.altKey) return;
    if (busy || stage()?.querySelector("[data-conflict]")) {
      return;
    } else if (/^[1-9]$/.test(event.key)) {
      tagKey(event.key);
    } else if (event.key === "ArrowRight") {
      const next = navUrl("next");
      const html = readyStage(next);
      if (html) showStage(next, html); else press('[data-nav="next"]');
    } else if (event.key === "ArrowLeft") {
      press('[data-nav="previous"]');
    } else if (event.key === "n" || event.key === "N") {
      press('[data-nav="next-untagged"]');
    } else if (event.key === "u" || event.key === "U") {
      undo();
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
  document.body.addEventListener("tags-changed", (event) => noteChange(event.detail));
  root.dataset.pendingSaves = "0";
  preloadNeighbours();
}

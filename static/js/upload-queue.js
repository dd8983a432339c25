// Upload queue: send many files to the upload API in chunks, with one progress bar for the
// whole queue (bytes sent, from XMLHttpRequest upload progress) and a per-file outcome list.
// Without this script the same form posts to the page and the server renders the report.
//
// The HTML it expects (templates/labeling/upload.html):
//
//   <form data-upload-queue data-upload-url="/api/projects/1/images/upload/"
//         data-chunk-files="25" data-chunk-bytes="8000000">
//     <input type="hidden" name="csrfmiddlewaretoken" value="...">
//     <div data-upload-dropzone>                       drop files or folders here
//       <input type="file" name="files" multiple data-upload-files>
//       <input type="file" name="files" multiple webkitdirectory data-upload-files>
//       <p data-upload-selection></p>                  "30 files chosen (1.2 MB)."
//     </div>
//     <input type="checkbox|radio" name="tag_ids" value="7">   batch tags, sent with every chunk
//     <button type="submit" data-upload-start>Upload</button>
//     <div role="progressbar" aria-valuenow="0" data-upload-progress><div data-upload-bar></div></div>
//     <p data-upload-summary></p>
//     <ul data-upload-results></ul>
//     <p data-upload-done hidden><a href="/projects/1/">Go to the images</a></p>
//   </form>
//
// When the queue is done, the chosen files are cleared (a second Upload never resends them)
// and the "Go to the images" link appears if any image landed.

const RETRIES = 1;

function formatBytes(bytes) {
  if (bytes < 1e6) return `${Math.round(bytes / 1e3)} kB`;
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

// Split the queue into requests of at most `maxFiles` files and about `maxBytes` bytes; a file
// larger than `maxBytes` travels alone (the server then reports it as too large).
export function chunkFiles(files, maxFiles, maxBytes) {
  const chunks = [];
  let current = [];
  let bytes = 0;
  for (const file of files) {
    if (current.length && (current.length >= maxFiles || bytes + file.size > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(file);
    bytes += file.size;
  }
  if (current.length) chunks.push(current);
  return chunks;
}

// Files from a drop: plain files, and the contents of dropped folders (recursively).
async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items]
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (!entries.length) return [...dataTransfer.files];
  const files = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      // readEntries answers in pages (100 in Chromium) until it returns an empty one.
      for (;;) {
        const page = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!page.length) break;
        for (const child of page) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry);
  return files;
}

class UploadQueue {
  constructor(form) {
    this.form = form;
    this.url = form.dataset.uploadUrl;
    this.maxFiles = Number(form.dataset.chunkFiles || 25);
    this.maxBytes = Number(form.dataset.chunkBytes || 8e6);
    this.inputs = [...form.querySelectorAll("[data-upload-files]")];
    this.dropzone = form.querySelector("[data-upload-dropzone]");
    this.selection = form.querySelector("[data-upload-selection]");
    this.startButton = form.querySelector("[data-upload-start]");
    this.progress = form.querySelector("[data-upload-progress]");
    this.bar = form.querySelector("[data-upload-bar]");
    this.summary = form.querySelector("[data-upload-summary]");
    this.results = form.querySelector("[data-upload-results]");
    this.done = form.querySelector("[data-upload-done]");
    this.dropped = [];
    this.busy = false;
    this.totals = { accepted: 0, warnings: 0, rejected: 0 };
    this.bind();
  }

  bind() {
    for (const input of this.inputs) {
      input.addEventListener("change", () => this.showSelection());
    }
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
    if (!this.dropzone) return;
    for (const name of ["dragenter", "dragover"]) {
      this.dropzone.addEventListener(name, (event) => {
        event.preventDefault();
        this.dropzone.classList.add("is-over");
      });
    }
    this.dropzone.addEventListener("dragleave", () => this.dropzone.classList.remove("is-over"));
    this.dropzone.addEventListener("drop", async (event) => {
      event.preventDefault();
      this.dropzone.classList.remove("is-over");
      this.dropped.push(...(await droppedFiles(event.dataTransfer)));
      this.showSelection();
    });
  }

  chosenFiles() {
    return [...this.inputs.flatMap((input) => [...input.files]), ...this.dropped];
  }

  showSelection() {
    const files = this.chosenFiles();
    const bytes = files.reduce((sum, file) => sum + file.size, 0);
    this.selection.textContent = files.length
      ? `${plural(files.length, "file")} chosen (${formatBytes(bytes)}).`
      : "No files chosen.";
  }

  tagIds() {
    return [...this.form.querySelectorAll("input[name=tag_ids]:checked")]
      .map((input) => input.value)
      .filter(Boolean);
  }

  setProgress(fraction) {
    const percent = Math.min(100, Math.round(fraction * 100));
    this.progress.setAttribute("aria-valuenow", String(percent));
    this.bar.style.width = `${percent}%`;
  }

  async start() {
    if (this.busy) return;
    const files = this.chosenFiles();
    if (!files.length) {
      this.summary.textContent = "Choose or drop some images first.";
      return;
    }
    this.busy = true;
    this.startButton.disabled = true;
    this.results.replaceChildren();
    delete this.summary.dataset.done;
    if (this.done) this.done.hidden = true;
    this.totals = { accepted: 0, warnings: 0, rejected: 0 };
    const tagIds = this.tagIds();
    const totalBytes = Math.max(1, files.reduce((sum, file) => sum + file.size, 0));
    let sentBytes = 0;
    this.setProgress(0);
    const chunks = chunkFiles(files, this.maxFiles, this.maxBytes);
    for (const [number, chunk] of chunks.entries()) {
      this.summary.textContent = `Sending batch ${number + 1} of ${chunks.length}…`;
      const chunkBytes = chunk.reduce((sum, file) => sum + file.size, 0);
      const stop = await this.sendChunk(chunk, tagIds, (fraction) =>
        this.setProgress((sentBytes + fraction * chunkBytes) / totalBytes));
      sentBytes += chunkBytes;
      this.setProgress(sentBytes / totalBytes);
      if (stop) break;
    }
    this.showSummary();
    for (const input of this.inputs) input.value = "";
    this.dropped = [];
    this.showSelection();
    if (this.done) this.done.hidden = this.totals.accepted === 0;
    this.busy = false;
    this.startButton.disabled = false;
  }

  // Send one chunk (retrying a network or server failure once); returns true to stop the queue.
  async sendChunk(chunk, tagIds, onProgress) {
    for (let attempt = 0; ; attempt++) {
      const answer = await this.post(chunk, tagIds, onProgress);
      if (answer.status === 200 || answer.status === 201) {
        this.showReport(chunk, answer.body);
        return false;
      }
      const retriable = answer.status === 0 || answer.status >= 500;
      if (retriable && attempt < RETRIES) continue;
      const message = (answer.body && answer.body.message)
        || "The server did not answer; try these files again.";
      for (const file of chunk) this.addRow(file.name, "rejected", message, "upload_failed");
      this.totals.rejected += chunk.length;
      // Errors about the whole request (role, tags, login) would repeat for every chunk.
      return !retriable && answer.status !== 413;
    }
  }

  post(chunk, tagIds, onProgress) {
    const body = new FormData();
    for (const file of chunk) {
      body.append("files", file, file.webkitRelativePath || file.name);
    }
    for (const id of tagIds) body.append("tag_ids", id);
    const token = this.form.querySelector("input[name=csrfmiddlewaretoken]");
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", this.url);
      xhr.responseType = "json";
      xhr.setRequestHeader("Accept", "application/json");
      if (token) xhr.setRequestHeader("X-CSRFToken", token.value);
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      xhr.addEventListener("load", () => resolve({ status: xhr.status, body: xhr.response }));
      xhr.addEventListener("error", () => resolve({ status: 0, body: null }));
      xhr.addEventListener("abort", () => resolve({ status: 0, body: null }));
      xhr.send(body);
    });
  }

  showReport(chunk, report) {
    const rows = [
      ...report.accepted.map((item) => ({ ...item, outcome: item.warnings.length ? "warning" : "accepted" })),
      ...report.rejected.map((item) => ({ ...item, outcome: "rejected" })),
    ].sort((a, b) => a.index - b.index);
    for (const item of rows) {
      const name = item.filename || (chunk[item.index] && chunk[item.index].name) || "";
      if (item.outcome === "rejected") {
        this.totals.rejected += 1;
        this.addRow(name, "rejected", item.message, item.code);
      } else if (item.outcome === "warning") {
        this.totals.accepted += 1;
        this.totals.warnings += 1;
        this.addRow(name, "warning", item.warnings.map((w) => w.message).join(" "));
      } else {
        this.totals.accepted += 1;
        this.addRow(name, "accepted", `Accepted (${item.width}×${item.height}).`);
      }
    }
  }

  addRow(filename, outcome, message, code = "") {
    const row = document.createElement("li");
    row.className = { accepted: "ok", warning: "warn", rejected: "error" }[outcome];
    row.dataset.outcome = outcome;
    if (code) row.dataset.code = code;
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = filename;
    row.append(name, document.createTextNode(` ${message}`));
    this.results.append(row);
  }

  showSummary() {
    const { accepted, warnings, rejected } = this.totals;
    const withWarnings = warnings ? ` (${warnings} with warnings)` : "";
    this.summary.textContent = `${accepted} accepted${withWarnings}, ${rejected} rejected.`;
    this.summary.dataset.done = "true";
  }
}

for (const form of document.querySelectorAll("[data-upload-queue]")) {
  new UploadQueue(form);
}

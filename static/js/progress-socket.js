// Live progress of a training iteration over its websocket, on every element of the page that
// shows that iteration (the Train tab's card, its recent list, the iterations list), so they
// never disagree ("embedding 3/61" next to a stale "Queued").
// Expects:
//   <section data-progress-socket data-ws-path="/ws/projects/1/iterations/7/"> (one per socket)
//   anywhere on the page, for iteration 7:
//     <span data-iteration-status="7"></span>               the status badge (any number of them)
//     <div data-iteration-bar="7"><div></div></div>         a progress bar
//     <span data-iteration-phase="7"></span>                the phase ("embedding 3/61")
//     <p data-iteration-timing="7" data-status data-elapsed-s data-fraction data-budget-s
//        data-epoch data-epochs></p>                        elapsed, estimate, budget, epochs
// The server sends {iteration_id, status, status_label, fraction, phase, elapsed_s, budget_s,
// epoch, epochs, ...} on connect and on every (throttled) update; between updates the timing
// line keeps counting. When the iteration completes or fails the page reloads: the server then
// renders the finished state (and a link to its performance page) from the row, so a dropped
// socket loses nothing. Same words as training.services.progress.timing_summary.

const TERMINAL = new Set(["completed", "failed"]);
const ESTIMATE_MIN_FRACTION = 0.05;
const connected = new Set();

function clock(seconds) {
  const whole = Math.floor(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const secs = String(whole % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

function timingText(data, elapsed) {
  if (data.status === "queued") return `Waiting for a worker for ${clock(elapsed)}`;
  const parts = [`Elapsed ${clock(elapsed)}`];
  const fraction = Number(data.fraction || 0);
  if (fraction >= ESTIMATE_MIN_FRACTION && fraction < 1) {
    const left = (elapsed * (1 - fraction)) / fraction;
    parts.push(left < 60 ? "under a minute left" : `about ${Math.round(left / 60)} min left`);
  }
  const budget = Number(data.budgetS || 0);
  if (budget) parts.push(`budget left ${clock(Math.max(budget - elapsed, 0))}`);
  if (data.epoch) parts.push(`epoch ${data.epoch} of ${data.epochs} planned`);
  return parts.join(" · ");
}

// Each timing line counts on from the elapsed time it was last given, by the local clock.
const baseline = new WeakMap();

function tick() {
  document.querySelectorAll("[data-iteration-timing]").forEach((line) => {
    let base = baseline.get(line);
    if (!base || base.elapsed !== line.dataset.elapsedS) {
      base = { elapsed: line.dataset.elapsedS, at: performance.now() };
      baseline.set(line, base);
    }
    const elapsed = Number(base.elapsed || 0) + (performance.now() - base.at) / 1000;
    line.textContent = timingText(line.dataset, elapsed);
  });
}

function show(state) {
  const id = String(state.iteration_id);
  const percent = Math.round(100 * (state.fraction || 0));
  document.querySelectorAll(`[data-iteration-status="${id}"]`).forEach((badge) => {
    badge.textContent = state.status_label || state.status;
  });
  document.querySelectorAll(`[data-iteration-phase="${id}"]`).forEach((phase) => {
    phase.textContent = state.phase || "";
  });
  document.querySelectorAll(`[data-iteration-bar="${id}"]`).forEach((bar) => {
    bar.setAttribute("aria-valuenow", String(percent));
    if (bar.firstElementChild) bar.firstElementChild.style.width = `${percent}%`;
  });
  document.querySelectorAll(`[data-iteration-timing="${id}"]`).forEach((line) => {
    Object.assign(line.dataset, {
      status: state.status,
      fraction: String(state.fraction || 0),
      elapsedS: String(state.elapsed_s ?? line.dataset.elapsedS ?? 0),
      budgetS: String(state.budget_s || 0),
      epoch: state.epoch ? String(state.epoch) : "",
      epochs: state.epochs ? String(state.epochs) : "",
    });
  });
  tick();
}

function connect(path) {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${window.location.host}${path}`);
  let finished = false;
  socket.addEventListener("message", (event) => {
    const state = JSON.parse(event.data);
    show(state);
    if (TERMINAL.has(state.status) && !finished) {
      finished = true;
      window.location.reload();
    }
  });
  socket.addEventListener("close", () => {
    // Reconnect after a pause while the iteration may still be running (server restart, proxy).
    if (!finished) setTimeout(() => connect(path), 3000);
  });
}

document.querySelectorAll("[data-progress-socket]").forEach((section) => {
  const path = section.dataset.wsPath;
  if (path && !connected.has(path)) {
    connected.add(path);
    connect(path);
  }
});
if (document.querySelector("[data-iteration-timing]")) {
  tick();
  setInterval(tick, 1000);
}

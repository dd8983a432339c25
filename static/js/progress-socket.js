// Live progress of a training iteration over its websocket.
// Expects:
//   <section data-progress-socket data-ws-path="/ws/projects/1/iterations/7/">
//     <span data-progress-status></span>
//     <div class="progress"><div data-progress-bar></div></div>
//     <span data-progress-phase></span>
//   </section>
// The server sends {status, status_label, fraction, phase, failure_reason, failure_message}
// on connect and on every (throttled) update. When the iteration completes or fails the page
// reloads: the server renders the finished state from the row, so a dropped socket loses nothing.

const TERMINAL = new Set(["completed", "failed"]);

function connect(section) {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${window.location.host}${section.dataset.wsPath}`);
  let finished = false;
  socket.addEventListener("message", (event) => {
    const state = JSON.parse(event.data);
    const bar = section.querySelector("[data-progress-bar]");
    const phase = section.querySelector("[data-progress-phase]");
    const status = section.querySelector("[data-progress-status]");
    const percent = Math.round(100 * (state.fraction || 0));
    if (bar) {
      bar.style.width = `${percent}%`;
      bar.parentElement.setAttribute("aria-valuenow", String(percent));
    }
    if (phase) phase.textContent = state.phase || "";
    if (status) status.textContent = state.status_label || state.status;
    if (TERMINAL.has(state.status) && !finished) {
      finished = true;
      window.location.reload();
    }
  });
  socket.addEventListener("close", () => {
    // Reconnect after a pause while the iteration may still be running (server restart, proxy).
    if (!finished) setTimeout(() => connect(section), 3000);
  });
}

document.querySelectorAll("[data-progress-socket]").forEach(connect);

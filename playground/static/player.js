// The live player (playground/player.py), shared by the Play and Compare tabs and the lessons: the held keys
// (kept in the browser), the paced frame loop (one request in flight, ~32 Hz), painting raw RGB frames into
// canvases scaled up without blur, one panel per dream beside the real env, and frames/s + key→frame latency
// in window.__wmStats. `element`, `props` and `server` are provided by gr.HTML.
const TARGET_MS = 1000 / 32;
const HEARTBEAT_MS = 10000;  // a hidden player's keep-alive (the server releases a session after IDLE_SECONDS)  // a little above 30 Hz so that timer jitter still gives 30 frames/s
const held = new Set();
const SCROLL_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", " "]);
const stats = (window.__wmStats = window.__wmStats || { frames: 0, latencies: [], fps: 0, steps: [] });
let keyDownAt = null;        // performance.now() of the newest key press not yet answered
let lastStep = -1, paints = [], rewards = [], endShownUntil = 0;

const $ = (sel) => element.querySelector(sel);
const visible = () => element.offsetParent !== null;   // a hidden tab neither takes keys nor ticks
// Keys go to the game unless they edit the focused element. A checkbox just ticked keeps the focus, but only
// space edits it: arrows and letters still drive.
const typing = (t, k) => t && ((t.tagName === "INPUT" && (t.type !== "checkbox" || k === " ")) || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);

function normKey(k) { return k === "Spacebar" ? " " : k.length === 1 ? k.toLowerCase() : k; }

document.addEventListener("keydown", (e) => {
  const k = normKey(e.key);
  if (!visible() || typing(e.target, k)) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (SCROLL_KEYS.has(k)) e.preventDefault();   // arrows and space must never scroll the page
  if (!held.has(k)) { held.add(k); keyDownAt = performance.now(); }
});
document.addEventListener("keyup", (e) => {
  const k = normKey(e.key);
  held.delete(k);
  if (SCROLL_KEYS.has(k) && visible() && !typing(e.target, k)) e.preventDefault();
});
window.addEventListener("blur", () => held.clear());   // no stuck keys after alt-tab

function paint(canvas, b64, size) {
  if (!canvas || !b64) return;
  const raw = atob(b64);
  canvas.width = size; canvas.height = size;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(size, size);
  for (let i = 0, j = 0; i < raw.length; i += 3, j += 4) {
    img.data[j] = raw.charCodeAt(i); img.data[j + 1] = raw.charCodeAt(i + 1);
    img.data[j + 2] = raw.charCodeAt(i + 2); img.data[j + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function setText(sel, text, root = element) {
  const el = root.querySelector(sel);
  if (el && el.textContent !== text) el.textContent = text;
}

// Extra label/value rows (a panel's `extras`, e.g. {value: "12.3", policy: "left 62%"}), rebuilt only when the
// labels change.
function renderExtras(box, extras) {
  if (!box) return;
  const entries = Object.entries(extras || {});
  const keys = entries.map(([k]) => k).join("\n");
  if (box.dataset.keys !== keys) {
    box.replaceChildren();
    for (const [k] of entries) {
      const name = document.createElement("span"), value = document.createElement("b");
      name.textContent = k;
      value.dataset.extra = k;
      box.append(name, value);
    }
    box.dataset.keys = keys;
  }
  for (const [k, v] of entries) {
    const el = box.querySelector(`b[data-extra="${CSS.escape(k)}"]`);
    if (el && el.textContent !== String(v)) el.textContent = String(v);
  }
}

const DREAM_PANEL = `
  <div class="wm-label"></div>
  <canvas class="wm-dream" width="64" height="64" tabindex="0"></canvas>
  <div class="wm-rows">
    <span>predicted reward</span><b class="wm-reward">0.00</b>
    <span>dream return</span><b class="wm-return">0.0</b>
    <span>predicted end</span><span><span class="wm-done-track"><span class="wm-done-bar"></span></span>
      <b class="wm-done">0%</b></span>
    <span title="foreground-masked MSE of the dream frame against the real frame">divergence</span>
    <b class="wm-div">–</b>
    <div class="wm-extras"></div>
  </div>`;

// One .wm-dream-panel per model, rebuilt only when the labels change (a new Start).
function dreamPanels(labels) {
  const box = $(".wm-panels"), key = labels.join("\n");
  if (box.dataset.labels !== key) {
    box.querySelectorAll(".wm-dream-panel").forEach((el) => el.remove());
    for (const label of labels) {
      const panel = document.createElement("div");
      panel.className = "wm-panel wm-dream-panel";
      panel.innerHTML = DREAM_PANEL;
      panel.querySelector(".wm-label").textContent = label;
      box.append(panel);
    }
    box.dataset.labels = key;
  }
  return Array.from(box.querySelectorAll(".wm-dream-panel"));
}

function sparkline(canvas, values) {
  if (!canvas) return;
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (values.length < 2) return;
  const lo = Math.min(0, ...values), hi = Math.max(1e-6, ...values);
  ctx.strokeStyle = "#f97316"; ctx.lineWidth = 1.5; ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * (w - 2) + 1, y = h - 2 - ((v - lo) / (hi - lo || 1)) * (h - 4);
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.stroke();
}

// Count one answer: a changed step number is a new frame (frames/s), and the first new frame whose request was
// sent after the newest keydown closes that key's latency sample. Returns the previous step number.
function countFrame(step, sentAt) {
  const prev = lastStep, now = performance.now();
  if (step !== prev) {
    paints.push(now);
    stats.frames += 1;
    stats.steps.push(step);
    if (stats.steps.length > 2000) stats.steps.shift();
    if (keyDownAt !== null && sentAt >= keyDownAt) {
      stats.latencies.push(now - keyDownAt);
      if (stats.latencies.length > 500) stats.latencies.shift();
      keyDownAt = null;
    }
  }
  lastStep = step;
  while (paints.length && paints[0] < now - 1000) paints.shift();
  stats.fps = paints.length;
  return prev;
}

function statusLine(r, now) {
  const allEnded = r.panels.every((p) => p.ended);
  if (r.hold && r.real_ended) return `The real episode ended after ${r.step} steps: everything holds. Reset starts a new one`;
  if (!r.hold && now < endShownUntil) return "Episode end predicted: the dream restarted from a new real context";
  if (!r.hold && r.real_ended) return "The real episode ended; the dream goes on. Reset restarts both";
  if (r.paused) return "Paused: press Step for one frame, Pause to resume";
  if (r.hold && allEnded) return "Every dream predicted an end (flagged in red); the real env goes on. Reset restarts all";
  if (r.driver === "agent") return "The " + (r.driver_label || "trained agent") + " is driving: press a key to take over";
  if (r.waiting) return "Hold a key to drive the dream (this env has no 'do nothing' action)";
  if (r.recording) return "● Recording";
  if (r.recording_data) return "● Recording your real-env play as training data";
  return r.panels.length > 1 ? "Playing: one key stream drives every panel" : "Playing: hold the keys listed above";
}

function render(r, sentAt) {
  if (!r.ok) { setText(".wm-status", r.message); return; }
  const now = performance.now();
  element.querySelector(".wm-player").classList.toggle("wm-has-real", !!r.real);
  if (r.real) paint($(".wm-real"), r.real, r.size);
  const panels = dreamPanels(r.panels.map((p) => p.label));
  r.panels.forEach((p, i) => {
    const el = panels[i];
    paint(el.querySelector(".wm-dream"), p.frame, r.size);
    setText(".wm-reward", p.reward.toFixed(2), el);
    setText(".wm-return", p.ret.toFixed(1), el);
    setText(".wm-done", (100 * p.done_prob).toFixed(0) + "%" + (p.ended ? " · ended" : ""), el);
    el.querySelector(".wm-done-bar").style.width = Math.round(100 * p.done_prob) + "%";
    setText(".wm-div", p.divergence === null ? "–" : p.divergence.toFixed(4), el);
    el.classList.toggle("wm-ended", p.ended);
    renderExtras(el.querySelector(".wm-extras"), p.extras);
  });
  const prev = countFrame(r.step, sentAt);
  if (r.step !== prev) {
    if (r.step < prev || r.step === 0) rewards = [];
    if (r.step > 0) rewards.push(r.panels[0].reward);
    if (rewards.length > 120) rewards.shift();
  }
  if (!r.hold && r.panels.every((p) => p.ended)) endShownUntil = now + 700;
  setText(".wm-step", String(r.step));
  setText(".wm-fps", String(stats.fps));
  setText(".wm-latency", stats.latencies.length ? stats.latencies[stats.latencies.length - 1].toFixed(0) + " ms" : "–");
  setText(".wm-driver", r.driver === "agent" ? r.driver_label || "trained agent" : "you");
  setText(".wm-real-reward", r.real_reward.toFixed(2));
  setText(".wm-real-return", r.real_ret.toFixed(1));
  setText(".wm-real-state", r.real_ended ? "ended" : "running");
  $(".wm-real-panel").classList.toggle("wm-ended", r.real_ended);
  setText(".wm-status", statusLine(r, now));
  sparkline($(".wm-spark"), rewards);
}

// The frame loop: while this component is visible and started, call server.tick with the held keys, render the
// answer, and wait out the rest of the frame (one request in flight).
// While hidden (another tab or lesson), a heartbeat every few seconds tells the server the page is still open: a
// session that hears nothing for a minute (its page closed) is released.
(async function runLoop() {
  const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
  let lastBeat = 0;
  for (;;) {
    const client = props.value;
    if (client && !visible() && performance.now() - lastBeat > HEARTBEAT_MS) {
      lastBeat = performance.now();
      server.tick({ client, keys: [], heartbeat: true }).catch(() => {});
    }
    if (!client || !visible()) { await sleep(200); continue; }
    const t0 = performance.now();
    try {
      const r = await server.tick({ client, keys: Array.from(held) });
      render(r, t0);
      if (!r.ok) { await sleep(300); continue; }
    } catch (err) {
      setText(".wm-status", "Connection problem: " + err);
      await sleep(500);
    }
    await sleep(Math.max(0, TARGET_MS - (performance.now() - t0)));
  }
})();

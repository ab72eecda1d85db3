// The dream player: keeps the held keys in the browser, runs a paced frame loop (one request in
// flight, ~32 Hz), and paints raw 64x64 RGB frames into canvases scaled up without blur.
// `element`, `props` and `server` are provided by gr.HTML.
const TARGET_MS = 1000 / 32;  // a little above 30 Hz so that timer jitter still gives 30 frames/s
const held = new Set();
const order = [];
const SCROLL_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", " "]);
const stats = (window.__wmStats = window.__wmStats || { frames: 0, latencies: [], fps: 0, steps: [] });
let keyDownAt = null;        // performance.now() of the newest key press not yet answered
let lastStep = -1, rewards = [], paints = [];
let endShownUntil = 0;       // a predicted episode end stays flagged for a moment; the dream goes on

const $ = (sel) => element.querySelector(sel);
const visible = () => element.offsetParent !== null;
const typing = (t) => t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);

function normKey(k) { return k === "Spacebar" ? " " : k.length === 1 ? k.toLowerCase() : k; }

document.addEventListener("keydown", (e) => {
  if (!visible() || typing(e.target)) return;
  const k = normKey(e.key);
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (SCROLL_KEYS.has(k)) e.preventDefault();   // arrows and space must never scroll the page
  if (!held.has(k)) { held.add(k); order.push(k); keyDownAt = performance.now(); }
});
document.addEventListener("keyup", (e) => {
  const k = normKey(e.key);
  held.delete(k);
  if (SCROLL_KEYS.has(k) && visible()) e.preventDefault();
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

function setText(sel, text) { const el = $(sel); if (el && el.textContent !== text) el.textContent = text; }

function render(r, sentAt) {
  if (!r.ok) { setText(".wm-status", r.message); return; }
  element.querySelector(".wm-player").classList.toggle("wm-has-real", !!r.real);
  paint($(".wm-dream"), r.frame, r.size);
  if (r.real) paint($(".wm-real"), r.real, r.size);
  const now = performance.now();
  if (r.step !== lastStep) {
    if (r.step < lastStep || r.step === 0) rewards = [];
    if (r.step > 0) rewards.push(r.reward);
    if (rewards.length > 120) rewards.shift();
    paints.push(now);
    stats.frames += 1;
    stats.steps.push(r.step);
    if (stats.steps.length > 2000) stats.steps.shift();
    if (keyDownAt !== null && sentAt >= keyDownAt) {
      stats.latencies.push(now - keyDownAt);
      if (stats.latencies.length > 500) stats.latencies.shift();
      keyDownAt = null;
    }
  }
  lastStep = r.step;
  while (paints.length && paints[0] < now - 1000) paints.shift();
  stats.fps = paints.length;
  const lat = stats.latencies.length ? stats.latencies[stats.latencies.length - 1].toFixed(0) + " ms" : "–";
  setText(".wm-step", String(r.step));
  setText(".wm-reward", r.reward.toFixed(2));
  setText(".wm-return", r.ret.toFixed(1));
  setText(".wm-fps", String(stats.fps));
  setText(".wm-driver", r.driver === "agent" ? "trained agent" : "you");
  setText(".wm-latency", lat);
  setText(".wm-real-return", r.real ? r.real_ret.toFixed(1) + (r.real_ended ? " (ended)" : "") : "");
  const bar = $(".wm-done-bar");
  if (bar) bar.style.width = Math.round(100 * r.done_prob) + "%";
  setText(".wm-done", (100 * r.done_prob).toFixed(0) + "%");
  if (r.ended) endShownUntil = now + 700;
  const showEnd = now < endShownUntil;
  const status = showEnd ? "Episode end predicted: the dream restarted from a new real context"
    : r.real_ended ? "The real episode ended; the dream goes on. Reset restarts both"
    : r.paused ? "Paused: press Step for one frame, Pause to resume"
    : r.driver === "agent" ? "The trained agent is driving: press a key to take over"
    : r.waiting ? "Hold a key to drive the dream (this env has no 'do nothing' action)"
    : r.recording ? "● Recording" : "Playing: hold the keys listed above";
  setText(".wm-status", status);
  $(".wm-player").classList.toggle("wm-ended", showEnd);
  sparkline($(".wm-spark"), rewards);
}

async function loop() {
  const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
  for (;;) {
    const client = props.value;
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
    const spent = performance.now() - t0;
    await sleep(Math.max(0, TARGET_MS - spent));
  }
}
loop();

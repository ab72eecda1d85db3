// Shared by the Play and Compare players: each tab's js_on_load is this file followed by its own (player.js,
// compare.js), which defines `render(r, sentAt)` and calls `runLoop(render, statusSelector)`.
// Here: the held keys (kept in the browser), painting raw RGB frames into canvases scaled up without blur,
// the paced loop (one request in flight, ~32 Hz), and frames/s + key→frame latency in window.__wmStats.
// `element`, `props` and `server` are provided by gr.HTML.
const TARGET_MS = 1000 / 32;  // a little above 30 Hz so that timer jitter still gives 30 frames/s
const held = new Set();
const SCROLL_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", " "]);
const stats = (window.__wmStats = window.__wmStats || { frames: 0, latencies: [], fps: 0, steps: [] });
let keyDownAt = null;        // performance.now() of the newest key press not yet answered
let lastStep = -1, paints = [];

const $ = (sel) => element.querySelector(sel);
const visible = () => element.offsetParent !== null;   // a hidden tab neither takes keys nor ticks
// Keys go to the game unless they edit the focused element. A checkbox just ticked (lockstep, autopilot) keeps
// the focus, but only space edits it: arrows and letters still drive.
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

// Extra label/value rows (a tick's optional `extras`, e.g. {value: "12.3", policy: "left 62%"}) in `box`,
// rebuilt only when the labels change.
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

// Count one answer: a changed step number is a new frame (frames/s), and the first new frame whose request
// was sent after the newest keydown closes that key's latency sample. Returns the previous step number.
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

function latencyText() {
  return stats.latencies.length ? stats.latencies[stats.latencies.length - 1].toFixed(0) + " ms" : "–";
}

// The frame loop: while this tab is visible and started, call server.tick with the held keys, render the
// answer, and wait out the rest of the frame (one request in flight).
async function runLoop(render, statusSelector) {
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
      setText(statusSelector, "Connection problem: " + err);
      await sleep(500);
    }
    const spent = performance.now() - t0;
    await sleep(Math.max(0, TARGET_MS - spent));
  }
}

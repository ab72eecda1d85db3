// The Play tab's render (appended to common.js, which holds the keys, painting, loop and stats): the dream,
// the real env in lockstep, predictions, the reward sparkline and the status line.
let rewards = [];
let endShownUntil = 0;       // a predicted episode end stays flagged for a moment; the dream goes on

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

function render(r, sentAt) {
  if (!r.ok) { setText(".wm-status", r.message); return; }
  element.querySelector(".wm-player").classList.toggle("wm-has-real", !!r.real);
  paint($(".wm-dream"), r.frame, r.size);
  if (r.real) paint($(".wm-real"), r.real, r.size);
  const now = performance.now();
  const prev = countFrame(r.step, sentAt);
  if (r.step !== prev) {
    if (r.step < prev || r.step === 0) rewards = [];
    if (r.step > 0) rewards.push(r.reward);
    if (rewards.length > 120) rewards.shift();
  }
  setText(".wm-step", String(r.step));
  setText(".wm-reward", r.reward.toFixed(2));
  setText(".wm-return", r.ret.toFixed(1));
  setText(".wm-fps", String(stats.fps));
  setText(".wm-driver", r.driver === "agent" ? r.driver_label || "trained agent" : "you");
  setText(".wm-latency", latencyText());
  setText(".wm-real-return", r.real ? r.real_ret.toFixed(1) + (r.real_ended ? " (ended)" : "") : "");
  const bar = $(".wm-done-bar");
  if (bar) bar.style.width = Math.round(100 * r.done_prob) + "%";
  setText(".wm-done", (100 * r.done_prob).toFixed(0) + "%");
  renderExtras($(".wm-extras"), r.extras);
  if (r.ended) endShownUntil = now + 700;
  const showEnd = now < endShownUntil;
  const status = showEnd ? "Episode end predicted: the dream restarted from a new real context"
    : r.real_ended ? "The real episode ended; the dream goes on. Reset restarts both"
    : r.paused ? "Paused: press Step for one frame, Pause to resume"
    : r.driver === "agent" ? "The " + (r.driver_label || "trained agent") + " is driving: press a key to take over"
    : r.waiting ? "Hold a key to drive the dream (this env has no 'do nothing' action)"
    : r.recording ? "● Recording"
    : r.recording_data ? "● Recording your real-env play as training data"
    : "Playing: hold the keys listed above";
  setText(".wm-status", status);
  $(".wm-player").classList.toggle("wm-ended", showEnd);
  sparkline($(".wm-spark"), rewards);
}

runLoop(render, ".wm-status");

// The Compare tab's render (appended to common.js, which holds the keys, painting, loop and stats): the real
// env, one panel per model (label, dream frame, predicted reward, return, end probability, divergence from
// the real frame, optional extras) and the status line.
const MODEL_PANEL = `
  <div class="wm-cmp-label"></div>
  <canvas class="wm-cmp-dream" width="64" height="64"></canvas>
  <div class="wm-cmp-rows">
    <span>predicted reward</span><b class="wm-cmp-reward">0.00</b>
    <span>dream return</span><b class="wm-cmp-return">0.0</b>
    <span>predicted end</span><span><span class="wm-done-track"><span class="wm-done-bar"></span></span>
      <b class="wm-cmp-done">0%</b></span>
    <span title="foreground-masked MSE of the dream frame against the real frame">divergence</span>
    <b class="wm-cmp-div">–</b>
    <div class="wm-extras"></div>
  </div>`;

// One .wm-cmp-model panel per model, rebuilt only when the labels change (a new Start).
function modelPanels(labels) {
  const box = $(".wm-cmp-panels"), key = labels.join("\n");
  if (box.dataset.labels !== key) {
    box.querySelectorAll(".wm-cmp-model").forEach((el) => el.remove());
    for (const label of labels) {
      const panel = document.createElement("div");
      panel.className = "wm-cmp-panel wm-cmp-model";
      panel.innerHTML = MODEL_PANEL;
      panel.querySelector(".wm-cmp-label").textContent = label;
      box.append(panel);
    }
    box.dataset.labels = key;
  }
  return Array.from(box.querySelectorAll(".wm-cmp-model"));
}

function render(r, sentAt) {
  if (!r.ok) { setText(".wm-cmp-status", r.message); return; }
  paint($(".wm-cmp-real"), r.real, r.size);
  const panels = modelPanels(r.panels.map((p) => p.label));
  r.panels.forEach((p, i) => {
    const el = panels[i];
    paint(el.querySelector(".wm-cmp-dream"), p.frame, r.size);
    setText(".wm-cmp-reward", p.reward.toFixed(2), el);
    setText(".wm-cmp-return", p.ret.toFixed(1), el);
    setText(".wm-cmp-done", (100 * p.done_prob).toFixed(0) + "%" + (p.ended ? " · ended" : ""), el);
    el.querySelector(".wm-done-bar").style.width = Math.round(100 * p.done_prob) + "%";
    setText(".wm-cmp-div", p.divergence.toFixed(4), el);
    el.classList.toggle("wm-cmp-ended", p.ended);
    renderExtras(el.querySelector(".wm-extras"), p.extras);
  });
  countFrame(r.step, sentAt);
  setText(".wm-cmp-step", String(r.step));
  setText(".wm-cmp-fps", String(stats.fps));
  setText(".wm-cmp-latency", latencyText());
  setText(".wm-cmp-real-reward", r.real_reward.toFixed(2));
  setText(".wm-cmp-real-return", r.real_ret.toFixed(1));
  setText(".wm-cmp-real-state", r.real_ended ? "ended" : "running");
  $(".wm-cmp-real-panel").classList.toggle("wm-cmp-ended", r.real_ended);
  const allEnded = r.panels.every((p) => p.ended);
  const status = r.real_ended ? `The real episode ended after ${r.step} steps: everything holds. Reset starts a new one`
    : r.paused ? "Paused: press Pause to play on"
    : allEnded ? "Every dream predicted an end (flagged in red); the real env goes on. Reset restarts all"
    : r.waiting ? "Hold a key to drive every dream and the real env (this env has no 'do nothing' action)"
    : "Playing: one key stream drives every panel";
  setText(".wm-cmp-status", status);
}

runLoop(render, ".wm-cmp-status");

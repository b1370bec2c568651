// The page: wires the camera, the edge connection, flow control, drawing and stats to the controls.
import { cameraUnavailableReason, describeCameraError, FrameGrabber, listCameras, openCamera, stopStream }
  from "./camera.js";
import { EdgeConnection } from "./connection.js";
import { drawResult, handLabel } from "./draw.js";
import { InFlight } from "./flow.js";
import { defaultEdgeUrl, describeError, encodeFrame } from "./protocol.js";
import { fmt, RateMeter, SampleWindow } from "./stats.js";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "hgr.apiKey"; // sessionStorage only, and only when the user asks: never in URLs
const MIN_WAIT_MS = 1000;
const MAX_WAIT_MS = 5000;
const EDGE_MESSAGE_SHOWN_MS = 8000;

const ui = {
  badge: $("connection-state"),
  video: $("video"),
  overlay: $("overlay"),
  wrap: $("video-wrap"),
  placeholder: $("video-placeholder"),
  total: $("total-fingers"),
  hands: $("hands-list"),
  message: $("message"),
  start: $("start"),
  stop: $("stop"),
  camera: $("camera"),
  resolution: $("resolution"),
  fps: $("fps"),
  fpsValue: $("fps-value"),
  quality: $("quality"),
  qualityValue: $("quality-value"),
  numHands: $("num-hands"),
  model: $("model"),
  inFlight: $("in-flight"),
  mirrored: $("mirrored"),
  details: $("connection-details"),
  edgeUrl: $("edge-url"),
  apiKey: $("api-key"),
  rememberKey: $("remember-key"),
  stat: {
    sent: $("stat-fps-sent"),
    answered: $("stat-fps-answered"),
    latency: $("stat-latency"),
    dropped: $("stat-dropped"),
    skipped: $("stat-skipped"),
    server: $("stat-server"),
    frame: $("stat-frame"),
    edge: $("stat-edge"),
  },
};

const connection = new EdgeConnection();
const grabber = new FrameGrabber(ui.video);
const flow = new InFlight(1, MAX_WAIT_MS);
const stats = {
  sent: new RateMeter(),
  answered: new RateMeter(),
  latency: new SampleWindow(120),
  queue: new SampleWindow(30),
  infer: new SampleWindow(30),
  droppedByEdge: 0,
  skipped: 0,
  frameBytes: 0,
  frameSize: "",
};
const state = {
  running: false,
  stream: null,
  timer: null,
  seq: 0,
  result: null,
  hello: null,
  sentOpts: "", // JSON of the opts this connection last received
  messageTimer: null,
};

// ---------- messages and connection state ----------

function showMessage(text, { transient = false } = {}) {
  clearTimeout(state.messageTimer);
  ui.message.textContent = text;
  ui.message.hidden = !text;
  if (text && transient) {
    state.messageTimer = setTimeout(() => showMessage(""), EDGE_MESSAGE_SHOWN_MS);
  }
}

connection.addEventListener("state", (event) => {
  const { state: connState, text, code } = event.detail;
  ui.badge.dataset.state = connState;
  ui.badge.textContent = text;
  if (connState === "open") {
    state.sentOpts = ""; // a new connection starts from the edge's defaults: send ours again
    showMessage("");
  } else {
    // Frames sent on a closed socket will never be answered; free the slots now, and stop showing
    // hands from a result that is no longer live.
    flow.clear();
    if (state.result) {
      state.result = null;
      renderResult();
    }
  }
  // The badge always says what is going on; the message box is for what the user can act on.
  if (connState === "failed" || (connState === "waiting" && [1003, 1008, 1009, 1013].includes(code))) {
    showMessage(text);
  }
  if (connState === "failed" && code === 1008) {
    ui.details.open = true;
    ui.apiKey.focus();
  }
  if (connState === "failed" && state.running) {
    stop({ keepMessage: true });
  }
});

connection.addEventListener("message", (event) => {
  const message = event.detail;
  if (message.type === "result") {
    onResult(message);
  } else if (message.type === "hello") {
    onHello(message);
  } else if (message.type === "error") {
    if (typeof message.seq === "number") {
      flow.answered(message.seq); // an answered-with-error frame no longer holds a slot
    }
    if (message.code === "bad_options" || message.code === "model_unavailable") {
      state.sentOpts = ""; // the edge kept its previous options; offer ours again with the next frame
    }
    showMessage(describeError(message), { transient: true });
  }
});

// ---------- hello and results ----------

function onHello(hello) {
  state.hello = hello;
  const models = Array.isArray(hello.models) ? hello.models : [];
  ui.stat.edge.textContent = [hello.edge_id, hello.version && `v${hello.version}`].filter(Boolean).join(" · ")
    || "connected";
  // Offer only the models this edge has; fall back to one it has if the chosen one is missing.
  for (const option of ui.model.options) {
    option.disabled = models.length > 0 && !models.includes(option.value);
  }
  if (models.length && !models.includes(ui.model.value)) {
    ui.model.value = models[0];
  }
}

function onResult(result) {
  const now = performance.now();
  // Older frames still pending were dropped by the edge (latest frame wins); `result.dropped` counts them.
  flow.answered(result.seq);
  stats.answered.mark(now);
  if (typeof result.ts === "number") {
    stats.latency.add(now - result.ts);
  }
  if (typeof result.dropped === "number") {
    stats.droppedByEdge += result.dropped; // the edge counts drops since its previous result
  }
  // An unanswered frame is given up after a few round trips (the edge may have dropped it, e.g. over
  // its fps limit; such drops are reported in the next result's `dropped`), never less than 1 s.
  const p95 = stats.latency.percentile(95);
  flow.timeoutMs = Math.min(MAX_WAIT_MS, Math.max(MIN_WAIT_MS, Number.isFinite(p95) ? 3 * p95 : MAX_WAIT_MS));
  const timing = result.timing || {};
  stats.queue.add(timing.queue_ms);
  stats.infer.add(timing.infer_ms);
  state.result = result;
  renderResult();
}

function renderResult() {
  const result = state.result;
  drawResult(ui.overlay, result, ui.mirrored.checked);
  if (!result) {
    ui.total.textContent = "–";
    ui.hands.replaceChildren();
    return;
  }
  ui.total.textContent = String(result.total_fingers ?? 0);
  const items = (result.hands || []).map((hand) => {
    const li = document.createElement("li");
    li.textContent = handLabel(hand);
    li.dataset.handedness = hand.handedness;
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.textContent = "No hand in view";
    li.className = "none";
    items.push(li);
  }
  ui.hands.replaceChildren(...items);
}

function fitOverlay() {
  const dpr = window.devicePixelRatio || 1;
  const width = Math.round(ui.wrap.clientWidth * dpr);
  const height = Math.round(ui.wrap.clientHeight * dpr);
  if (ui.overlay.width !== width || ui.overlay.height !== height) {
    ui.overlay.width = width;
    ui.overlay.height = height;
  }
  drawResult(ui.overlay, state.result, ui.mirrored.checked);
}

// ---------- capture loop ----------

function targetFps() {
  const wanted = Number(ui.fps.value) || 15;
  const edgeMax = state.hello && state.hello.limits && state.hello.limits.max_fps;
  return edgeMax ? Math.min(wanted, edgeMax) : wanted;
}

function frameOptions() {
  // Frames from getUserMedia are never mirrored, whatever the preview shows.
  return { num_hands: Number(ui.numHands.value), mirrored: false, model: ui.model.value };
}

/** The options to attach to the next frame: only when they differ from what this connection has
 *  (options are sticky on the edge: they hold until a frame sends new ones). */
function optionsToSend() {
  const opts = frameOptions();
  const key = JSON.stringify(opts);
  if (key === state.sentOpts) {
    return undefined;
  }
  state.sentOpts = key;
  return opts;
}

async function captureAndSend(now) {
  flow.expire(now);
  if (!connection.isOpen() || !grabber.ready()) {
    return;
  }
  if (!flow.canSend() || connection.buffered() > 0) {
    stats.skipped += 1; // no backlog: this tick's frame is simply not taken
    return;
  }
  const frame = await grabber.grab(Number(ui.quality.value));
  const maxBytes = state.hello && state.hello.limits && state.hello.limits.max_frame_bytes;
  if (maxBytes && frame.bytes.length > maxBytes - 1024) {
    showMessage(`Frames are ${(frame.bytes.length / 1024).toFixed(0)} KB, over the edge's limit of `
      + `${(maxBytes / 1024).toFixed(0)} KB: lower the resolution or JPEG quality.`, { transient: true });
    return;
  }
  state.seq += 1;
  const ts = Math.round(now); // capture time: latency then includes JPEG encoding, as the user sees it
  const opts = optionsToSend();
  if (connection.send(encodeFrame({ seq: state.seq, ts, image: frame.bytes, opts }))) {
    flow.sent(state.seq, ts);
    stats.sent.mark(ts);
    stats.frameBytes = frame.bytes.length;
    stats.frameSize = `${frame.width}×${frame.height}`;
  }
}

async function tick() {
  const started = performance.now();
  try {
    await captureAndSend(started);
  } catch (err) {
    showMessage(`Could not capture a frame: ${err.message}`, { transient: true });
  }
  if (state.running) {
    const interval = 1000 / targetFps();
    state.timer = setTimeout(tick, Math.max(0, interval - (performance.now() - started)));
  }
}

// ---------- stats ----------

function resetStats() {
  for (const key of ["sent", "answered", "latency", "queue", "infer"]) {
    stats[key].reset();
  }
  stats.droppedByEdge = stats.skipped = stats.frameBytes = 0;
  stats.frameSize = "";
}

function renderStats() {
  const now = performance.now();
  const s = ui.stat;
  s.sent.textContent = state.running ? fmt(stats.sent.rate(now)) : "–";
  s.answered.textContent = state.running ? fmt(stats.answered.rate(now)) : "–";
  s.latency.textContent = `${fmt(stats.latency.percentile(50), 0)} / ${fmt(stats.latency.percentile(95), 0)}`;
  s.dropped.textContent = String(stats.droppedByEdge);
  s.skipped.textContent = String(stats.skipped);
  s.server.textContent = `${fmt(stats.queue.mean())} / ${fmt(stats.infer.mean())}`;
  s.frame.textContent = stats.frameBytes ? `${stats.frameSize}, ${(stats.frameBytes / 1024).toFixed(0)} KB` : "–";
}

// ---------- camera ----------

function cameraSettings() {
  const [width, height] = ui.resolution.value.split("x").map(Number);
  return { deviceId: ui.camera.value, width, height, fps: Number(ui.fps.value) };
}

async function refreshCameras() {
  const chosen = ui.camera.value;
  const cameras = await listCameras().catch(() => []);
  const options = [new Option("Default camera", "")];
  cameras.forEach((camera, i) => {
    options.push(new Option(camera.label || `Camera ${i + 1}`, camera.deviceId));
  });
  ui.camera.replaceChildren(...options);
  if (cameras.some((c) => c.deviceId === chosen)) {
    ui.camera.value = chosen;
  }
}

async function openChosenCamera() {
  stopStream(state.stream);
  state.stream = await openCamera(cameraSettings());
  ui.video.srcObject = state.stream;
  await ui.video.play().catch(() => {}); // autoplay+muted already plays; play() may reject harmlessly
  ui.placeholder.hidden = true;
}

// ---------- start / stop ----------

function apiKey() {
  const key = ui.apiKey.value.trim();
  if (ui.rememberKey.checked && key) {
    sessionStorage.setItem(KEY_STORAGE, key);
  } else {
    sessionStorage.removeItem(KEY_STORAGE);
  }
  return key;
}

async function start() {
  const reason = cameraUnavailableReason();
  if (reason) {
    showMessage(reason);
    return;
  }
  ui.start.disabled = true;
  showMessage("");
  try {
    await openChosenCamera();
  } catch (err) {
    showMessage(describeCameraError(err));
    ui.start.disabled = false;
    return;
  }
  await refreshCameras(); // labels are only visible once permission is granted
  resetStats();
  state.seq = 0;
  state.result = null;
  state.hello = null;
  flow.limit = Number(ui.inFlight.value);
  flow.timeoutMs = MAX_WAIT_MS;
  flow.clear();
  state.running = true;
  ui.stop.disabled = false;
  connection.start(ui.edgeUrl.value.trim() || defaultEdgeUrl(window.location), apiKey());
  tick();
}

function stop({ keepMessage = false } = {}) {
  state.running = false;
  clearTimeout(state.timer);
  connection.stop();
  stopStream(state.stream);
  state.stream = null;
  ui.video.srcObject = null;
  ui.placeholder.hidden = false;
  state.result = null;
  renderResult();
  renderStats();
  ui.start.disabled = false;
  ui.stop.disabled = true;
  if (!keepMessage) {
    showMessage("");
  }
}

// ---------- controls ----------

function bindControls() {
  ui.start.addEventListener("click", start);
  ui.stop.addEventListener("click", () => stop());
  ui.fps.addEventListener("input", () => { ui.fpsValue.textContent = ui.fps.value; });
  ui.quality.addEventListener("input", () => { ui.qualityValue.textContent = ui.quality.value; });
  ui.inFlight.addEventListener("change", () => { flow.limit = Number(ui.inFlight.value); });
  ui.mirrored.addEventListener("change", () => {
    ui.wrap.dataset.mirrored = String(ui.mirrored.checked);
    renderResult();
  });
  for (const select of [ui.camera, ui.resolution]) {
    select.addEventListener("change", async () => {
      if (!state.running) {
        return;
      }
      try {
        await openChosenCamera();
      } catch (err) {
        showMessage(describeCameraError(err));
      }
    });
  }
  ui.rememberKey.addEventListener("change", () => {
    if (!ui.rememberKey.checked) {
      sessionStorage.removeItem(KEY_STORAGE);
    }
  });
  // Enter in a text field must not submit the form (which would reload the page).
  $("controls").addEventListener("submit", (event) => event.preventDefault());
}

function init() {
  ui.edgeUrl.placeholder = defaultEdgeUrl(window.location);
  const savedKey = sessionStorage.getItem(KEY_STORAGE);
  if (savedKey) {
    ui.apiKey.value = savedKey;
    ui.rememberKey.checked = true;
  }
  ui.wrap.dataset.mirrored = String(ui.mirrored.checked);
  bindControls();
  new ResizeObserver(fitOverlay).observe(ui.wrap);
  ui.video.addEventListener("loadedmetadata", () => {
    // Size the box to the camera's aspect ratio so normalised landmarks land on the picture.
    const { videoWidth: w, videoHeight: h } = ui.video;
    ui.wrap.style.setProperty("--aspect", `${w} / ${h}`);
    ui.wrap.style.setProperty("--aspect-number", String(w / h));
    fitOverlay();
  });
  setInterval(renderStats, 500);
  const reason = cameraUnavailableReason();
  if (reason) {
    showMessage(reason);
  }
  refreshCameras();
}

init();

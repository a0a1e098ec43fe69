// Orpheus voice playground: streams POST /v1/audio/speech (stream_format "sse", PCM16 24 kHz
// mono) and plays each delta on a Web Audio clock as it arrives. No build step, no libraries.
//
// The page exposes what it measured in the DOM for people and tests alike: each figure's
// element has a stable id and its raw number in data-value; #playground[data-state] is
// loading | ready | requesting | streaming | playing | done | stopped | error.

const SAMPLE_RATE = 24000;
const LEAD_S = 0.03; // first audio is scheduled this far ahead of the audio clock
const PEAK_SAMPLES = 240; // one waveform column summarises 10 ms
const MIN_VIEW_S = 3; // the waveform's time axis never shows less than this
const KEY_STORAGE = "orpheus.playground.apiKey";
const OTHER_VOICE = "__other__";

const $ = (id) => document.getElementById(id);
const ui = {
  main: $("playground"),
  form: $("speak-form"),
  model: $("model"),
  voice: $("voice"),
  voiceCustom: $("voice-custom"),
  voiceCustomLabel: $("voice-custom-label"),
  apiKey: $("api-key"),
  text: $("text"),
  tags: $("tags"),
  speak: $("speak"),
  stop: $("stop"),
  status: $("status"),
  error: $("error"),
  canvas: $("waveform"),
};

class ApiError extends Error {
  constructor(message, status = 0, code = "") {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---------------------------------------------------------------- HTTP

function authHeaders() {
  const key = ui.apiKey.value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// OpenAI's error shape: {"error": {"message", "type", "param", "code"}}.
async function apiError(response) {
  let message = `HTTP ${response.status} ${response.statusText}`.trim();
  let code = "";
  try {
    const body = await response.json();
    if (body?.error?.message) message = body.error.message;
    code = body?.error?.code ?? body?.error?.type ?? "";
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(message, response.status, code);
}

async function getJSON(path) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) throw await apiError(response);
  return response.json();
}

function listOf(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const key of keys) if (Array.isArray(body?.[key])) return body[key];
  return [];
}

function voiceEntry(item) {
  if (typeof item === "string") return { id: item, lora: false, loaded: null };
  const id = item.id ?? item.name ?? item.voice;
  const kind = String(item.type ?? item.kind ?? item.source ?? "").toLowerCase();
  const lora = item.lora === true || kind === "lora" || kind === "adapter";
  return { id, lora, loaded: item.loaded ?? null };
}

// ---------------------------------------------------------------- SSE

// Yields each event's parsed JSON data. Handles CRLF split across reads and multi-line data.
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let raw = "";
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    raw += value;
    const keep = raw.endsWith("\r") ? 1 : 0; // a CR whose LF may be in the next read
    pending += raw.slice(0, raw.length - keep).replace(/\r\n?/g, "\n");
    raw = raw.slice(raw.length - keep);
    let end;
    while ((end = pending.indexOf("\n\n")) >= 0) {
      const block = pending.slice(0, end);
      pending = pending.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data && data !== "[DONE]") yield JSON.parse(data);
    }
  }
}

function base64Bytes(text) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// PCM16 little-endian -> Float32, carrying an odd byte over to the next delta.
class Pcm16Decoder {
  carry = null;

  decode(bytes) {
    if (this.carry) {
      const joined = new Uint8Array(bytes.length + 1);
      joined[0] = this.carry;
      joined.set(bytes, 1);
      bytes = joined;
      this.carry = null;
    }
    const n = bytes.length >> 1;
    if (bytes.length & 1) this.carry = bytes[bytes.length - 1];
    const view = new DataView(bytes.buffer, bytes.byteOffset, n * 2);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true) / 32768;
    return out;
  }
}

// ---------------------------------------------------------------- playback

let audioContext = null;

async function audioClock() {
  if (!audioContext) {
    try {
      audioContext = new AudioContext({ sampleRate: SAMPLE_RATE, latencyHint: "interactive" });
    } catch {
      audioContext = new AudioContext(); // buffers stay 24 kHz; the context resamples
    }
  }
  if (audioContext.state !== "running") await audioContext.resume();
  return audioContext;
}

// Schedules each chunk right after the previous one on the audio clock, so playback starts at
// the first chunk and stays gapless while audio arrives faster than real time.
class Player {
  constructor(ctx, onChange) {
    this.ctx = ctx;
    this.onChange = onChange;
    this.sources = new Set();
    this.nextTime = 0;
    this.scheduledSamples = 0;
    this.playedSamples = 0;
    this.underruns = 0;
    this.runs = []; // {at: clock time, offset: first sample}: a new run after each gap
    this.gain = ctx.createGain();
    this.gain.connect(ctx.destination);
  }

  push(samples) {
    if (!samples.length) return;
    const buffer = this.ctx.createBuffer(1, samples.length, SAMPLE_RATE);
    buffer.copyToChannel(samples, 0);
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.gain);
    const now = this.ctx.currentTime;
    if (this.nextTime < now + 0.005) {
      if (this.runs.length) this.underruns += 1; // the previous audio ran out before this came
      this.nextTime = now + LEAD_S;
      this.runs.push({ at: this.nextTime, offset: this.scheduledSamples });
    }
    source.onended = () => {
      if (!this.sources.delete(source)) return;
      this.playedSamples += samples.length;
      this.onChange();
    };
    this.sources.add(source);
    source.start(this.nextTime);
    this.nextTime += samples.length / SAMPLE_RATE;
    this.scheduledSamples += samples.length;
  }

  get idle() {
    return this.sources.size === 0;
  }

  // The sample being heard now (for the waveform's playhead).
  position() {
    const now = this.ctx.currentTime;
    let sample = 0;
    for (let i = 0; i < this.runs.length && this.runs[i].at <= now; i++) {
      const next = this.runs[i + 1]?.offset ?? this.scheduledSamples;
      sample = Math.min(next, this.runs[i].offset + (now - this.runs[i].at) * SAMPLE_RATE);
    }
    return sample;
  }

  stop() {
    for (const source of this.sources) {
      source.onended = null;
      try {
        source.stop();
      } catch {
        // never started
      }
    }
    this.sources.clear();
    this.gain.disconnect();
  }
}

// ---------------------------------------------------------------- waveform

class Waveform {
  constructor(canvas) {
    this.canvas = canvas;
    this.reset();
    new ResizeObserver(() => this.draw(0)).observe(canvas);
  }

  reset() {
    this.mins = [];
    this.maxs = [];
    this.fill = 0; // samples in the last, partial column
    this.samples = 0;
  }

  push(samples) {
    for (let i = 0; i < samples.length; i++) {
      if (this.fill === 0) {
        this.mins.push(0);
        this.maxs.push(0);
      }
      const last = this.mins.length - 1;
      const v = samples[i];
      if (v < this.mins[last]) this.mins[last] = v;
      if (v > this.maxs[last]) this.maxs[last] = v;
      this.fill = (this.fill + 1) % PEAK_SAMPLES;
    }
    this.samples += samples.length;
  }

  draw(playedSample) {
    const { canvas } = this;
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const height = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const g = canvas.getContext("2d");
    const style = getComputedStyle(canvas);
    g.clearRect(0, 0, width, height);
    const mid = height / 2;
    g.fillStyle = style.getPropertyValue("--axis").trim() || "#ccc";
    g.fillRect(0, Math.floor(mid), width, Math.max(1, Math.round(dpr)));

    const columns = Math.max(this.mins.length, (MIN_VIEW_S * SAMPLE_RATE) / PEAK_SAMPLES);
    const perPixel = columns / width;
    const playedColumn = playedSample / PEAK_SAMPLES;
    const played = style.getPropertyValue("--played").trim() || "#4f46e5";
    const queued = style.getPropertyValue("--queued").trim() || "#a5b4fc";
    const scale = mid * 0.95;
    for (let x = 0; x < width; x++) {
      const from = Math.floor(x * perPixel);
      if (from >= this.mins.length) break;
      const to = Math.min(this.mins.length, Math.max(from + 1, Math.floor((x + 1) * perPixel)));
      let lo = 0;
      let hi = 0;
      for (let c = from; c < to; c++) {
        if (this.mins[c] < lo) lo = this.mins[c];
        if (this.maxs[c] > hi) hi = this.maxs[c];
      }
      g.fillStyle = from < playedColumn ? played : queued;
      const top = mid - hi * scale;
      g.fillRect(x, top, 1, Math.max(1, mid - lo * scale - top));
    }
    if (playedSample > 0 && playedSample < this.samples) {
      g.fillStyle = style.getPropertyValue("--playhead").trim() || "#111";
      g.fillRect(Math.round(playedColumn / perPixel), 0, Math.max(1, Math.round(dpr)), height);
    }
    g.fillStyle = style.getPropertyValue("--label").trim() || "#666";
    g.font = `${11 * dpr}px system-ui, sans-serif`;
    g.textBaseline = "top";
    g.fillText("0 s", 4 * dpr, 4 * dpr);
    const span = `${((columns * PEAK_SAMPLES) / SAMPLE_RATE).toFixed(1)} s`;
    g.fillText(span, width - g.measureText(span).width - 4 * dpr, 4 * dpr);
  }
}

// ---------------------------------------------------------------- figures

const figures = {
  "ttfa-client": (v) => `${Math.round(v)} ms`,
  "ttfa-server": (v) => `${Math.round(v)} ms`,
  "audio-seconds": (v) => `${v.toFixed(2)} s`,
  "played-seconds": (v) => `${v.toFixed(2)} s`,
  "server-audio-seconds": (v) => `${v.toFixed(2)} s`,
  "head-silence-ms": (v) => `${Math.round(v)} ms`,
  "bytes-received": (v) => `${v.toLocaleString("en-US")} B`,
  underruns: (v) => String(v),
  "node-id": (v) => String(v),
  "session-id": (v) => String(v),
};

function setFigure(id, value) {
  const element = $(id);
  if (value === null || value === undefined || value === "") {
    element.dataset.value = "";
    element.textContent = "–";
    element.title = "";
    return;
  }
  element.dataset.value = String(value);
  element.textContent = figures[id](value);
  element.title = String(value);
}

function resetFigures() {
  for (const id of Object.keys(figures)) setFigure(id, null);
}

function setState(state, status) {
  ui.main.dataset.state = state;
  ui.status.textContent = status;
  const busy = state === "requesting" || state === "streaming" || state === "playing";
  ui.stop.disabled = !busy;
}

function showError(error) {
  ui.error.textContent = error.message;
  ui.error.dataset.status = error.status ? String(error.status) : "";
  ui.error.dataset.code = error.code ? String(error.code) : "";
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
  ui.error.dataset.status = "";
  ui.error.dataset.code = "";
}

// The done event's "orpheus" object carries the server's figures (inference_server/http/speech.py).
function serverFigures(event) {
  const o = event.orpheus ?? {};
  setFigure("ttfa-server", o.ttfa_ms);
  if (o.node_ttfa_ms !== undefined && o.node_ttfa_ms !== null) {
    $("ttfa-server").title = `front door ${o.ttfa_ms} ms; the node's own ${o.node_ttfa_ms} ms`;
  }
  setFigure("server-audio-seconds", o.audio_seconds);
  setFigure("head-silence-ms", o.head_silence_trimmed_ms);
  setFigure("node-id", o.node_id);
  setFigure("session-id", o.session_id);
}

// ---------------------------------------------------------------- speaking

const waveform = new Waveform(ui.canvas);
let current = null; // {controller, player}

function selectedVoice() {
  return ui.voice.value === OTHER_VOICE ? ui.voiceCustom.value.trim() : ui.voice.value;
}

function stopCurrent(state = "stopped", status = "Stopped") {
  if (!current) return;
  current.controller.abort();
  current.player.stop();
  current = null;
  setState(state, status);
}

async function speak() {
  stopCurrent();
  clearError();
  resetFigures();
  waveform.reset();
  waveform.draw(0);

  const input = ui.text.value.trim();
  const voice = selectedVoice();
  if (!input || !voice) {
    showError(new ApiError(input ? "Choose or type a voice." : "Type some text to speak."));
    setState("error", "Error");
    return;
  }

  const clicked = performance.now();
  const ctx = await audioClock();
  const controller = new AbortController();
  const stream = { bytes: 0, samples: 0, done: null };
  const run = {};
  const finishIfPlayed = () => {
    setFigure("played-seconds", run.player.playedSamples / SAMPLE_RATE);
    if (stream.done && run.player.idle && current === run) {
      current = null;
      waveform.draw(stream.samples);
      setState("done", "Done");
      refreshVoiceLabels();
    }
  };
  run.controller = controller;
  run.player = new Player(ctx, finishIfPlayed);
  current = run;
  setState("requesting", "Requesting…");

  const animate = () => {
    if (current !== run) return;
    waveform.draw(run.player.position());
    requestAnimationFrame(animate);
  };
  requestAnimationFrame(animate);

  try {
    const response = await fetch("v1/audio/speech", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({
        model: ui.model.value,
        input,
        voice,
        response_format: "pcm",
        stream_format: "sse",
      }),
      signal: controller.signal,
    });
    if (!response.ok) throw await apiError(response);
    setState("streaming", "Streaming…");
    const decoder = new Pcm16Decoder();
    for await (const event of sseEvents(response.body)) {
      if (event.type === "speech.audio.delta") {
        const bytes = base64Bytes(event.audio ?? event.delta ?? "");
        const samples = decoder.decode(bytes);
        if (stream.bytes === 0 && bytes.length) {
          setFigure("ttfa-client", performance.now() - clicked);
        }
        stream.bytes += bytes.length;
        stream.samples += samples.length;
        run.player.push(samples);
        waveform.push(samples);
        setFigure("bytes-received", stream.bytes);
        setFigure("audio-seconds", stream.samples / SAMPLE_RATE);
        setFigure("underruns", run.player.underruns);
      } else if (event.type === "speech.audio.done") {
        stream.done = event;
        serverFigures(event);
      } else if (event.type === "error" || event.error) {
        const error = event.error ?? event; // mid-stream: {"type": "error", "error": {...}}
        const message = error.message ?? "The server ended the stream with an error.";
        throw new ApiError(message, 0, error.code ?? error.type ?? "");
      }
    }
    if (!stream.done) throw new ApiError("The stream ended before the server said it was done.");
    if (current === run) setState("playing", "Playing…");
    finishIfPlayed();
  } catch (error) {
    if (current !== run) return; // stopped or replaced: not an error
    if (error.name === "AbortError") return;
    run.player.stop();
    current = null;
    waveform.draw(0);
    showError(error instanceof ApiError ? error : new ApiError(String(error.message ?? error)));
    setState("error", "Error");
  }
}

// ---------------------------------------------------------------- lists

function option(value, label) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = label;
  return element;
}

async function loadLists() {
  setState("loading", "Loading voices…");
  const keepModel = ui.model.value;
  const keepVoice = ui.voice.value;
  try {
    const [models, voices] = await Promise.all([getJSON("v1/models"), getJSON("v1/audio/voices")]);
    ui.model.replaceChildren(
      ...listOf(models, "data", "models").map((m) => option(m.id ?? m, m.id ?? m)),
    );
    if (keepModel) ui.model.value = keepModel;
    if (!ui.model.value && ui.model.options.length) ui.model.selectedIndex = 0;

    const entries = listOf(voices, "voices", "data").map(voiceEntry).filter((v) => v.id);
    const groups = [
      ["Base voices", entries.filter((v) => !v.lora)],
      ["LoRA voices", entries.filter((v) => v.lora)],
    ];
    const children = [];
    for (const [label, list] of groups) {
      if (!list.length) continue;
      const group = document.createElement("optgroup");
      group.label = label;
      for (const v of list) {
        group.append(option(v.id, voiceLabel(v)));
      }
      children.push(group);
    }
    children.push(option(OTHER_VOICE, "Other voice…"));
    ui.voice.replaceChildren(...children);
    ui.voice.value = keepVoice || entries[0]?.id || OTHER_VOICE;
    if (!ui.voice.value) ui.voice.value = entries[0]?.id ?? OTHER_VOICE;
    syncVoiceCustom();
    clearError();
    setState("ready", "Ready");
  } catch (error) {
    if (!ui.voice.options.length) ui.voice.replaceChildren(option(OTHER_VOICE, "Other voice…"));
    syncVoiceCustom();
    const hint = error.status === 401 ? "\nEnter an API key above." : "";
    const message = `Could not list voices: ${error.message}${hint}`;
    showError(new ApiError(message, error.status, error.code));
    setState("error", "Error");
  }
}

// After speaking, a LoRA voice may have been loaded: update the labels, nothing else.
async function refreshVoiceLabels() {
  try {
    const voices = await getJSON("v1/audio/voices");
    for (const v of listOf(voices, "voices", "data").map(voiceEntry)) {
      const element = [...ui.voice.options].find((o) => o.value === v.id);
      if (element) element.textContent = voiceLabel(v);
    }
  } catch {
    // the labels stay as they were
  }
}

function voiceLabel(v) {
  return v.id + (v.lora && v.loaded !== null ? (v.loaded ? " (loaded)" : " (on disk)") : "");
}

function syncVoiceCustom() {
  ui.voiceCustomLabel.hidden = ui.voice.value !== OTHER_VOICE;
}

// ---------------------------------------------------------------- wiring

function insertTag(tag) {
  const { text } = ui;
  const start = text.selectionStart ?? text.value.length;
  const end = text.selectionEnd ?? start;
  const before = text.value.slice(0, start);
  const after = text.value.slice(end);
  const lead = before && !/\s$/.test(before) ? " " : "";
  const trail = after && !/^\s/.test(after) ? " " : "";
  text.setRangeText(lead + tag + trail, start, end, "end");
  text.focus();
}

function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return "";
  }
}

function storeKey(value) {
  try {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: the key lives as long as the page
  }
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  speak();
});
ui.stop.addEventListener("click", () => stopCurrent());
ui.voice.addEventListener("change", () => {
  syncVoiceCustom();
  if (ui.voice.value === OTHER_VOICE) ui.voiceCustom.focus();
});
ui.tags.addEventListener("click", (event) => {
  const tag = event.target.closest("button[data-tag]")?.dataset.tag;
  if (tag) insertTag(tag);
});
ui.text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) ui.form.requestSubmit();
});
ui.apiKey.value = storedKey();
ui.apiKey.addEventListener("input", () => storeKey(ui.apiKey.value.trim()));
ui.apiKey.addEventListener("change", () => loadLists());

resetFigures();
waveform.draw(0);
loadLists();

// The Aurl studio: generate, continue, infill and harmonize through the HTTP API, draw the
// piece as a piano roll with a colour per track, and play it with server-rendered audio.
"use strict";

const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const HEADER = 20;  // px of the bar-number strip at the top of the roll
const $ = (id) => document.getElementById(id);
const state = { info: null, piece: null, upload: null, selection: null, dragFrom: null };

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function numberOr(id, fallback) {
  const value = $(id).value.trim();
  return value === "" ? fallback : Number(value);
}

function sampling() {
  const body = { temperature: numberOr("temperature", 1), top_p: numberOr("top_p", 0.95),
                 with_notes: true, model: $("model").value || null };
  const seed = numberOr("seed", null);
  if (seed !== null) body.seed = seed;
  const guidance = numberOr("guidance", null);  // empty: the server's default
  if (guidance !== null) body.guidance = guidance;
  const steer = numberOr("steer", null);  // empty: the server's default
  if (steer !== null) body.steer = steer;
  return body;
}

function controls() {
  const out = {};
  for (const name of ["style", "key", "time_signature", "instruments", "density", "polyphony",
                      "register", "chords"]) {
    const value = $(name).value.trim();
    if (value && !$(name).closest("label").classList.contains("off")) out[name] = value;
  }
  const tempo = numberOr("tempo", null);
  if (tempo !== null) out.tempo = tempo;
  return out;
}

function fill(select, values) {
  for (const value of values) {
    const option = document.createElement("option");
    option.value = option.textContent = value;
    select.appendChild(option);
  }
}

async function loadInfo() {
  const info = await (await fetch("/info")).json();
  state.info = info;
  const model = $("model");
  model.innerHTML = "";
  fill(model, info.models);
  model.value = info.default;
  showControls(info.controls);
  $("bars").max = info.limits.max_bars;
  setStatus(`Ready: ${info.default}`);
}

function showControls(choices) {
  for (const label of document.querySelectorAll("[data-control]")) {
    label.classList.toggle("off", !(label.dataset.control in choices));
  }
  for (const name of ["style", "key", "time_signature"]) {
    const select = $(name);
    select.length = 1;  // keep the "default/any" option
    if (Array.isArray(choices[name])) fill(select, choices[name]);
  }
}

// -- the piano roll -------------------------------------------------------------------------

function draw() {
  const canvas = $("roll");
  const ctx = canvas.getContext("2d");
  const width = canvas.width = canvas.clientWidth || 1200;
  const height = canvas.height;
  ctx.clearRect(0, 0, width, height);
  const piece = state.piece;
  if (!piece || !piece.note_list) return;
  const notes = piece.note_list;
  const pitches = notes.map((n) => n.pitch);
  const low = Math.min(...pitches, 60) - 2, high = Math.max(...pitches, 72) + 2;
  const total = Math.max(piece.seconds, ...piece.bar_starts, 0.001);
  const x = (t) => (t / total) * width;
  const rowH = (height - HEADER) / (high - low + 1);
  if (state.selection) {
    const [a, b] = state.selection;
    ctx.fillStyle = "rgba(47, 91, 211, 0.12)";
    ctx.fillRect(x(barStart(a)), 0, x(barStart(b + 1)) - x(barStart(a)), height);
  }
  ctx.strokeStyle = "#d7dbe3";
  ctx.fillStyle = "#6b7280";
  ctx.font = "11px system-ui, sans-serif";
  piece.bar_starts.forEach((t, i) => {
    ctx.beginPath(); ctx.moveTo(x(t) + 0.5, 0); ctx.lineTo(x(t) + 0.5, height); ctx.stroke();
    ctx.fillText(String(i + 1), x(t) + 3, 14);
  });
  for (const n of notes) {
    ctx.fillStyle = COLOURS[n.track % COLOURS.length];
    const y = HEADER + (high - n.pitch) * rowH;
    ctx.fillRect(x(n.start), y, Math.max(x(n.duration), 2), Math.max(rowH - 1, 1));
  }
  canvas.dataset.notes = String(notes.length);  // what the browser test reads
}

function barStart(bar) {  // bar: 1-based; past the last bar, the piece's end
  const starts = state.piece.bar_starts;
  return bar - 1 < starts.length ? starts[bar - 1] : state.piece.seconds;
}

function barAt(event) {
  const canvas = $("roll");
  const piece = state.piece;
  const total = Math.max(piece.seconds, ...piece.bar_starts, 0.001);
  const t = ((event.clientX - canvas.getBoundingClientRect().left) / canvas.clientWidth) * total;
  let bar = 1;
  piece.bar_starts.forEach((start, i) => { if (t >= start) bar = i + 1; });
  return bar;
}

function select(a, b) {
  state.selection = [Math.min(a, b), Math.max(a, b)];
  const [lo, hi] = state.selection;
  $("selection").textContent = lo === hi ? `Bar ${lo}` : `Bars ${lo}-${hi}`;
  $("infill").disabled = false;
  draw();
}

function showTracks() {
  const box = $("tracks");
  box.innerHTML = "";
  (state.piece.tracks || []).forEach((name, k) => {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" value="${k}"> <span class="swatch"></span>`;
    label.querySelector(".swatch").style.background = COLOURS[k % COLOURS.length];
    label.appendChild(document.createTextNode(" " + name));
    box.appendChild(label);
  });
}

// -- actions -------------------------------------------------------------------------------

function show(piece, took) {
  state.piece = piece;
  state.selection = null;
  $("selection").textContent = "No bars selected";
  $("infill").disabled = true;
  $("play").disabled = false;
  $("harmonize").disabled = (piece.tracks || []).length !== 1;
  const midi = $("download-midi");
  midi.href = `data:audio/midi;base64,${piece.midi}`;
  midi.classList.remove("disabled");
  $("download-wav").classList.add("disabled");
  $("player").removeAttribute("src");
  showTracks();
  draw();
  const speed = took ? `, ${took}` : "";
  $("facts").textContent = `${piece.bars} bars, ${piece.notes} notes, ${piece.seconds.toFixed(1)} s${speed}`;
}

async function run(label, work) {
  setStatus(`${label}…`);
  try {
    await work();
    setStatus(`${label}: done`);
  } catch (err) {
    setStatus(`${label}: ${err.message}`, true);
  }
}

async function generate(prompt) {
  const body = { ...sampling(), bars: numberOr("bars", 8), num: 1, controls: controls() };
  if (prompt) { body.prompt = prompt; body.prompt_bars = numberOr("prompt_bars", 4); }
  if ($("stream").checked) return stream(body);
  const out = await (await api("/generate", body)).json();
  show(out.pieces[0], `${Math.round(out.tokens_per_second)} tokens/s`);
}

async function stream(body) {
  const response = await api("/generate/stream", body);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const live = { midi: "", bars: 0, notes: 0, seconds: 0, tracks: [], bar_starts: [], note_list: [] };
  let buffer = "", last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const kind = (frame.match(/^event: (.*)$/m) || [])[1];
      const data = JSON.parse((frame.match(/^data: (.*)$/m) || [, "{}"])[1]);
      if (kind === "error") throw new Error(data.error);
      if (kind !== "bar") continue;
      last = data.midi;
      live.bar_starts.push(live.seconds);
      live.seconds += data.seconds;
      live.note_list.push(...data.notes);
      Object.assign(live, { midi: data.midi, bars: data.bar, notes: live.note_list.length });
      state.piece = live;
      draw();
      setStatus(`Generating: bar ${data.bar}`);
    }
  }
  if (last) show(await notesOf(last));
}

async function notesOf(midi) {
  return (await api("/notes", { midi })).json();
}

async function infill() {
  const [a, b] = state.selection;
  const tracks = [...document.querySelectorAll("#tracks input:checked")]
    .map((box) => state.piece.tracks[Number(box.value)].toLowerCase());
  const body = { ...sampling(), midi: state.piece.midi, bars: `${a}-${b}`, num: 1 };
  if (tracks.length) body.tracks = tracks.join(",");
  const out = await (await api("/infill", body)).json();
  show(out.pieces[0]);
  select(a, b);
}

async function harmonize() {
  const out = await (await api("/harmonize", { ...sampling(), midi: state.piece.midi })).json();
  show(out.pieces[0]);
}

async function play() {
  const blob = await (await api("/render", { midi: state.piece.midi })).blob();
  const url = URL.createObjectURL(blob);
  const player = $("player");
  player.src = url;
  const wav = $("download-wav");
  wav.href = url;
  wav.classList.remove("disabled");
  await new Promise((resolve) => {
    player.addEventListener("loadedmetadata", resolve, { once: true });
    player.load();
  });
}

function readUpload(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",")[1] || "");
    reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

function wire() {
  $("generate").addEventListener("click", () => run("Generating", () => generate(null)));
  $("continue").addEventListener("click", () => run("Continuing", () => generate(state.upload)));
  $("open").addEventListener("click", () => run("Opening", async () => show(await notesOf(state.upload))));
  $("infill").addEventListener("click", () => run("Regenerating", infill));
  $("harmonize").addEventListener("click", () => run("Harmonizing", harmonize));
  $("play").addEventListener("click", () => run("Rendering", play));
  $("upload").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    state.upload = file ? await readUpload(file) : null;
    $("continue").disabled = $("open").disabled = !state.upload;
  });
  $("model").addEventListener("change", () => run("Loading", async () => {
    const info = await (await fetch(`/info?model=${encodeURIComponent($("model").value)}`)).json();
    if (info.error) throw new Error(info.error);
    showControls(info.controls);
  }));
  const canvas = $("roll");
  canvas.addEventListener("mousedown", (event) => {
    if (!state.piece) return;
    state.dragFrom = barAt(event);
    select(state.dragFrom, state.dragFrom);
  });
  canvas.addEventListener("mousemove", (event) => {
    if (state.dragFrom !== null && event.buttons) select(state.dragFrom, barAt(event));
  });
  window.addEventListener("mouseup", () => { state.dragFrom = null; });
  window.addEventListener("resize", draw);
}

wire();
loadInfo().catch((err) => setStatus(`Cannot reach the server: ${err.message}`, true));

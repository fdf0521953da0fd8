// STAR web page: get a prompt (microphone, file or text), POST it to /v1/generate, show the answer.
// All model work happens on the server; this file only records, converts to wav and displays.
"use strict";

const $ = (id) => document.getElementById(id);
const RATE = 16000; // the models' sample rate: resampling here keeps uploads small
let recorder = null;
let chosenFile = null;

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function setBusy(busy) {
  for (const id of ["record", "generate", "file", "text"]) $(id).disabled = busy;
}

// ---- microphone -> 16-bit mono wav -----------------------------------------------------------
async function toggleRecording() {
  if (recorder) {
    recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    setStatus(`No microphone: ${err.message}`, true);
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    const type = recorder.mimeType;
    recorder = null;
    $("record").textContent = "● Record";
    $("record").classList.remove("recording");
    try {
      const wav = await toWav(new Blob(chunks, { type }));
      await submit({ speech: wav, name: "recording.wav" });
    } catch (err) {
      setStatus(`Could not read the recording: ${err.message}`, true);
      setBusy(false);
    }
  };
  recorder.start();
  $("record").textContent = "■ Stop";
  $("record").classList.add("recording");
  setStatus("Recording… say what you want to hear, then press Stop.");
}

async function toWav(blob) {
  const ctx = new AudioContext();
  const decoded = await ctx.decodeAudioData(await blob.arrayBuffer());
  await ctx.close();
  // One output channel at 16 kHz: the offline context mixes down and resamples in one pass.
  const offline = new OfflineAudioContext(1, Math.max(1, Math.ceil(decoded.duration * RATE)), RATE);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  return encodeWav((await offline.startRendering()).getChannelData(0), RATE);
}

function encodeWav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  view.setUint32(40, samples.length * 2, true);
  samples.forEach((s, i) => view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, s)) * 0x7fff, true));
  return new Blob([view], { type: "audio/wav" });
}

// ---- file or text ----------------------------------------------------------------------------
function chooseFile(file) {
  if (!file) return;
  chosenFile = file;
  $("text").value = "";
  $("drop").firstChild.textContent = `${file.name} `;
  setStatus(`Chosen: ${file.name}. Press Generate.`);
}

function generateClicked() {
  const text = $("text").value.trim();
  if (text) submit({ text });
  else if (chosenFile) submit({ speech: chosenFile, name: "upload" });
  else setStatus("Record, choose a file or type a prompt first.", true);
}

// ---- server round trip -----------------------------------------------------------------------
async function submit(prompt) {
  const form = new FormData();
  if (prompt.speech) form.append("speech", prompt.speech, prompt.name);
  else form.append("text", prompt.text);
  for (const id of ["seconds", "steps", "seed", "mode"]) {
    if ($(id).value.trim()) form.append(id, $(id).value.trim());
  }
  setBusy(true);
  setStatus("Generating…");
  const started = performance.now();
  try {
    const response = await fetch("/v1/generate?format=json", { method: "POST", body: form });
    const body = await response.json().catch(() => ({ error: `server answered ${response.status}` }));
    if (!response.ok) throw new Error(body.error || `server answered ${response.status}`);
    show(body, prompt, (performance.now() - started) / 1000);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    setBusy(false);
  }
}

function show(result, prompt, roundTrip) {
  const heard = result.heard;
  const events = $("events");
  events.replaceChildren();
  if (prompt.text) {
    $("caption").textContent = `You typed: “${prompt.text}”`;
  } else if (heard) {
    const transcript = result.transcript ? ` · ASR heard “${result.transcript}”` : "";
    $("caption").textContent = (heard.is_request ? `“${heard.caption}”` : heard.reason) + transcript;
    for (const e of heard.events) events.append(eventRow(e.category, e.prob));
    if (!heard.is_request) { // show what it was closest to, dimmed
      const top = Object.entries(heard.scores || {}).sort((a, b) => b[1] - a[1]).slice(0, 3);
      for (const [name, prob] of top) events.append(eventRow(name, prob, true));
    }
  }
  $("player").src = result.url;
  $("download").href = result.url;
  $("download").download = `star-${result.id.slice(0, 8)}.wav`;
  $("spectrogram").src = result.spectrogram;
  const model = result.timings.total_s ?? result.timings.server_s;
  $("took").textContent = `${result.seconds.toFixed(1)} s of audio in ${roundTrip.toFixed(2)} s ` +
    `(model ${model.toFixed(2)} s)`;
  $("result").hidden = false;
  setStatus("Done.");
}

function eventRow(name, prob, dim = false) {
  const row = document.createElement("li");
  row.classList.toggle("dim", dim);
  const label = document.createElement("span");
  label.className = "name";
  label.textContent = name.replaceAll("_", " ");
  const bar = document.createElement("span");
  bar.className = "bar";
  const fill = document.createElement("span");
  fill.style.width = `${Math.round(prob * 100)}%`;
  bar.append(fill);
  const value = document.createElement("span");
  value.className = "prob";
  value.textContent = prob.toFixed(2);
  row.append(label, bar, value);
  return row;
}

// ---- wiring ----------------------------------------------------------------------------------
$("record").addEventListener("click", toggleRecording);
$("generate").addEventListener("click", generateClicked);
$("file").addEventListener("change", (e) => chooseFile(e.target.files[0]));
$("text").addEventListener("keydown", (e) => { if (e.key === "Enter") generateClicked(); });
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").classList.remove("over");
  chooseFile(e.dataTransfer.files[0]);
});
if (!window.MediaRecorder || !navigator.mediaDevices) {
  $("record").disabled = true;
  $("record").title = "this browser cannot record; choose a file instead";
}

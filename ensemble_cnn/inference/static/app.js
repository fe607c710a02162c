// ensemble-cnn serve: draw a digit, send it to /api/predict, show how the members voted.
// Plain JavaScript, no framework, nothing loaded from elsewhere (the page works offline).
"use strict";

(() => {
  const MAX_UPLOAD_BYTES = 2 * 1024 * 1024; // the server's limit (serve.MAX_BODY_BYTES)
  const PEN_FRACTION = 1 / 14; // pen width as a fraction of the pad's side

  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const input28 = $("input28");
  const labelEl = $("label");
  const confidenceEl = $("confidence");
  const agreementEl = $("agreement");
  const verdictEl = $("verdict");
  const membersEl = $("members");
  const statusEl = $("status");
  const infoEl = $("info");
  const uploadEl = $("upload");
  const ctx = pad.getContext("2d");

  // Each request gets a number; an answer whose number is not the latest is stale and dropped
  // (the user drew again, uploaded, or pressed Clear while it was on its way).
  let sequence = 0;

  // ---- status line ------------------------------------------------------------------------
  function setStatus(text, kind) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", kind === "error");
    statusEl.classList.toggle("busy", kind === "busy");
  }

  // ---- drawing pad --------------------------------------------------------------------------
  // The backing store follows the pad's CSS size times devicePixelRatio, for crisp lines.
  function sizePad() {
    // clientWidth: the drawing area without the border.
    const side = Math.max(1, Math.round((pad.clientWidth || 280) * (window.devicePixelRatio || 1)));
    if (pad.width !== side || pad.height !== side) {
      const old = document.createElement("canvas");
      old.width = pad.width;
      old.height = pad.height;
      old.getContext("2d").drawImage(pad, 0, 0);
      pad.width = side;
      pad.height = side;
      clearPad();
      ctx.drawImage(old, 0, 0, side, side); // keep the drawing when the layout changes
    }
  }

  function clearPad() {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.restore();
  }

  function penPoint(event) {
    const rect = pad.getBoundingClientRect(); // border box: remove the border
    return {
      x: (event.clientX - rect.left - pad.clientLeft) * (pad.width / pad.clientWidth),
      y: (event.clientY - rect.top - pad.clientTop) * (pad.height / pad.clientHeight),
    };
  }

  function setPen() {
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#000";
    ctx.lineWidth = pad.width * PEN_FRACTION;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  let activePointer = null; // one stroke at a time (a second finger is ignored)
  let last = null;

  pad.addEventListener("pointerdown", (event) => {
    if (activePointer !== null) return;
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    activePointer = event.pointerId;
    try {
      pad.setPointerCapture(event.pointerId);
    } catch (_) {
      /* capture is a nicety: drawing works without it */
    }
    setPen();
    last = penPoint(event);
    ctx.beginPath(); // a dot, so that a tap leaves a mark
    ctx.arc(last.x, last.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
  });

  pad.addEventListener("pointermove", (event) => {
    if (event.pointerId !== activePointer) return;
    event.preventDefault();
    const events = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
    setPen();
    ctx.beginPath();
    ctx.moveTo(last.x, last.y);
    for (const e of events.length ? events : [event]) {
      last = penPoint(e);
      ctx.lineTo(last.x, last.y);
    }
    ctx.stroke();
  });

  function endStroke(event) {
    if (event.pointerId !== activePointer) return;
    activePointer = null;
    last = null;
    try {
      pad.releasePointerCapture(event.pointerId);
    } catch (_) {
      /* already released */
    }
    sendPad();
  }

  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("contextmenu", (event) => event.preventDefault());

  // ---- talking to the server ----------------------------------------------------------------
  function sendPad() {
    const mine = ++sequence;
    setStatus("thinking…", "busy");
    pad.toBlob((blob) => {
      if (mine !== sequence) return;
      if (!blob) {
        showError(mine, "could not read the drawing");
        return;
      }
      predict(mine, blob, "image/png");
    }, "image/png");
  }

  async function predict(mine, body, type) {
    let answer;
    try {
      const response = await fetch("/api/predict", {
        method: "POST",
        headers: { "Content-Type": type },
        body,
        cache: "no-store",
      });
      answer = await readJson(response);
    } catch (error) {
      showError(mine, `no answer from the server (${error.message})`);
      return;
    }
    if (mine !== sequence) return; // stale: something newer was asked for
    if (answer.error !== undefined) {
      showError(mine, answer.error);
      return;
    }
    try {
      showResult(answer);
      setStatus("ready");
    } catch (error) {
      showError(mine, `unexpected answer from the server (${error.message})`);
    }
  }

  // JSON from a response; a non-2xx answer becomes {error: "..."} (the server's message if any).
  async function readJson(response) {
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      /* not JSON */
    }
    if (response.ok && data !== null) return data;
    const message = data && typeof data.error === "string" ? data.error : `HTTP ${response.status}`;
    return { error: message };
  }

  function showError(mine, message) {
    if (mine !== sequence) return;
    clearResult();
    setStatus(`error: ${String(message).split("\n")[0]}`, "error");
  }

  // ---- results -----------------------------------------------------------------------------
  function clearResult() {
    labelEl.textContent = "";
    confidenceEl.textContent = "";
    agreementEl.textContent = "";
    verdictEl.textContent = "";
    verdictEl.className = "verdict-note";
    membersEl.replaceChildren();
    const c = input28.getContext("2d");
    c.fillStyle = "#000";
    c.fillRect(0, 0, input28.width, input28.height);
  }

  function percent(p) {
    return `${(100 * p).toFixed(1)}%`;
  }

  function showResult(answer) {
    const label = answer.label;
    const members = answer.members || [];
    drawInput(answer.input);
    labelEl.textContent = String(label);
    confidenceEl.textContent = `${percent(answer.confidence)} confidence`;
    const agree = members.filter((m) => m.label === label).length;
    const noun = members.length === 1 ? "member" : "members";
    const verb = agree === 1 ? "says" : "say";
    agreementEl.textContent = `${agree} of ${members.length} ${noun} ${verb} ${label}`;
    showVerdict(answer);

    const rows = [];
    if (Array.isArray(answer.probabilities)) {
      const row = makeRow("ensemble", label, answer.probabilities, label, "ensemble");
      row.querySelector(".name").title = `the ensemble (${answer.vote || "vote"})`;
      rows.push(row);
    }
    for (const m of members) rows.push(makeRow(m.name, m.label, m.probabilities, label, "member"));
    membersEl.replaceChildren(...rows);
  }

  // The flags fixed on the run's calibration digits: "unsure" (with the labels it could be) or
  // "this does not look like a digit"; nothing when the run has no calibration digits.
  function showVerdict(answer) {
    verdictEl.className = "verdict-note";
    const set = Array.isArray(answer.set) ? answer.set : null;
    const could = set && set.length > 1 ? `: could be ${set.slice(0, -1).join(", ")} or ${set[set.length - 1]}` : "";
    if (answer.verdict === "not a digit") {
      verdictEl.textContent = "this does not look like a digit";
      verdictEl.classList.add("flagged");
    } else if (answer.verdict === "unsure") {
      verdictEl.textContent = set && set.length === 0 ? "unsure: no label fits well" : `unsure${could}`;
      verdictEl.classList.add("flagged");
    } else if (answer.verdict === "answered") {
      verdictEl.textContent = set && set.length > 1 ? `answered; the set${could}` : "answered";
    } else {
      verdictEl.textContent = "";
    }
  }

  function makeRow(name, memberLabel, probabilities, ensembleLabel, kind) {
    const row = document.createElement("div");
    row.className = `row ${kind}`;
    row.dataset.label = String(memberLabel);
    const disagrees = kind === "member" && memberLabel !== ensembleLabel;
    if (disagrees) row.classList.add("disagrees");

    const nameEl = document.createElement("span");
    nameEl.className = "name";
    nameEl.textContent = name;
    nameEl.title = name;

    const labelCell = document.createElement("span");
    labelCell.className = "vote";
    labelCell.textContent = String(memberLabel);
    if (disagrees) {
      const mark = document.createElement("span");
      mark.className = "dissent";
      mark.textContent = "≠";
      mark.title = `disagrees with the vote (${ensembleLabel})`;
      labelCell.append(mark);
    }

    const bars = document.createElement("div");
    bars.className = "bars";
    (probabilities || []).forEach((p, digit) => {
      const bar = document.createElement("span");
      bar.className = digit === memberLabel ? "bar top" : "bar";
      bar.title = `${digit}: ${percent(p)}`;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.height = `${Math.max(0, Math.min(1, Number(p) || 0)) * 100}%`;
      track.append(fill);
      const digitEl = document.createElement("span");
      digitEl.className = "digit";
      digitEl.textContent = String(digit);
      bar.append(track, digitEl);
      bars.append(bar);
    });

    const summary = `${name}: ${memberLabel}` + (disagrees ? `, disagrees with the vote ${ensembleLabel}` : "");
    row.setAttribute("aria-label", summary);
    row.append(nameEl, labelCell, bars);
    return row;
  }

  // The 28x28 input, white ink on black as in MNIST, enlarged without smoothing.
  function drawInput(pixels) {
    const c = input28.getContext("2d");
    c.fillStyle = "#000";
    c.fillRect(0, 0, input28.width, input28.height);
    if (!Array.isArray(pixels) || pixels.length === 0) return;
    const h = pixels.length;
    const w = pixels[0].length;
    const small = document.createElement("canvas");
    small.width = w;
    small.height = h;
    const sc = small.getContext("2d");
    const image = sc.createImageData(w, h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = pixels[y][x];
        const i = 4 * (y * w + x);
        image.data[i] = v;
        image.data[i + 1] = v;
        image.data[i + 2] = v;
        image.data[i + 3] = 255;
      }
    }
    sc.putImageData(image, 0, 0);
    c.imageSmoothingEnabled = false;
    c.drawImage(small, 0, 0, input28.width, input28.height);
  }

  // ---- run info ----------------------------------------------------------------------------
  async function loadInfo() {
    let info;
    try {
      info = await readJson(await fetch("/api/info", { cache: "no-store" }));
    } catch (error) {
      info = { error: `no answer from the server (${error.message})` };
    }
    if (info.error !== undefined) {
      infoEl.textContent = "run info unavailable";
      setStatus(`error: ${info.error}`, "error");
      return;
    }
    const members = Array.isArray(info.members) ? info.members : [];
    // A fraction (0.9962) or, just in case, already a percentage (99.62); two decimals either way.
    const acc = info.test_accuracy;
    const accuracy =
      typeof acc === "number" && isFinite(acc) ? `${(acc > 1 ? acc : 100 * acc).toFixed(2)}%` : "not measured";
    const parts = [
      info.run ? `run ${info.run}` : null,
      `${members.length} ${members.length === 1 ? "member" : "members"}` +
        (members.length ? ` (${members.join(", ")})` : ""),
      info.architecture ? `architecture ${info.architecture}` : null,
      info.vote ? `${info.vote} vote` : null,
      `test accuracy ${accuracy}`,
    ];
    infoEl.textContent = parts.filter(Boolean).join(" · ");
    if (!statusEl.classList.contains("busy")) setStatus("ready");
  }

  // ---- buttons ----------------------------------------------------------------------------
  $("clear").addEventListener("click", () => {
    sequence++; // drop any answer still on its way
    clearPad();
    clearResult();
    setStatus("ready");
  });

  uploadEl.addEventListener("change", async () => {
    const file = uploadEl.files && uploadEl.files[0];
    uploadEl.value = ""; // choosing the same file again fires "change" again
    if (!file) return;
    const mine = ++sequence;
    if (file.size > MAX_UPLOAD_BYTES) {
      showError(mine, `image too large: ${file.size} bytes (at most 2 MB)`);
      return;
    }
    setStatus("thinking…", "busy");
    showOnPad(file); // so that the pad shows what was sent (drawing on it sends both)
    predict(mine, file, file.type || "application/octet-stream");
  });

  async function showOnPad(file) {
    if (typeof createImageBitmap !== "function") return;
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (_) {
      return; // the server will say what is wrong with it
    }
    clearPad();
    const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * scale;
    const h = bitmap.height * scale;
    ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    bitmap.close();
  }

  // ---- start -------------------------------------------------------------------------------
  sizePad();
  clearPad();
  clearResult();
  window.addEventListener("resize", sizePad);
  loadInfo();
})();

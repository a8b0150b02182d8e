/* ocrobin page. A page is sent once for its ink probability (format=prob); the threshold slider cuts that
   map here, on a canvas, with no further request. Downloads ask the server again with the chosen threshold
   and format, so a downloaded file is exactly what `ocrobin binarize` writes. Nothing is loaded from
   anywhere but this server. */
"use strict";

(() => {
  const TOKEN_KEY = "ocrobin-token";
  const INK = 0xff000000;    // opaque black, as RGBA bytes read little-endian
  const PAPER = 0xffffffff;  // opaque white
  const MIN_SCALE = 0.01;
  const MAX_SCALE = 64;

  const $ = (id) => document.getElementById(id);
  const el = {
    file: $("file"), filename: $("filename"), threshold: $("threshold"), thresholdValue: $("threshold-value"),
    polarity: $("polarity"), resize: $("resize"), model: $("model"), viewSide: $("view-side"), viewSplit: $("view-split"),
    zoomIn: $("zoom-in"), zoomOut: $("zoom-out"), zoomFit: $("zoom-fit"), zoom1: $("zoom-1"),
    zoomValue: $("zoom-value"), downloadPng: $("download-png"), downloadTif: $("download-tif"),
    status: $("status"), info: $("info"), stage: $("stage"), divider: $("divider"),
    canvasOriginal: $("canvas-original"), canvasResult: $("canvas-result"), canvasSplit: $("canvas-split"),
    tokenDialog: $("token-dialog"), tokenMessage: $("token-message"), tokenInput: $("token-input"),
  };

  const st = {
    token: sessionStorage.getItem(TOKEN_KEY),
    limits: null,
    file: null,
    seq: 0,              // the latest upload; answers to older ones are ignored
    original: null,      // {image, width, height, url}: an <img> of the file, or the server-decoded page
    prob: null,          // Uint8Array, floor(255 × ink probability), row by row
    width: 0,
    height: 0,
    result: document.createElement("canvas"),  // the thresholded page at full resolution
    resultCtx: null,
    resultData: null,
    view: { scale: 1, x: 0, y: 0 },  // page → screen (CSS pixels), shared by every view
    fitted: true,
    split: 0.5,
    mode: "side",
  };

  function setStatus(state, text) {
    document.body.dataset.state = state;
    if (text !== undefined) el.status.textContent = text;
  }

  // --- the server -------------------------------------------------------------------------------

  let asking = null;

  function askToken(message) {
    if (!asking) {
      asking = new Promise((resolve) => {
        el.tokenMessage.textContent = message;
        el.tokenInput.value = "";
        el.tokenDialog.addEventListener("close", () => {
          const value = el.tokenInput.value.trim();
          resolve(el.tokenDialog.returnValue === "ok" && value ? value : null);
        }, { once: true });
        el.tokenDialog.returnValue = "";
        el.tokenDialog.showModal();
      }).finally(() => { asking = null; });
    }
    return asking;
  }

  /* fetch with the access token; on 401 the page asks for the token (kept in sessionStorage) and retries. */
  async function api(path, init = {}) {
    for (;;) {
      const headers = new Headers(init.headers || {});
      if (st.token) headers.set("Authorization", "Bearer " + st.token);
      const r = await fetch(path, { ...init, headers });
      if (r.status !== 401) return r;
      const token = await askToken(st.token ? "The token was not accepted; enter it again."
        : "This server needs an access token.");
      if (token === null) throw new Error("this server needs an access token");
      st.token = token;
      sessionStorage.setItem(TOKEN_KEY, token);
    }
  }

  async function failure(r) {
    let message = `${r.status} ${r.statusText}`;
    try {
      const j = await r.json();
      if (j && j.error) message = `${j.error} (${r.status})`;
    } catch (_) { /* not JSON */ }
    return new Error(message);
  }

  function post(format, threshold) {
    const q = new URLSearchParams({ format, polarity: el.polarity.value });
    if (el.model.value) q.set("model", el.model.value);
    if (el.resize.value !== "1") q.set("resize", el.resize.value);
    if (threshold !== undefined) q.set("threshold", threshold);
    return api("v1/binarize?" + q, {
      method: "POST", body: st.file, headers: { "Content-Type": st.file.type || "application/octet-stream" },
    });
  }

  async function loadModels() {
    const r = await api("v1/models");
    if (!r.ok) throw await failure(r);
    const j = await r.json();
    st.limits = j.limits;
    el.model.replaceChildren(...j.models.map((m) => {
      const label = m.arch && m.arch !== m.name ? `${m.name} (${m.arch})` : m.name;
      return new Option(label, m.name, m.name === j.default, m.name === j.default);
    }));
  }

  // --- decoding ----------------------------------------------------------------------------------

  async function probOf(blob) {
    const bmp = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const c = document.createElement("canvas");
    c.width = bmp.width;
    c.height = bmp.height;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bmp, 0, 0);
    bmp.close();
    const rgba = ctx.getImageData(0, 0, c.width, c.height).data;
    const prob = new Uint8Array(c.width * c.height);
    for (let i = 0, j = 0; i < prob.length; i++, j += 4) prob[i] = rgba[j];
    return { prob, width: c.width, height: c.height };
  }

  async function fetchProb() {
    const r = await post("prob");
    if (!r.ok) throw await failure(r);
    const h = (name) => r.headers.get(name) || "";
    const info = {
      confidence: h("X-Ocrobin-Confidence"), polarity: h("X-Ocrobin-Polarity"), flags: h("X-Ocrobin-Flags"),
      seconds: h("X-Ocrobin-Seconds"), model: h("X-Ocrobin-Model"),
    };
    return { ...(await probOf(await r.blob())), info };
  }

  /* The file as the browser decodes it (shown from an object URL of the upload); null where it cannot (TIFF). */
  async function decodeLocal(file) {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.src = url;
    try {
      await img.decode();
    } catch (_) {
      URL.revokeObjectURL(url);
      return null;
    }
    return { image: img, width: img.naturalWidth, height: img.naturalHeight, url };
  }

  /* Let go of an original that is no longer shown: its object URL or its bitmap. */
  function release(original) {
    if (!original) return;
    if (original.url) URL.revokeObjectURL(original.url);
    if (typeof ImageBitmap !== "undefined" && original.image instanceof ImageBitmap) original.image.close();
  }

  /* The grey page as the server decoded it (format=gray), for files the browser cannot show. */
  async function decodeOnServer() {
    const r = await post("gray");
    if (!r.ok) throw await failure(r);
    const bmp = await createImageBitmap(await r.blob());
    return { image: bmp, width: bmp.width, height: bmp.height, url: null };
  }

  // --- threshold and drawing ------------------------------------------------------------------------

  function rethreshold() {
    const t = Number(el.threshold.value);
    el.thresholdValue.textContent = t.toFixed(2);
    if (!st.prob) return;
    // ink where floor(255 p) > floor(255 t): the server's p > t, to within 1/255
    const cut = Math.floor(255 * t + 1e-9);
    const px = new Uint32Array(st.resultData.data.buffer);
    const prob = st.prob;
    for (let i = 0; i < prob.length; i++) px[i] = prob[i] > cut ? INK : PAPER;
    st.resultCtx.putImageData(st.resultData, 0, 0);
    render();
  }

  function prepare(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, dpr };
  }

  function place(ctx, dpr) {
    const v = st.view;
    ctx.setTransform(dpr * v.scale, 0, 0, dpr * v.scale, dpr * v.x, dpr * v.y);
    ctx.imageSmoothingEnabled = v.scale * dpr < 1;  // smooth when shrinking, sharp pixels when enlarging
  }

  function draw(canvas, source) {
    const { ctx, dpr } = prepare(canvas);
    if (!source) return;
    place(ctx, dpr);
    ctx.drawImage(source, 0, 0);
  }

  function drawSplit() {
    const canvas = el.canvasSplit;
    const { ctx, dpr } = prepare(canvas);
    el.divider.style.left = `${st.split * 100}%`;
    el.divider.setAttribute("aria-valuenow", String(Math.round(st.split * 100)));
    if (st.original) {
      place(ctx, dpr);
      ctx.drawImage(st.original.image, 0, 0);
    }
    if (st.prob) {
      const x = st.split * canvas.clientWidth;
      ctx.save();
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.beginPath();
      ctx.rect(x, 0, canvas.clientWidth - x, canvas.clientHeight);
      ctx.clip();
      place(ctx, dpr);
      ctx.drawImage(st.result, 0, 0);
      ctx.restore();
    }
  }

  function render() {
    if (st.mode === "side") {
      draw(el.canvasOriginal, st.original && st.original.image);
      draw(el.canvasResult, st.prob ? st.result : null);
    } else {
      drawSplit();
    }
    el.zoomValue.textContent = st.prob ? `${Math.round(st.view.scale * 100)} %` : "";
  }

  // --- zoom and pan (one view transform for every canvas) -------------------------------------------

  function viewport() {
    return st.mode === "side" ? el.canvasOriginal : el.canvasSplit;
  }

  function fit() {
    if (!st.width) return;
    const c = viewport();
    const s = Math.min(c.clientWidth / st.width, c.clientHeight / st.height) * 0.98;
    st.view.scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, s));
    st.view.x = (c.clientWidth - st.width * st.view.scale) / 2;
    st.view.y = (c.clientHeight - st.height * st.view.scale) / 2;
    st.fitted = true;
    render();
  }

  function zoomTo(scale, cx, cy) {
    const v = st.view;
    const s = Math.min(MAX_SCALE, Math.max(MIN_SCALE, scale));
    v.x = cx - (cx - v.x) * (s / v.scale);
    v.y = cy - (cy - v.y) * (s / v.scale);
    v.scale = s;
    st.fitted = false;
    render();
  }

  function zoomCentre(scale) {
    const c = viewport();
    zoomTo(scale, c.clientWidth / 2, c.clientHeight / 2);
  }

  function enablePanZoom(canvas) {
    canvas.addEventListener("wheel", (e) => {
      if (!st.prob) return;
      e.preventDefault();
      const r = canvas.getBoundingClientRect();
      zoomTo(st.view.scale * Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    let last = null;
    canvas.addEventListener("pointerdown", (e) => {
      if (!st.prob || e.button !== 0) return;
      last = { x: e.clientX, y: e.clientY };
      canvas.setPointerCapture(e.pointerId);
      canvas.classList.add("panning");
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!last) return;
      st.view.x += e.clientX - last.x;
      st.view.y += e.clientY - last.y;
      last = { x: e.clientX, y: e.clientY };
      st.fitted = false;
      render();
    });
    const end = () => { last = null; canvas.classList.remove("panning"); };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
  }

  function enableDivider() {
    let dragging = false;
    const move = (clientX) => {
      const r = el.canvasSplit.getBoundingClientRect();
      st.split = Math.min(1, Math.max(0, (clientX - r.left) / r.width));
      render();
    };
    el.divider.addEventListener("pointerdown", (e) => {
      dragging = true;
      el.divider.setPointerCapture(e.pointerId);
      e.stopPropagation();
    });
    el.divider.addEventListener("pointermove", (e) => { if (dragging) move(e.clientX); });
    el.divider.addEventListener("pointerup", () => { dragging = false; });
    el.divider.addEventListener("pointercancel", () => { dragging = false; });
    el.divider.addEventListener("keydown", (e) => {
      const step = { ArrowLeft: -0.02, ArrowRight: 0.02 }[e.key];
      if (step === undefined) return;
      e.preventDefault();
      st.split = Math.min(1, Math.max(0, st.split + step));
      render();
    });
  }

  function setMode(mode) {
    st.mode = mode;
    document.body.dataset.view = mode;
    el.viewSide.setAttribute("aria-pressed", String(mode === "side"));
    el.viewSplit.setAttribute("aria-pressed", String(mode === "split"));
    if (st.fitted) fit(); else render();
  }

  // --- a page -------------------------------------------------------------------------------------

  function showInfo(info) {
    const parts = [];
    if (info.confidence) parts.push(`confidence ${Number(info.confidence).toFixed(2)}`);
    if (info.polarity) parts.push(`polarity ${info.polarity}`);
    parts.push(info.flags ? `flags ${info.flags.split(",").join(", ")}` : "no flags");
    parts.push(`${st.width} × ${st.height} px`);
    if (info.model) parts.push(`${info.model}, ${Number(info.seconds).toFixed(2)} s`);
    el.info.textContent = parts.join(" · ");
    el.info.dataset.confidence = info.confidence;
  }

  function setBusy(busy) {
    for (const c of [el.threshold, el.downloadPng, el.downloadTif]) c.disabled = busy || !st.prob;
  }

  function setResult(res) {
    const resized = res.width !== st.width || res.height !== st.height;
    st.prob = res.prob;
    st.width = res.width;
    st.height = res.height;
    if (resized) {
      st.result.width = res.width;
      st.result.height = res.height;
      st.resultCtx = st.result.getContext("2d");
      st.resultData = st.resultCtx.createImageData(res.width, res.height);
    }
    showInfo(res.info);
    rethreshold();
    if (resized || st.fitted) fit();
  }

  async function openFile(file) {
    if (!file) return;
    const seq = ++st.seq;
    st.file = file;
    el.filename.textContent = file.name || "pasted image";
    if (st.limits && file.size > st.limits.max_bytes) {
      setStatus("error", `This file is larger than the server takes (${st.limits.max_bytes / 1e6} MB).`);
      return;
    }
    setStatus("busy", "Binarizing");
    setBusy(true);
    try {
      const local = decodeLocal(file);
      let res;
      try {
        res = await fetchProb();
      } catch (e) {
        local.then(release);
        throw e;
      }
      let original = await local;
      if (seq !== st.seq) return release(original);
      if (!original || original.width !== res.width || original.height !== res.height) {
        release(original);
        original = await decodeOnServer();
        if (seq !== st.seq) return release(original);
      }
      release(st.original);
      st.original = original;
      setResult(res);
      setStatus("ready", "Move the threshold; drag to pan, wheel to zoom.");
    } catch (e) {
      if (seq === st.seq) setStatus("error", e.message);
    } finally {
      if (seq === st.seq) setBusy(false);
    }
  }

  /* Polarity or model changed: the probability map is asked for again; the original stays. */
  async function rerun() {
    if (!st.file || !st.original) return;
    const seq = ++st.seq;
    setStatus("busy", "Binarizing");
    setBusy(true);
    try {
      const res = await fetchProb();
      if (seq !== st.seq) return;
      setResult(res);
      setStatus("ready", "Move the threshold; drag to pan, wheel to zoom.");
    } catch (e) {
      if (seq === st.seq) setStatus("error", e.message);
    } finally {
      if (seq === st.seq) setBusy(false);
    }
  }

  function stem(name) {
    const base = (name || "page").split(/[\\/]/).pop();
    const dot = base.lastIndexOf(".");
    return dot > 0 ? base.slice(0, dot) : base;
  }

  async function download(format) {
    if (!st.file) return;
    const before = el.status.textContent;
    setStatus("busy", `Preparing the ${format.toUpperCase()}`);
    try {
      const r = await post(format, el.threshold.value);
      if (!r.ok) throw await failure(r);
      const url = URL.createObjectURL(await r.blob());
      const a = document.createElement("a");
      a.href = url;
      a.download = `${stem(st.file.name)}.bin.${format}`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      setStatus("ready", before);
    } catch (e) {
      setStatus("error", e.message);
    }
  }

  // --- wiring -------------------------------------------------------------------------------------

  el.file.addEventListener("change", () => openFile(el.file.files[0]));
  el.threshold.addEventListener("input", rethreshold);
  el.polarity.addEventListener("change", rerun);
  el.resize.addEventListener("change", rerun);
  el.model.addEventListener("change", rerun);
  el.viewSide.addEventListener("click", () => setMode("side"));
  el.viewSplit.addEventListener("click", () => setMode("split"));
  el.zoomIn.addEventListener("click", () => zoomCentre(st.view.scale * 1.25));
  el.zoomOut.addEventListener("click", () => zoomCentre(st.view.scale / 1.25));
  el.zoom1.addEventListener("click", () => zoomCentre(1 / (window.devicePixelRatio || 1)));
  el.zoomFit.addEventListener("click", fit);
  el.downloadPng.addEventListener("click", () => download("png"));
  el.downloadTif.addEventListener("click", () => download("tif"));
  for (const c of [el.canvasOriginal, el.canvasResult, el.canvasSplit]) enablePanZoom(c);
  enableDivider();

  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    el.stage.classList.add("dragover");
  });
  document.addEventListener("dragleave", (e) => {
    if (!e.relatedTarget) el.stage.classList.remove("dragover");
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    el.stage.classList.remove("dragover");
    if (e.dataTransfer && e.dataTransfer.files.length) openFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const files = e.clipboardData ? Array.from(e.clipboardData.files) : [];
    const file = files.find((f) => f.type.startsWith("image/")) || files[0];
    if (file) {
      e.preventDefault();
      openFile(file);
    }
  });
  window.addEventListener("resize", () => { if (st.fitted) fit(); else render(); });

  rethreshold();
  loadModels().catch((e) => setStatus("error", `Cannot list the models: ${e.message}`));
})();

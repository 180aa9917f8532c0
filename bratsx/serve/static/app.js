// bratsx serve: upload a case, follow its job, view it with NiiVue, download it; review a batch.
// Every string from the server or a file name is shown with textContent, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 400;
  const LABEL_VOLUME = "seg.nii.gz";
  const ROLE_NAMES = { flair: "FLAIR", t1: "T1", t1ce: "T1ce", t2: "T2", seg: "reference segmentation" };
  const VIEWS = { multiplanar: "sliceTypeMultiplanar", axial: "sliceTypeAxial", coronal: "sliceTypeCoronal",
                  sagittal: "sliceTypeSagittal", render: "sliceTypeRender" };

  // What the tests and measurements read: the page's state and timings (performance.now(), ms).
  const page = { info: null, job: null, timings: {}, viewer: null };
  window.bratsx = page;

  const viewer = { nv: null, base: null, sequences: {}, labels: null, hidden: new Set(), background: null };

  function setState(name) { document.body.dataset.state = name; }

  function message(body, response) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail) && body.detail.length) return body.detail[0].msg || String(body.detail[0]);
    return `${response.status} ${response.statusText}`;
  }

  async function api(path, options = {}) {
    const response = await fetch(path, { credentials: "same-origin", ...options });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) throw new Error(message(body, response));
    return body;
  }

  function showError(element, text) {
    element.textContent = text || "";
    element.hidden = !text;
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function clear(element) { while (element.firstChild) element.removeChild(element.firstChild); }

  function fillFlags(list, flags) {
    clear(list);
    for (const flag of flags || []) {
      const item = document.createElement("li");
      item.textContent = `${flag.kind}: ${flag.detail}`;
      item.title = flag.explanation || "";
      list.appendChild(item);
    }
  }

  // ---------------------------------------------------------------- viewer
  async function ensureViewer() {
    if (viewer.nv) return viewer.nv;
    $("viewer").hidden = false;
    const nv = new niivue.Niivue({
      backColor: [0, 0, 0, 1], crosshairColor: [0.25, 0.55, 1, 1], crosshairWidth: 0.25, crosshairWidthUnit: "percent",
      multiplanarShowRender: niivue.SHOW_RENDER.ALWAYS, show3Dcrosshair: true, dragAndDropEnabled: false,
    });
    await nv.attachTo("gl");
    nv.setRadiologicalConvention(true);
    nv.onLocationChange = showLocation;
    // The label colours go on the label volume before NiiVue builds its textures: recolouring it once shown
    // would build them again (seconds for a BraTS case when WebGL runs in software).
    nv.onVolumeAddedFromUrl = (options, volume) => {
      if (options.name === LABEL_VOLUME && viewer.labels) {
        volume.colormapLabel = niivue.cmapper.makeLabelLut(labelColormap());
      }
    };
    viewer.nv = nv;
    page.viewer = nv;
    return nv;
  }

  function labelColormap() {
    const max = Math.max(0, ...viewer.labels.map((l) => l.value));
    const map = { R: [], G: [], B: [], A: [], I: [], labels: [] };
    for (let value = 0; value <= max; value++) {
      const label = viewer.labels.find((l) => l.value === value);
      const shown = label && !viewer.hidden.has(label.tissue);
      const colour = label ? label.color : [0, 0, 0];
      map.R.push(colour[0]); map.G.push(colour[1]); map.B.push(colour[2]);
      map.A.push(shown ? 255 : 0); map.I.push(value); map.labels.push(label ? label.name : "");
    }
    return map;
  }

  function applyLabels() {
    if (!viewer.labels || viewer.nv.volumes.length < 2) return;
    viewer.nv.volumes[1].setColormapLabel(labelColormap());
    viewer.nv.updateGLVolume();
  }

  function labelName(value) {
    if (!viewer.labels || value === undefined || value === null) return "";
    if (Math.round(value) === 0) return "background";
    const label = viewer.labels.find((l) => l.value === Math.round(value));
    return label ? label.name : `value ${value}`;
  }

  function showLocation(location) {
    if (!location || !location.vox) return;
    const parts = [`voxel ${Array.from(location.vox).join(", ")}`];
    const values = location.values || [];
    if (values.length > 0) parts.push(`${ROLE_NAMES[viewer.background] || ""} ${Number(values[0].value).toFixed(1)}`);
    if (viewer.labels && values.length > 1) parts.push(`label: ${labelName(values[1].value)}`);
    $("location").textContent = parts.join(" · ");
  }

  function buildControls() {
    const select = $("background");
    clear(select);
    for (const role of Object.keys(viewer.sequences)) {
      const option = document.createElement("option");
      option.value = role;
      option.textContent = ROLE_NAMES[role] || role;
      select.appendChild(option);
    }
    select.value = viewer.background;
    const toggles = $("label-toggles");
    clear(toggles);
    for (const label of viewer.labels || []) {
      const wrapper = document.createElement("label");
      wrapper.className = "toggle";
      wrapper.title = label.description;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !viewer.hidden.has(label.tissue);
      box.dataset.tissue = label.tissue;
      box.addEventListener("change", () => {
        if (box.checked) viewer.hidden.delete(label.tissue); else viewer.hidden.add(label.tissue);
        applyLabels();
      });
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = `rgb(${label.color.join(",")})`;
      const name = document.createElement("span");
      name.textContent = label.name;
      wrapper.append(box, swatch, name);
      toggles.appendChild(wrapper);
    }
  }

  async function loadVolumes() {
    const nv = await ensureViewer();
    document.body.dataset.viewer = "loading";
    const frame = viewer.sequences[viewer.background];
    const background = { url: `${viewer.base}/volumes/${viewer.background}`, name: `${viewer.background}.nii.gz`,
                         colormap: "gray" };
    if (frame !== null && frame !== undefined) background.frame4D = frame;
    const volumes = [background];
    if (viewer.labels) {
      volumes.push({ url: `${viewer.base}/volumes/seg`, name: LABEL_VOLUME, opacity: Number($("opacity").value) });
    }
    nv.setSliceType(nv[VIEWS[$("view").value]]);
    await nv.loadVolumes(volumes);
    document.body.dataset.viewer = "shown";
  }

  // Show a case: base URL of its volumes, its background sequences ({role: frame}), its labels (or null).
  async function showCase(base, sequences, labels) {
    viewer.base = base;
    viewer.sequences = sequences || {};
    viewer.labels = labels;
    viewer.hidden = new Set();
    const roles = Object.keys(viewer.sequences);
    viewer.background = roles.includes("t1ce") ? "t1ce" : roles[0];
    buildControls();
    if (!viewer.background) {
      document.body.dataset.viewer = "none";
      return;
    }
    await loadVolumes();
  }

  $("background").addEventListener("change", () => {
    viewer.background = $("background").value;
    loadVolumes().catch((error) => showError($("server-error"), error.message));
  });
  $("opacity").addEventListener("input", () => {
    if (viewer.nv && viewer.nv.volumes.length > 1) viewer.nv.setOpacity(1, Number($("opacity").value));
  });
  $("view").addEventListener("change", () => {
    if (viewer.nv) viewer.nv.setSliceType(viewer.nv[VIEWS[$("view").value]]);
  });

  // ---------------------------------------------------------------- upload and jobs
  async function guessRoles(files) {
    const table = $("file-roles").tBodies[0];
    clear(table);
    const zip = files.length === 1 && files[0].name.toLowerCase().endsWith(".zip");
    $("submit").disabled = files.length === 0;
    if (zip || files.length === 0) return;
    let guesses = [];
    try {
      guesses = await api("/api/roles", { method: "POST", headers: { "Content-Type": "application/json" },
                                          body: JSON.stringify({ names: files.map((f) => f.name) }) });
    } catch (error) {
      showError($("upload-error"), error.message);
    }
    files.forEach((file, index) => {
      const row = table.insertRow();
      cell(row, file.name);
      const select = document.createElement("select");
      select.className = "role";
      for (const [role, name] of [["", "choose…"], ...Object.entries(ROLE_NAMES)]) {
        const option = document.createElement("option");
        option.value = role;
        option.textContent = name;
        select.appendChild(option);
      }
      select.value = (guesses[index] && guesses[index].role) || "";
      row.insertCell().appendChild(select);
    });
  }

  function send(form) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", "/api/jobs");
      request.responseType = "json";
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) {
          $("job-progress").max = event.total;
          $("job-progress").value = event.loaded;
          $("job-status").textContent = `uploading ${Math.round((100 * event.loaded) / event.total)}%`;
        }
      });
      request.addEventListener("load", () => {
        if (request.status === 201) resolve(request.response);
        else reject(new Error(message(request.response, { status: request.status, statusText: request.statusText })));
      });
      request.addEventListener("error", () => reject(new Error("the upload failed (connection lost)")));
      request.send(form);
    });
  }

  function describeJob(job) {
    if (job.state === "queued") return job.position ? `waiting: ${job.position} job(s) ahead` : "waiting to start";
    if (job.state === "running" && job.stage === "inference" && job.tiles_total) {
      return `segmenting: tile ${job.tiles_done} of ${job.tiles_total}`;
    }
    if (job.state === "running") return `${job.stage || "starting"}…`;
    if (job.state === "failed") return "failed";
    return `done in ${job.seconds_running.toFixed(1)} s`;
  }

  function showProgress(job) {
    const bar = $("job-progress");
    if (job.state === "running" && job.tiles_total) {
      bar.max = job.tiles_total;
      bar.value = job.tiles_done;
    } else if (job.state === "done") {
      bar.max = 1;
      bar.value = 1;
    } else {
      bar.removeAttribute("value");
    }
    $("job-status").textContent = describeJob(job);
  }

  function showResult(job) {
    const result = job.result;
    $("result").hidden = false;
    $("result-title").textContent = result.case_id;
    const volumes = $("volumes").tBodies[0];
    clear(volumes);
    const metrics = result.metrics || {};
    for (const [region, ml] of Object.entries(result.volumes_ml)) {
      const row = volumes.insertRow();
      cell(row, region);
      cell(row, `${ml.toFixed(2)} mL`);
      const dice = metrics[`dice_${region}`];
      cell(row, dice === undefined || dice === null ? "" : `Dice ${dice.toFixed(3)}`);
    }
    $("metrics-note").textContent = result.metrics_error || (result.metrics ? "Dice against the uploaded reference."
                                                                            : "");
    fillFlags($("flags"), result.flags);
    const base = `/api/jobs/${job.id}/download`;
    $("download-segmentation").href = `${base}/segmentation`;
    $("download-result").href = `${base}/result`;
    $("download-overlay").href = `${base}/overlay`;
    $("download-overlay").hidden = !result.overlay;
    $("overlay-note").textContent = result.overlay_error || "";
    const image = $("overlay-image");
    image.hidden = !result.overlay;
    if (result.overlay) image.src = `${base}/overlay`;
  }

  async function follow(jobId) {
    for (;;) {
      const job = await api(`/api/jobs/${jobId}`);
      page.job = job;
      showProgress(job);
      setState(job.state);
      if (job.state === "failed") {
        showError($("upload-error"), job.error);
        return;
      }
      if (job.state === "done") {
        page.timings.done = performance.now();
        showResult(job);
        await showCase(`/api/jobs/${job.id}`, job.sequences, job.result.labels);
        page.timings.shown = performance.now();
        setState("shown");
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  $("files").addEventListener("change", () => {
    showError($("upload-error"), "");
    guessRoles(Array.from($("files").files));
  });

  $("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const files = Array.from($("files").files);
    const form = new FormData();
    files.forEach((file) => form.append("files", file, file.name));
    for (const select of document.querySelectorAll("#file-roles select.role")) form.append("roles", select.value);
    form.append("convention", $("convention").value);
    showError($("upload-error"), "");
    $("result").hidden = true;
    $("job").hidden = false;
    $("submit").disabled = true;
    page.timings = { submitted: performance.now() };
    setState("uploading");
    try {
      const job = await send(form);
      page.timings.uploaded = performance.now();
      await follow(job.id);
    } catch (error) {
      setState("failed");
      $("job").hidden = true;
      showError($("upload-error"), error.message);
    } finally {
      $("submit").disabled = false;
    }
  });

  // ---------------------------------------------------------------- review
  const review = { cases: [], selected: null };

  function renderReviewTable() {
    const body = $("review-cases").tBodies[0];
    clear(body);
    const ordered = review.cases.map((c, index) => ({ c, index }));
    if ($("flagged-first").checked) {
      ordered.sort((a, b) => (b.c.flags.length > 0) - (a.c.flags.length > 0) || a.index - b.index);
    }
    for (const { c } of ordered) {
      const row = body.insertRow();
      row.dataset.caseId = c.case_id;
      if (c.case_id === review.selected) row.className = "selected";
      cell(row, c.case_id);
      cell(row, c.flags.map((f) => f.kind).join(", "));
      const wt = c.volumes_ml && c.volumes_ml.WT;
      cell(row, wt === undefined || wt === null ? "" : wt.toFixed(1));
      cell(row, c.verdict.verdict || "");
      row.addEventListener("click", () => selectCase(c.case_id).catch((e) => showError($("review-error"), e.message)));
    }
  }

  async function selectCase(caseId) {
    review.selected = caseId;
    renderReviewTable();
    const entry = review.cases.find((c) => c.case_id === caseId);
    $("review-panel").hidden = false;
    $("review-title").textContent = caseId;
    $("review-saved").textContent = "";
    $("review-comment").value = entry.verdict.comment || "";
    fillFlags($("review-flags"), entry.flags);
    showError($("review-error"), entry.error || "");
    const base = `/api/review/cases/${encodeURIComponent(caseId)}`;
    const detail = await api(base);
    if (detail.labels_error) showError($("review-error"), detail.labels_error);
    await showCase(base, detail.sequences, detail.labels);
  }

  async function recordVerdict(verdict) {
    const caseId = review.selected;
    const saved = await api(`/api/review/cases/${encodeURIComponent(caseId)}/verdict`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ verdict, comment: $("review-comment").value }),
    });
    review.cases.find((c) => c.case_id === caseId).verdict = saved;
    $("review-saved").textContent = `saved: ${saved.verdict || "no verdict"} (${saved.time})`;
    renderReviewTable();
  }

  for (const verdict of ["pass", "fail"]) {
    $(`verdict-${verdict}`).addEventListener("click", () => {
      recordVerdict(verdict).catch((error) => showError($("review-error"), error.message));
    });
  }
  $("flagged-first").addEventListener("change", renderReviewTable);

  // ---------------------------------------------------------------- start
  function showTab(name) {
    for (const tab of ["segment", "review"]) {
      $(tab).hidden = tab !== name;
      $(`tab-${tab}`).classList.toggle("active", tab === name);
    }
  }

  async function start() {
    try {
      page.info = await api("/api/info");
    } catch (error) {
      showError($("server-error"), error.message);
      return;
    }
    const info = page.info;
    if (info.model) {
      const m = info.model;
      $("model").textContent = `model ${m.folder}/${m.file} · ${m.backend} on ${m.device} (${m.precision})`;
    }
    $("limits").textContent = `Uploads up to ${info.max_upload_mb} MB; results are deleted ` +
                              `${info.expire_minutes} min after they are ready.`;
    $("tab-segment").hidden = !info.segment;
    $("tab-review").hidden = !info.review;
    $("tab-segment").addEventListener("click", () => showTab("segment"));
    $("tab-review").addEventListener("click", () => showTab("review"));
    if (info.review) {
      review.cases = await api("/api/review/cases");
      renderReviewTable();
    }
    showTab(info.segment ? "segment" : "review");
    document.body.dataset.ready = "true";
  }

  start();
})();

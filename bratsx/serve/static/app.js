// bratsx serve: upload a case, follow its job, view it with NiiVue, download it; review a batch.
// Every string from the server or a file name is shown with textContent, never parsed as HTML.
// Every request carries the server's token (when it has one) in a header: the token lives in this origin's
// localStorage (bound to the port, unlike a cookie), handed over once by the printed address's #token=...
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const LABEL_VOLUME = "seg.nii.gz";
  const TOKEN_KEY = "bratsx-token";
  const REVIEWER_KEY = "bratsx-reviewer";
  const ROLE_NAMES = { flair: "FLAIR", t1: "T1", t1ce: "T1ce", t2: "T2", seg: "reference segmentation" };
  const VIEWS = { multiplanar: "sliceTypeMultiplanar", axial: "sliceTypeAxial", coronal: "sliceTypeCoronal",
                  sagittal: "sliceTypeSagittal", render: "sliceTypeRender" };

  // What the tests and measurements read: the page's state, timings (performance.now(), ms) and pushed events.
  const page = { info: null, job: null, timings: {}, viewer: null, events: 0 };
  window.bratsx = page;

  const viewer = { nv: null, base: null, sequences: {}, labels: null, labelRole: "seg", reference: null,
                   hidden: new Set(), background: null, focus: null };

  function setState(name) { document.body.dataset.state = name; }

  // ---------------------------------------------------------------- requests
  function takeToken() {
    const match = /(?:^#|&)token=([^&]*)/.exec(window.location.hash);
    if (match) {
      window.localStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
      window.history.replaceState(null, "", window.location.pathname + window.location.search);
    }
  }

  function authHeaders(extra = {}) {
    const token = window.localStorage.getItem(TOKEN_KEY);
    return token ? { ...extra, "X-Bratsx-Token": token } : extra;
  }

  function message(body, response) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail) && body.detail.length) return body.detail[0].msg || String(body.detail[0]);
    return `${response.status} ${response.statusText}`;
  }

  async function request(path, options = {}) {
    const response = await fetch(path, { credentials: "omit", ...options, headers: authHeaders(options.headers) });
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (_) { body = null; }
      throw new Error(message(body, response));
    }
    return response;
  }

  async function api(path, options = {}) {
    return (await request(path, options)).json();
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

  function fixed(value, digits) { return value === undefined || value === null ? "" : value.toFixed(digits); }

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
      // as the report's overlay picture (bratsx/report/overlay.py): sagittal slices with anterior on screen left
      sagittalNoseLeft: true,
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

  // The voxel of the file itself (its own index order, from 0, as nibabel or ITK-SNAP count) at a point in mm:
  // NiiVue's location.vox counts in its RAS-reordered copy, which differs for any file not stored RAS.
  function fileVoxel(volume, mm) {
    const a = volume.hdr.affine;
    const m = [0, 1, 2].map((r) => [a[r][0], a[r][1], a[r][2]]);
    const b = [0, 1, 2].map((r) => mm[r] - a[r][3]);
    const det = (q) => q[0][0] * (q[1][1] * q[2][2] - q[1][2] * q[2][1])
                     - q[0][1] * (q[1][0] * q[2][2] - q[1][2] * q[2][0])
                     + q[0][2] * (q[1][0] * q[2][1] - q[1][1] * q[2][0]);
    const whole = det(m);
    return [0, 1, 2].map((c) => Math.round(det(m.map((row, r) => row.map((v, k) => (k === c ? b[r] : v)))) / whole));
  }

  function showLocation(location) {
    if (!location || !location.mm || !viewer.nv || !viewer.nv.volumes.length) return;
    const parts = [`voxel ${fileVoxel(viewer.nv.volumes[0], location.mm).join(", ")}`];
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
    $("overlay-choice").hidden = !viewer.reference;
    $("overlay-source").value = viewer.labelRole;
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

  async function volumeBytes(role) {
    return (await request(`${viewer.base}/volumes/${role}`)).arrayBuffer();
  }

  function showWindow() {
    const background = viewer.nv.volumes[0];
    $("window-min").value = Number(background.cal_min.toPrecision(4));
    $("window-max").value = Number(background.cal_max.toPrecision(4));
  }

  function setWindow() {
    const low = Number($("window-min").value);
    const high = Number($("window-max").value);
    if (!viewer.nv || !viewer.nv.volumes.length || !(high > low)) return;
    viewer.nv.volumes[0].cal_min = low;
    viewer.nv.volumes[0].cal_max = high;
    viewer.nv.updateGLVolume();
  }

  // Load the background and the labels; the crosshair goes to the tumour on a new case, and stays where it is
  // when only the background changes; the readout is refreshed either way.
  async function loadVolumes(newCase) {
    const nv = await ensureViewer();
    document.body.dataset.viewer = "loading";
    showError($("viewer-error"), "");
    const kept = newCase ? null : Array.from(nv.scene.crosshairPos);
    try {
      const frame = viewer.sequences[viewer.background];
      // NiiVue takes the bytes as the url (an ArrayBuffer), the file type from the name
      const background = { url: await volumeBytes(viewer.background), name: `${viewer.background}.nii.gz`,
                           colormap: "gray" };
      if (frame !== null && frame !== undefined) background.frame4D = frame;
      const volumes = [background];
      if (viewer.labels) {
        volumes.push({ url: await volumeBytes(viewer.labelRole), name: LABEL_VOLUME,
                       opacity: Number($("opacity").value) });
      }
      nv.setSliceType(nv[VIEWS[$("view").value]]);
      await nv.loadVolumes(volumes);
    } catch (error) {
      document.body.dataset.viewer = "failed";
      showError($("viewer-error"), `the viewer cannot show this case: ${error.message}`);
      return;
    }
    if (kept) nv.scene.crosshairPos = kept;
    else if (viewer.focus) nv.scene.crosshairPos = nv.mm2frac(viewer.focus);
    nv.drawScene();
    nv.createOnLocationChange();
    showWindow();
    document.body.dataset.viewer = "shown";
  }

  // Show a case: base URL of its volumes, its background sequences ({role: frame}), its labels (or null), where the
  // tumour is (mm, or null) and the reference's labels (review, or null).
  async function showCase(base, sequences, labels, focus, reference = null) {
    viewer.base = base;
    viewer.sequences = sequences || {};
    viewer.labels = labels;
    viewer.labelRole = "seg";
    viewer.reference = labels ? reference : null;
    viewer.focus = focus || null;
    viewer.hidden = new Set();
    const roles = Object.keys(viewer.sequences);
    viewer.background = roles.includes("t1ce") ? "t1ce" : roles[0];
    buildControls();
    if (!viewer.background) {
      document.body.dataset.viewer = "none";
      return;
    }
    await loadVolumes(true);
  }

  $("background").addEventListener("change", () => {
    viewer.background = $("background").value;
    loadVolumes(false);
  });
  $("overlay-source").addEventListener("change", () => {
    viewer.labelRole = $("overlay-source").value;
    viewer.labels = viewer.labelRole === "reference" ? viewer.reference : review.labels;
    buildControls();
    loadVolumes(false);
  });
  $("opacity").addEventListener("input", () => {
    if (viewer.nv && viewer.nv.volumes.length > 1) viewer.nv.setOpacity(1, Number($("opacity").value));
  });
  $("view").addEventListener("change", () => {
    if (viewer.nv) viewer.nv.setSliceType(viewer.nv[VIEWS[$("view").value]]);
  });
  $("window-min").addEventListener("change", setWindow);
  $("window-max").addEventListener("change", setWindow);

  // ---------------------------------------------------------------- upload and jobs
  function checkRoles() {
    const selects = Array.from(document.querySelectorAll("#file-roles select.role"));
    const unchosen = selects.filter((s) => !s.value).map((s) => s.dataset.file);
    const zip = $("files").files.length === 1 && $("files").files[0].name.toLowerCase().endsWith(".zip");
    $("submit").disabled = $("files").files.length === 0 || (!zip && unchosen.length > 0);
    const note = unchosen.length ? `choose the sequence of ${unchosen.join(", ")} (its name says none)` : "";
    $("roles-note").textContent = note;
    $("roles-note").hidden = !note;
  }

  async function guessRoles(files) {
    const table = $("file-roles").tBodies[0];
    clear(table);
    const zip = files.length === 1 && files[0].name.toLowerCase().endsWith(".zip");
    if (zip || files.length === 0) {
      checkRoles();
      return;
    }
    $("submit").disabled = true;
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
      select.dataset.file = file.name;
      for (const [role, name] of [["", "choose…"], ...Object.entries(ROLE_NAMES)]) {
        const option = document.createElement("option");
        option.value = role;
        option.textContent = name;
        select.appendChild(option);
      }
      select.value = (guesses[index] && guesses[index].role) || "";
      select.addEventListener("change", checkRoles);
      row.insertCell().appendChild(select);
    });
    checkRoles();
  }

  function send(form) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/jobs");
      for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) {
          $("job-progress").max = event.total;
          $("job-progress").value = event.loaded;
          $("job-status").textContent = `uploading ${Math.round((100 * event.loaded) / event.total)}%`;
        }
      });
      xhr.addEventListener("load", () => {
        if (xhr.status === 201) resolve(xhr.response);
        else reject(new Error(message(xhr.response, { status: xhr.status, statusText: xhr.statusText })));
      });
      xhr.addEventListener("error", () => reject(new Error("the upload failed (connection lost)")));
      xhr.send(form);
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

  // Download through fetch (the token goes in a header); a refusal (an expired job) is shown on the page.
  async function download(link) {
    showError($("download-error"), "");
    try {
      const blob = await (await request(link.dataset.url)).blob();
      const url = URL.createObjectURL(blob);
      const save = document.createElement("a");
      save.href = url;
      save.download = link.dataset.filename;
      document.body.appendChild(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (error) {
      showError($("download-error"), `${link.textContent}: ${error.message}`);
    }
  }

  for (const link of document.querySelectorAll(".downloads a")) {
    link.href = "#";
    link.addEventListener("click", (event) => {
      event.preventDefault();
      download(link);
    });
  }

  async function showOverlayPicture(url) {
    const image = $("overlay-image");
    try {
      image.src = URL.createObjectURL(await (await request(url)).blob());
      image.hidden = false;
    } catch (error) {
      $("overlay-note").textContent = `overlay picture: ${error.message}`;
    }
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
    const names = { segmentation: `${result.case_id}.nii.gz`, result: `${result.case_id}_result.json`,
                    overlay: `${result.case_id}_overlay.png`, native: `${result.case_id}_native.zip`,
                    "dicom-seg": `${result.case_id}_seg.dcm` };
    for (const [what, filename] of Object.entries(names)) {
      $(`download-${what}`).dataset.url = `${base}/${what}`;
      $(`download-${what}`).dataset.filename = filename;
    }
    $("download-overlay").hidden = !result.overlay;
    const prepared = result.prepared;
    $("download-native").hidden = !prepared;
    $("download-dicom-seg").hidden = !(prepared && prepared.dicom_seg);
    $("prepared-note").hidden = !prepared;
    $("prepared-note").textContent = prepared ?
      `Prepared from raw scans (brain ${prepared.brain_ml.toFixed(0)} mL); the segmentation shown is in atlas ` +
      `space, the downloads on each native grid: ${prepared.native_grids.join(", ")}.` : "";
    $("overlay-note").textContent = result.overlay_error || "";
    $("overlay-image").hidden = true;
    if (result.overlay) showOverlayPicture(`${base}/overlay`);
  }

  function parseEvent(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) name = line.slice(7);
      else if (line.startsWith("data: ")) data.push(line.slice(6));
    }
    return data.length ? { name, data: JSON.parse(data.join("\n")) } : null;
  }

  // The job's server-sent events (read through fetch, so that the token goes in a header), until it ends.
  async function jobEvents(jobId, onJob) {
    const response = await request(`/api/jobs/${jobId}/events`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let last = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (!event) continue;
        if (event.name === "expired") throw new Error(event.data.detail);
        page.events += 1;
        last = event.data;
        onJob(last);
      }
    }
    if (!last || !["done", "failed"].includes(last.state)) throw new Error("the connection to the server was lost");
    return last;
  }

  async function follow(jobId) {
    $("job").hidden = false;
    const job = await jobEvents(jobId, (update) => {
      page.job = update;
      showProgress(update);
      setState(update.state);
    });
    refreshJobs();
    if (job.state === "failed") {
      showError($("upload-error"), job.error);
      return;
    }
    page.timings.done = performance.now();
    showResult(job);
    await showCase(`/api/jobs/${job.id}`, job.sequences, job.result.labels, job.result.focus_mm);
    page.timings.shown = performance.now();
    setState("shown");
  }

  // Open a job by its address (?job=<id>): the link of a result survives a reload.
  async function openJob(jobId, push) {
    if (push) window.history.pushState(null, "", `?job=${encodeURIComponent(jobId)}`);
    showError($("upload-error"), "");
    $("result").hidden = true;
    try {
      await follow(jobId);
    } catch (error) {
      setState("failed");
      $("job").hidden = true;
      showError($("upload-error"), error.message);
    }
  }

  async function refreshJobs() {
    let jobs = [];
    try {
      jobs = await api("/api/jobs");
    } catch (_) {
      return;  // the list is a convenience: the job itself reports its own errors
    }
    const body = $("jobs").tBodies[0];
    clear(body);
    for (const job of jobs) {
      const row = body.insertRow();
      const link = document.createElement("a");
      link.href = `?job=${encodeURIComponent(job.id)}`;
      link.textContent = job.case_id;
      link.addEventListener("click", (event) => {
        event.preventDefault();
        openJob(job.id, true);
      });
      row.insertCell().appendChild(link);
      cell(row, job.state === "failed" ? `failed: ${job.error}` : job.state);
      cell(row, job.result ? fixed(job.result.volumes_ml.WT, 1) : "");
    }
    $("jobs-list").hidden = jobs.length === 0;
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
    form.append("prepare", $("prepare").checked ? "true" : "false");
    form.append("skull_strip", $("skull-strip").value);
    showError($("upload-error"), "");
    $("result").hidden = true;
    $("job").hidden = false;
    $("submit").disabled = true;
    page.timings = { submitted: performance.now() };
    setState("uploading");
    try {
      const job = await send(form);
      page.timings.uploaded = performance.now();
      refreshJobs();
      await openJob(job.id, true);
    } catch (error) {
      setState("failed");
      $("job").hidden = true;
      showError($("upload-error"), error.message);
    } finally {
      checkRoles();
    }
  });

  // ---------------------------------------------------------------- review
  const review = { cases: [], selected: null, labels: null };

  function orderedCases() {
    const ordered = review.cases.map((c, index) => ({ c, index }));
    if ($("flagged-first").checked) {
      ordered.sort((a, b) => (b.c.flags.length > 0) - (a.c.flags.length > 0) || a.index - b.index);
    }
    return ordered.map(({ c }) => c);
  }

  function renderReviewTable() {
    const body = $("review-cases").tBodies[0];
    clear(body);
    for (const c of orderedCases()) {
      const row = body.insertRow();
      row.dataset.caseId = c.case_id;
      if (c.case_id === review.selected) row.className = "selected";
      cell(row, c.case_id);
      const flags = c.flags.map((f) => f.kind).join(", ");
      cell(row, c.status === "failed" ? `failed: ${c.error || ""}${flags ? `; ${flags}` : ""}` : flags);
      cell(row, fixed(c.volumes_ml && c.volumes_ml.WT, 1));
      for (const region of ["WT", "TC", "ET"]) cell(row, fixed(c.metrics[`dice_${region}`], 3));
      cell(row, c.verdict.verdict || "");
      row.addEventListener("click", () => selectCase(c.case_id));
    }
    const reviewed = review.cases.filter((c) => c.verdict.verdict).length;
    $("review-progress").textContent = `${reviewed} of ${review.cases.length} reviewed`;
  }

  async function selectCase(caseId) {
    endCorrection();
    $("correct-saved").textContent = "";
    review.selected = caseId;
    window.history.replaceState(null, "", `?case=${encodeURIComponent(caseId)}`);
    renderReviewTable();
    const entry = review.cases.find((c) => c.case_id === caseId);
    $("review-panel").hidden = false;
    $("review-title").textContent = caseId;
    $("review-saved").textContent = "";
    $("review-comment").value = entry.verdict.comment || "";
    fillFlags($("review-flags"), entry.flags);
    showError($("review-error"), entry.status === "failed" ? `failed: ${entry.error || "no reason recorded"}` : "");
    try {
      const base = `/api/review/cases/${encodeURIComponent(caseId)}`;
      const detail = await api(base);
      if (detail.labels_error) showError($("review-error"), detail.labels_error);
      review.labels = detail.labels;
      await showCase(base, detail.sequences, detail.labels, detail.focus_mm, detail.reference_labels);
    } catch (error) {
      showError($("review-error"), error.message);
    }
  }

  function step(offset) {
    const ordered = orderedCases();
    if (!ordered.length) return;
    const index = ordered.findIndex((c) => c.case_id === review.selected);
    const next = index < 0 ? 0 : Math.min(Math.max(index + offset, 0), ordered.length - 1);
    if (ordered[next].case_id !== review.selected || index < 0) selectCase(ordered[next].case_id);
  }

  async function recordVerdict(verdict) {
    const caseId = review.selected;
    if (!caseId) return;
    try {
      const saved = await api(`/api/review/cases/${encodeURIComponent(caseId)}/verdict`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ verdict, comment: $("review-comment").value, reviewer: $("reviewer").value }),
      });
      review.cases.find((c) => c.case_id === caseId).verdict = saved;
      $("review-saved").textContent = `saved: ${saved.verdict || "no verdict"} (${saved.time})`;
      renderReviewTable();
    } catch (error) {
      showError($("review-error"), error.message);
    }
  }

  // ---------------------------------------------------------------- correction (NiiVue's drawing tools)
  // The prediction becomes NiiVue's drawing; the pen paints a label value (0 erases); the drawing is saved in the
  // background's grid (the prediction's: bratsx infer writes it in its input's geometry) and sent to the server,
  // which checks it and writes it beside the prediction, never over it.
  function fillPens() {
    const select = $("pen");
    clear(select);
    for (const label of [...(viewer.labels || []), { value: 0, name: "erase" }]) {
      const option = document.createElement("option");
      option.value = String(label.value);
      option.textContent = label.value ? `${label.name} (${label.value})` : label.name;
      select.appendChild(option);
    }
  }

  function setPen() {
    viewer.nv.opts.penSize = Math.max(1, Number($("pen-size").value) || 1);
    viewer.nv.setPenValue(Number($("pen").value), false);
  }

  function endCorrection() {
    document.body.dataset.correcting = "false";
    $("correct-tools").hidden = true;
    $("correct-start").hidden = false;
    if (!viewer.nv) return;
    viewer.nv.setDrawingEnabled(false);
    viewer.nv.closeDrawing();
    if (viewer.nv.volumes.length > 1) viewer.nv.setOpacity(1, Number($("opacity").value));
  }

  function startCorrection() {
    const nv = viewer.nv;
    if (!nv || nv.volumes.length < 2 || viewer.labelRole !== "seg") {
      $("correct-saved").textContent = "open a case with a prediction (shown as the labels) to correct it";
      return;
    }
    nv.loadDrawing(nv.volumes[1]);
    nv.setDrawColormap(labelColormap());
    nv.setDrawOpacity(Math.max(0.3, Number($("opacity").value)));
    nv.setOpacity(1, 0);
    fillPens();
    nv.setDrawingEnabled(true);
    setPen();
    $("correct-tools").hidden = false;
    $("correct-start").hidden = true;
    $("correct-saved").textContent = "";
    document.body.dataset.correcting = "true";
  }

  async function saveCorrection() {
    const caseId = review.selected;
    const nv = viewer.nv;
    try {
      const bytes = await nv.volumes[0].saveToUint8Array("correction.nii.gz", nv.drawBitmap);
      const query = new URLSearchParams({ reviewer: $("reviewer").value });
      const saved = await api(`/api/review/cases/${encodeURIComponent(caseId)}/correction?${query}`, {
        method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: bytes,
      });
      const volumes = Object.entries(saved.volumes_ml).map(([region, ml]) => `${region} ${ml.toFixed(2)} mL`);
      $("correct-saved").textContent = `saved as ${saved.corrected}: ${volumes.join(", ")}`;
      review.cases = await api("/api/review/cases");
      renderReviewTable();
    } catch (error) {
      $("correct-saved").textContent = `not saved: ${error.message}`;
    }
  }

  $("correct-start").addEventListener("click", startCorrection);
  $("correct-cancel").addEventListener("click", endCorrection);
  $("correct-undo").addEventListener("click", () => viewer.nv && viewer.nv.drawUndo());
  $("correct-save").addEventListener("click", saveCorrection);
  $("pen").addEventListener("change", setPen);
  $("pen-size").addEventListener("change", setPen);

  for (const verdict of ["pass", "fail"]) {
    $(`verdict-${verdict}`).addEventListener("click", () => recordVerdict(verdict));
  }
  $("review-next").addEventListener("click", () => step(1));
  $("review-previous").addEventListener("click", () => step(-1));
  $("flagged-first").addEventListener("change", renderReviewTable);
  $("reviewer").value = window.localStorage.getItem(REVIEWER_KEY) || "";
  $("reviewer").addEventListener("change", () => window.localStorage.setItem(REVIEWER_KEY, $("reviewer").value));

  const KEYS = { n: () => step(1), p: () => step(-1), 1: () => recordVerdict("pass"), 2: () => recordVerdict("fail") };
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if ($("review").hidden || typing || event.ctrlKey || event.metaKey || event.altKey || !KEYS[event.key]) return;
    event.preventDefault();
    KEYS[event.key]();
  });

  // ---------------------------------------------------------------- start
  function showTab(name) {
    for (const tab of ["segment", "review"]) {
      $(tab).hidden = tab !== name;
      $(`tab-${tab}`).classList.toggle("active", tab === name);
    }
  }

  async function start() {
    takeToken();
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
    $("limits").textContent = `Uploads up to ${info.max_upload_mb} MB and ${info.max_files} files; at most ` +
                              `${info.max_queued_jobs} jobs wait in line; results are deleted ` +
                              `${info.expire_minutes} min after they are ready.`;
    $("tab-segment").hidden = !info.segment;
    $("tab-review").hidden = !info.review;
    $("tab-segment").addEventListener("click", () => showTab("segment"));
    $("tab-review").addEventListener("click", () => showTab("review"));
    if (info.review) {
      review.cases = await api("/api/review/cases");
      renderReviewTable();
    }
    const wanted = new URLSearchParams(window.location.search);
    showTab(info.segment && !(info.review && wanted.has("case")) ? "segment" : "review");
    document.body.dataset.ready = "true";
    if (info.segment) {
      await refreshJobs();
      if (wanted.has("job")) openJob(wanted.get("job"), false);
    }
    if (info.review && wanted.has("case") && review.cases.some((c) => c.case_id === wanted.get("case"))) {
      selectCase(wanted.get("case"));
    }
  }

  window.addEventListener("popstate", () => {
    const wanted = new URLSearchParams(window.location.search);
    if (page.info && page.info.segment && wanted.has("job")) openJob(wanted.get("job"), false);
  });

  start();
})();

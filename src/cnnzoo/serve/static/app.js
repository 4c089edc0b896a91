// The Happy House page: camera or file -> POST /predict -> what the model saw, the
// probability and the door. Plain browser JavaScript, no build step, no libraries.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const els = {
    modelLine: $("model-line"), camera: $("camera"), video: $("video"),
    start: $("camera-start"), shoot: $("camera-shoot"), file: $("file"), note: $("camera-note"),
    photo: $("photo"), photoCaption: $("photo-caption"), snapshot: $("snapshot"),
    status: $("status"), error: $("error"), answer: $("answer"),
    modelView: $("model-view"), modelViewCaption: $("model-view-caption"),
    heatmap: $("heatmap"), heatmapFigure: $("heatmap-figure"), heatmapCaption: $("heatmap-caption"),
    sigmoidView: $("sigmoid-view"), probabilityText: $("probability-text"),
    bar: $("probability-bar"), fill: $("probability-fill"), thresholdMark: $("threshold-mark"),
    door: $("door"), doorText: $("door-text"), softmaxView: $("softmax-view"), top: $("top-classes"),
    faceBoxes: $("face-boxes"), faceList: $("face-list"),
  };
  const GUIDE = 0.7; // the square guide covers 70% of the frame's shorter side (see style.css)
  let model = null;
  let stream = null;
  let photoUrl = null;

  function percent(p) { return (100 * p).toFixed(1) + "%"; }

  function setStatus(text) { els.status.textContent = text; }

  function showError(message) {
    els.error.textContent = message;
    els.error.hidden = false;
    els.answer.hidden = true;
    document.body.dataset.state = "error";
  }

  function clearError() {
    els.error.hidden = true;
    els.error.textContent = "";
  }

  async function loadModel() {
    try {
      const response = await fetch("/model");
      if (!response.ok) throw new Error("HTTP " + response.status);
      model = await response.json();
    } catch (err) {
      els.modelLine.textContent = "The model information could not be loaded (" + err.message + ").";
      return;
    }
    const [h, w] = model.input_shape;
    const parts = [model.name + " (" + model.architecture + ")", "classes: " + model.classes.join(", ")];
    const test = model.metrics && model.metrics.test;
    if (test && typeof test.accuracy === "number") {
      parts.push("test accuracy " + percent(test.accuracy) + " on " + test.images + " images");
    }
    els.modelLine.textContent = "Model: " + parts.join(" · ");
    els.modelViewCaption.textContent = "as the model sees it (" + w + "x" + h + ")";
    if (model.output === "sigmoid") {
      els.thresholdMark.style.left = percent(model.threshold);
    } else {
      document.querySelector(".lead").textContent =
        "This model is not a door: it names what it sees. Show it an image.";
    }
    document.body.dataset.model = model.output;
    document.body.dataset.faces = model.faces ? "on" : "off";
    if (model.faces) {
      els.note.textContent = "The door finds the faces in the photo and lets you in when every face smiles. " +
        "Take a photo, choose an image file, or drop one on this page.";
    }
  }

  async function predict(blob, filename) {
    clearError();
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = null;
    if (blob.type && blob.type.startsWith("image/")) {
      photoUrl = URL.createObjectURL(blob);
      els.photo.src = photoUrl;
      els.photo.alt = "Your photo: " + filename;
      els.photo.hidden = false;
      els.photoCaption.hidden = false;
      els.photoCaption.textContent = "your photo: " + filename;
    } else {
      els.photo.hidden = true;
      els.photoCaption.hidden = true;
    }
    const form = new FormData();
    form.append("file", blob, filename);
    els.faceBoxes.replaceChildren();
    setStatus("Asking the door…");
    document.body.dataset.state = "busy";
    let response, body;
    try {
      response = await fetch("/predict?preview=true&explain=true", { method: "POST", body: form });
      body = await response.json().catch(() => null);
    } catch (err) {
      setStatus("No answer.");
      showError("The server cannot be reached: " + err.message);
      return;
    }
    if (!response.ok) {
      setStatus("The door could not judge this file.");
      showError((body && body.error) || ("The server answered HTTP " + response.status + "."));
      return;
    }
    render(body, filename);
  }

  // One line per face, and its box on the photo (in percent of the photo's own size).
  function faceLabel(face, positive) {
    if (face.too_small) return "too small to judge";
    if (face.p_happy !== undefined) return "p(" + positive + ") = " + face.p_happy.toFixed(2);
    return face.prediction["class"] + " " + percent(face.prediction.probability);
  }

  function showFaces(result) {
    const faces = result.faces;
    els.faceList.hidden = faces === undefined;
    if (faces === undefined) return;
    const [width, height] = [result.image.width, result.image.height];
    els.faceBoxes.replaceChildren(...faces.map((face, k) => {
      const [x, y, w, h] = face.box;
      const box = document.createElement("div");
      box.className = "face-box" + (face.too_small ? " small" : face.happy ? " happy" : "");
      box.style.left = percent(x / width);
      box.style.top = percent(y / height);
      box.style.width = percent(w / width);
      box.style.height = percent(h / height);
      const label = document.createElement("span");
      label.textContent = (k + 1) + ": " + faceLabel(face, result.positive_class);
      box.append(label);
      return box;
    }));
    els.faceList.replaceChildren(...(faces.length ? faces : [null]).map((face, k) => {
      const li = document.createElement("li");
      li.className = "face-answer";
      li.textContent = face === null ? "No face found in the photo."
        : (face.whole_frame ? "The whole image (a face crop): " : "Face " + (k + 1) + ": ") +
          faceLabel(face, result.positive_class) +
          (face.too_small ? " (come closer)" : face.happy === undefined ? "" : face.happy ? ", smiling" : ", not smiling");
      return li;
    }));
  }

  function render(result, filename) {
    els.answer.hidden = false;
    els.modelView.parentElement.hidden = !result.preview;
    if (result.preview) els.modelView.src = result.preview;
    showExplanation(result.explanation);
    showFaces(result);
    setStatus("Answered in " + result.elapsed_ms.toFixed(0) + " ms for " + filename + ".");
    if (result.door !== undefined) {
      els.sigmoidView.hidden = false;
      els.softmaxView.hidden = true;
      const p = result.p_happy;
      els.bar.hidden = p === undefined;
      els.probabilityText.textContent = p === undefined ? ""
        : "p(" + result.positive_class + ") = " + p.toFixed(2) + " (" + percent(p) + ")" +
          (result.faces && result.faces.length > 1 ? ", the least smiling face" : "");
      if (p !== undefined) {
        els.fill.style.width = percent(p);
        els.bar.setAttribute("aria-valuenow", String(p));
      }
      els.bar.classList.toggle("happy", result.happy);
      els.door.classList.toggle("open", result.door === "open");
      els.door.classList.toggle("closed", result.door !== "open");
      els.doorText.className = "door-text " + result.door;
      if (result.reason) {
        els.doorText.textContent = (result.door === "open" ? "Door open: " : "Door closed: ") + result.reason + ".";
      } else {
        els.doorText.textContent = result.door === "open"
          ? "Door open: welcome home!"
          : "Door closed: no smile, no entry.";
      }
    } else {
      els.sigmoidView.hidden = true;
      els.softmaxView.hidden = false;
      els.top.replaceChildren(...result.top.map((c) => {
        const li = document.createElement("li");
        const row = document.createElement("div");
        row.className = "row";
        const name = document.createElement("span");
        name.className = "class-name";
        name.textContent = c["class"];
        const value = document.createElement("span");
        value.textContent = percent(c.probability);
        row.append(name, value);
        const bar = document.createElement("div");
        bar.className = "bar";
        const fill = document.createElement("div");
        fill.className = "fill";
        fill.style.width = percent(c.probability);
        bar.append(fill);
        li.append(row, bar);
        return li;
      }));
    }
    document.body.dataset.state = "done";
  }

  // The heat map of what decided the answer (Grad-CAM: red where the evidence is strongest).
  function showExplanation(explanation) {
    if (!explanation) {
      els.heatmapFigure.hidden = true;
      return;
    }
    els.heatmap.src = explanation.image;
    const how = explanation.method === "gradcam" ? "Grad-CAM at " + explanation.layer : "saliency";
    els.heatmapCaption.textContent =
      "what decided \u201c" + explanation["class"] + "\u201d (" + how + "; red: strongest)";
    els.heatmapFigure.hidden = false;
  }

  async function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      els.note.textContent = "This browser allows the camera only on https or localhost: choose a file instead.";
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
      });
    } catch (err) {
      els.note.textContent = "The camera is not available (" + (err.name || err.message) +
        "): choose a file instead.";
      return;
    }
    els.video.srcObject = stream;
    els.camera.hidden = false;
    await els.video.play().catch(() => {});
    els.shoot.disabled = false;
    els.start.textContent = "Stop camera";
    els.note.textContent = "Put your face in the square, then take the photo.";
  }

  function stopCamera() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    els.video.srcObject = null;
    els.camera.hidden = true;
    els.shoot.disabled = true;
    els.start.textContent = "Start camera";
  }

  function takePhoto() {
    const video = els.video;
    const vw = video.videoWidth, vh = video.videoHeight;
    if (!vw || !vh) {
      els.note.textContent = "The camera has not delivered a picture yet: try again in a moment.";
      return;
    }
    // The square under the guide, as the person sees it (the preview is mirrored); with the
    // face step, the whole frame (the server finds the faces).
    const faces = model && model.faces;
    const side = Math.round(Math.min(vw, vh) * GUIDE);
    const [sw, sh] = faces ? [vw, vh] : [side, side];
    const sx = Math.round((vw - sw) / 2), sy = Math.round((vh - sh) / 2);
    const scale = Math.min(1, (faces ? 1024 : 512) / Math.max(sw, sh));
    const [ow, oh] = [Math.round(sw * scale), Math.round(sh * scale)];
    const canvas = els.snapshot;
    canvas.width = ow;
    canvas.height = oh;
    const ctx = canvas.getContext("2d");
    ctx.translate(ow, 0);
    ctx.scale(-1, 1);
    ctx.drawImage(video, sx, sy, sw, sh, 0, 0, ow, oh);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    canvas.toBlob((blob) => {
      if (blob) predict(blob, "camera photo");
      else showError("The photo could not be encoded by this browser.");
    }, "image/jpeg", 0.92);
  }

  els.start.addEventListener("click", () => (stream ? stopCamera() : startCamera()));
  els.shoot.addEventListener("click", takePhoto);
  els.file.addEventListener("change", () => {
    const file = els.file.files && els.file.files[0];
    if (file) predict(file, file.name);
    els.file.value = "";
  });
  document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
  document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("dragging");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) predict(file, file.name);
  });

  loadModel();
})();

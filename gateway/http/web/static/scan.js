// Scan to pay: the rear camera's live picture, decoded until a QR code is found. Where the
// browser has a BarcodeDetector the frames are decoded here; elsewhere one frame at a time
// goes to the gateway (POST /wallet/scan/frame), which decodes it with zxing-cpp. "Choose a
// photo" does the same from a picture. A code found goes to the confirm screen.
(function () {
  "use strict";
  const status = document.getElementById("scan-status");
  if (!status) return;
  const video = document.getElementById("camera"), finder = document.getElementById("viewfinder");
  const errorLine = document.getElementById("scan-error"), hint = document.getElementById("scan-hint");
  const startButton = document.getElementById("start-camera"), photo = document.getElementById("photo");
  const frameUrl = status.dataset.frameUrl, payUrl = status.dataset.payUrl, csrf = status.dataset.csrf;
  const HINT_AFTER = 8;  // frames without a code (2 to 3 seconds) before the page gives advice
  const FRAME_GAP_MS = 250, MAX_FRAME_WIDTH = 960, MAX_PHOTO_WIDTH = 1600;
  let stream = null, detector = null, tries = 0, done = false;

  const say = (text) => { status.textContent = text; };
  const fail = (text) => { errorLine.textContent = text; errorLine.hidden = !text; };

  async function makeDetector() {
    if (!("BarcodeDetector" in window)) return null;
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      return formats.includes("qr_code") ? new window.BarcodeDetector({ formats: ["qr_code"] }) : null;
    } catch (e) {
      return null;
    }
  }

  function found(text) {
    if (done) return;
    done = true;
    stop();
    say("Code found. Opening…");
    window.location.assign(`${payUrl}?code=${encodeURIComponent(text)}`);
  }

  function stop() {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
  }

  function picture(source, width, height, maxWidth) {
    const scale = Math.min(1, maxWidth / width);
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(width * scale);
    canvas.height = Math.round(height * scale);
    canvas.getContext("2d").drawImage(source, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  }

  async function askGateway(blob, isPhoto) {
    const answer = await fetch(frameUrl + (isPhoto ? "?photo=1" : ""), {
      method: "POST", body: blob, credentials: "same-origin",
      headers: { "Content-Type": "image/jpeg", "X-CSRF-Token": csrf },
    });
    if (!(answer.headers.get("Content-Type") || "").includes("json")) {
      return { found: false, message: answer.status === 413 ? "The picture is too large." : "The gateway did not answer; try again." };
    }
    return answer.json();
  }

  async function tick() {
    if (done || !stream) return;
    let answer = { found: false };
    try {
      if (video.readyState >= 2 && video.videoWidth) {
        if (detector) {
          const codes = await detector.detect(video);
          answer = codes.length ? { found: true, text: codes[0].rawValue } : { found: false };
        } else {
          answer = await askGateway(await picture(video, video.videoWidth, video.videoHeight, MAX_FRAME_WIDTH), false);
        }
        tries += 1;
      }
    } catch (e) {
      answer = { found: false };
    }
    if (answer.found) return found(answer.text);
    if (answer.seen) say("A code is in view: hold steady…");
    else if (tries) say("Looking for a QR code…");
    if (tries >= HINT_AFTER) hint.hidden = false;
    setTimeout(tick, detector ? 150 : FRAME_GAP_MS);
  }

  async function start() {
    fail("");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say("This browser cannot open the camera here (it needs a secure https page). Choose a photo instead.");
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: false, video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
      });
    } catch (e) {
      const why = {
        NotAllowedError: "The camera was not allowed. Allow it for this site in the browser's settings, or choose a photo.",
        NotFoundError: "This device has no camera. Choose a photo instead.",
        NotReadableError: "The camera is in use by another app. Close it, or choose a photo.",
      }[e && e.name];
      say(why || "The camera could not be opened. Choose a photo instead.");
      return;
    }
    detector = await makeDetector();
    video.srcObject = stream;
    finder.hidden = false;
    startButton.hidden = true;
    try { await video.play(); } catch (e) { /* autoplay: muted and inline, it plays */ }
    say("Point the camera at the QR code on the bill or at the till.");
    tick();
  }

  async function readPhoto(file) {
    fail("");
    say("Reading the photo…");
    try {
      const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
      if (detector || (detector = await makeDetector())) {
        const codes = await detector.detect(bitmap);
        if (codes.length === 1) return found(codes[0].rawValue);
      }
      const answer = await askGateway(await picture(bitmap, bitmap.width, bitmap.height, MAX_PHOTO_WIDTH), true);
      if (answer.found) return found(answer.text);
      say("");
      fail(answer.message || "No QR code found in this photo.");
    } catch (e) {
      document.getElementById("photo-form").submit(); // let the gateway read the file itself
    }
  }

  startButton.addEventListener("click", start);
  photo.addEventListener("change", () => { if (photo.files.length) readPhoto(photo.files[0]); });
  window.addEventListener("pagehide", stop);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stop();
    else if (!done && !stream && !finder.hidden) start();
  });
  start();
})();

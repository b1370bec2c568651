// The camera: list devices, open one at a chosen size and frame rate, and grab JPEG frames.

/** Video input devices; labels are empty until the user has granted camera permission once. */
export async function listCameras() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
    return [];
  }
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((d) => d.kind === "videoinput");
}

/** Why the camera cannot be used here, or "" if getUserMedia is available. */
export function cameraUnavailableReason() {
  if (!window.isSecureContext) {
    return "The camera needs a secure page: open the demo over HTTPS, or from localhost / 127.0.0.1.";
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "This browser does not offer camera access (getUserMedia).";
  }
  return "";
}

/** Open a camera. `width`/`height`/`fps` are preferences; the browser picks the nearest mode. */
export async function openCamera({ deviceId, width, height, fps }) {
  const video = {
    width: { ideal: width },
    height: { ideal: height },
    frameRate: { ideal: fps },
  };
  if (deviceId) {
    video.deviceId = { exact: deviceId };
  }
  return navigator.mediaDevices.getUserMedia({ video, audio: false });
}

export function stopStream(stream) {
  if (stream) {
    for (const track of stream.getTracks()) {
      track.stop();
    }
  }
}

/** A sentence for a getUserMedia failure. */
export function describeCameraError(err) {
  switch (err && err.name) {
    case "NotAllowedError":
      return "Camera permission was denied. Allow the camera for this page and press Start again.";
    case "NotFoundError":
      return "No camera found.";
    case "NotReadableError":
      return "The camera is busy or unavailable (another application may be using it).";
    case "OverconstrainedError":
      return "The camera cannot provide that resolution; pick another.";
    default:
      return `Cannot open the camera: ${err && err.message ? err.message : err}`;
  }
}

/** Copies the current video frame onto a canvas and encodes it as JPEG bytes. */
export class FrameGrabber {
  constructor(video) {
    this.video = video;
    this.canvas = document.createElement("canvas");
    this.context = this.canvas.getContext("2d", { alpha: false });
  }

  ready() {
    return this.video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA && this.video.videoWidth > 0;
  }

  /** {bytes: Uint8Array, width, height}; the frame as the camera delivers it (never mirrored). */
  async grab(quality) {
    const width = this.video.videoWidth;
    const height = this.video.videoHeight;
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.context.drawImage(this.video, 0, 0, width, height);
    const blob = await new Promise((resolve, reject) => {
      this.canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("JPEG encoding failed"))), "image/jpeg", quality);
    });
    return { bytes: new Uint8Array(await blob.arrayBuffer()), width, height };
  }
}

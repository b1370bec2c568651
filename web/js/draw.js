// Drawing results over the video: skeleton, landmarks and a label per hand.
//
// Landmarks are normalised to the frame that was sent, which is never mirrored. When the video is
// shown as a mirrored selfie the drawing must be mirrored too (x -> 1 - x) so it stays on the hand;
// the labels keep the edge's handedness, which is the person's own hand either way.

// MediaPipe's 21-point hand: wrist 0, then thumb 1-4, index 5-8, middle 9-12, ring 13-16, pinky 17-20.
export const HAND_CONNECTIONS = [
  [0, 1], [1, 2], [2, 3], [3, 4],
  [0, 5], [5, 6], [6, 7], [7, 8],
  [5, 9], [9, 10], [10, 11], [11, 12],
  [9, 13], [13, 14], [14, 15], [15, 16],
  [13, 17], [0, 17], [17, 18], [18, 19], [19, 20],
];
const FINGERTIPS = new Set([4, 8, 12, 16, 20]);
const COLORS = { Left: "#38bdf8", Right: "#f97316" };

/** Landmark -> canvas pixels, mirrored when the display is. Pure. */
export function toCanvas(point, width, height, mirrored) {
  const x = mirrored ? 1 - point[0] : point[0];
  return [x * width, point[1] * height];
}

/** Human-readable gesture name ("open_palm" -> "open palm"). */
export function gestureLabel(name) {
  return !name || name === "none" ? "" : String(name).replace(/_/g, " ");
}

/** The one-line description shown next to (and under) a hand. */
export function handLabel(hand) {
  const n = hand.fingers;
  const gesture = gestureLabel(hand.gesture);
  return `${hand.handedness} · ${n} finger${n === 1 ? "" : "s"}${gesture ? ` · ${gesture}` : ""}`;
}

/** Clear the overlay and draw every hand of `result` (or nothing when result is null). */
export function drawResult(canvas, result, mirrored) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  if (!result || !Array.isArray(result.hands)) {
    return;
  }
  const scale = Math.max(1, Math.min(width, height) / 320);
  for (const hand of result.hands) {
    if (!Array.isArray(hand.landmarks) || hand.landmarks.length !== 21) {
      continue;
    }
    const color = COLORS[hand.handedness] || "#a3e635";
    const pts = hand.landmarks.map((p) => toCanvas(p, width, height, mirrored));

    ctx.lineWidth = 2 * scale;
    ctx.strokeStyle = color;
    ctx.beginPath();
    for (const [a, b] of HAND_CONNECTIONS) {
      ctx.moveTo(pts[a][0], pts[a][1]);
      ctx.lineTo(pts[b][0], pts[b][1]);
    }
    ctx.stroke();

    for (let i = 0; i < pts.length; i += 1) {
      ctx.beginPath();
      ctx.arc(pts[i][0], pts[i][1], (FINGERTIPS.has(i) ? 4 : 2.5) * scale, 0, 2 * Math.PI);
      ctx.fillStyle = FINGERTIPS.has(i) ? "#ffffff" : color;
      ctx.fill();
    }

    drawLabel(ctx, hand, pts, color, scale);
  }
}

function drawLabel(ctx, hand, pts, color, scale) {
  const text = handLabel(hand);
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const fontSize = Math.round(13 * scale);
  ctx.font = `600 ${fontSize}px system-ui, sans-serif`;
  const textWidth = ctx.measureText(text).width;
  const pad = 4 * scale;
  // Above the hand's box, kept inside the canvas.
  const x = Math.min(Math.max(0, Math.min(...xs)), ctx.canvas.width - textWidth - 2 * pad);
  const y = Math.max(fontSize + 2 * pad, Math.min(...ys) - 6 * scale);
  ctx.fillStyle = "rgba(0, 0, 0, 0.65)";
  ctx.fillRect(x, y - fontSize - pad, textWidth + 2 * pad, fontSize + 2 * pad);
  ctx.fillStyle = color;
  ctx.fillText(text, x + pad, y);
}

// The edge's WebSocket protocol v1 (docs/protocol.md), as pure functions: URLs, subprotocols,
// message encoding/decoding, and turning close codes and error codes into words for people.
import { decode, encode } from "./msgpack.js";

export const SUBPROTOCOL_MSGPACK = "hgr.msgpack.v1";
export const KEY_SUBPROTOCOL_PREFIX = "hgr.key.";

// RFC 6455 subprotocols are RFC 7230 tokens; a key with other characters cannot ride in that list.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** ws:// or wss:// URL of the edge that served this page (same origin, path /ws). */
export function defaultEdgeUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/** Whether `key` can be sent as `hgr.key.<key>` (browsers cannot set an Authorization header). */
export function isSendableKey(key) {
  return TOKEN.test(key);
}

/** The subprotocol list to offer: the codec first, then the API key if one is given. */
export function subprotocols(apiKey) {
  const list = [SUBPROTOCOL_MSGPACK];
  if (apiKey) {
    list.push(KEY_SUBPROTOCOL_PREFIX + apiKey);
  }
  return list;
}

/** One frame message, msgpack-encoded. `image` is the JPEG as a Uint8Array (sent as msgpack bin). */
export function encodeFrame({ seq, ts, image, opts }) {
  const message = { type: "frame", seq, ts, image };
  if (opts) {
    message.opts = opts;
  }
  return encode(message);
}

/** Decode one message from the edge (binary msgpack, or JSON text if the edge ever sends text). */
export function decodeMessage(data) {
  const message = typeof data === "string" ? JSON.parse(data) : decode(new Uint8Array(data));
  if (message === null || typeof message !== "object" || typeof message.type !== "string") {
    throw new Error("message from the edge has no type");
  }
  return message;
}

// Close codes (docs/protocol.md). `retry`: whether reconnecting can help without the user acting.
const CLOSE_REASONS = {
  1000: { text: "Connection closed.", retry: true },
  1001: { text: "The edge is restarting or going away.", retry: true },
  1003: { text: "The edge did not accept the data this page sent (unsupported data).", retry: false },
  1006: { text: "Connection lost (no close frame): is the edge running and reachable?", retry: true },
  1008: { text: "The edge refused the API key. Enter a valid key and press Start.", retry: false },
  1009: { text: "A frame was too large for the edge. Lower the resolution or JPEG quality.", retry: true },
  1011: { text: "The edge hit an internal error.", retry: true },
  1013: { text: "The edge is overloaded (too many streams). Retrying shortly.", retry: true },
};

/** {text, retry} for a WebSocket close event's code (and reason, when the edge gave one). */
export function describeClose(code, reason) {
  const known = CLOSE_REASONS[code] || { text: `Connection closed (code ${code}).`, retry: true };
  const text = reason && !known.text.includes(reason) ? `${known.text} (${reason})` : known.text;
  return { text, retry: known.retry };
}

// Error messages the edge sends while the connection stays open, keyed by their stable code.
const ERROR_HINTS = {
  bad_message: "The edge could not read a message from this page.",
  bad_frame: "The edge rejected a frame from this page.",
  bad_options: "The edge rejected the options (max hands / model).",
  model_unavailable: "That model is not available on this edge.",
  empty_image: "The camera produced an empty frame.",
  corrupt_image: "The edge could not decode a frame.",
  unsupported_format: "The edge does not accept this image format.",
  image_too_large: "Frame too large: lower the resolution or JPEG quality.",
  too_many_pixels: "Frame has too many pixels: lower the resolution.",
  worker_restarted: "The edge's model process restarted; the stream continues.",
  unavailable: "The edge is shutting down.",
};

/** A sentence for an `{"type": "error", code, message}` message. */
export function describeError(error) {
  const hint = ERROR_HINTS[error.code];
  const detail = error.message ? String(error.message) : "";
  if (hint && detail) {
    return `${hint} (${detail})`;
  }
  return hint || detail || `Edge error: ${error.code || "unknown"}`;
}

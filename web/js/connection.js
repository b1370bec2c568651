// One WebSocket to the edge, kept open: reconnects with exponential backoff and jitter, stops for
// good on errors that retrying cannot fix (bad API key, unsupported data). Emits events:
//   "state"   detail {state, text}   state: idle | connecting | open | waiting | failed
//   "message" detail: a decoded message from the edge (hello / result / error / ...)
import { decodeMessage, describeClose, isSendableKey, subprotocols } from "./protocol.js";

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
const OVERLOAD_MIN_MS = 2000; // an overloaded edge (1013) gets at least this long before we return

/** Delay before reconnect attempt `attempt` (0-based): doubling, capped, with ±25% jitter. */
export function backoffDelay(attempt, minimum = 0, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
  const jittered = base * (0.75 + random() * 0.5);
  return Math.max(minimum, Math.round(jittered));
}

export class EdgeConnection extends EventTarget {
  constructor() {
    super();
    this.socket = null;
    this.state = "idle";
    this.attempt = 0;
    this.retryTimer = null;
    this.wanted = false;
    this.url = "";
    this.apiKey = "";
  }

  /** Open (or re-open) the connection and keep it open until stop(). */
  start(url, apiKey) {
    this.state = "idle";
    this.stop();
    this.url = url;
    this.apiKey = apiKey;
    this.wanted = true;
    this.attempt = 0;
    this.open();
  }

  stop() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.onopen = socket.onclose = socket.onmessage = socket.onerror = null;
      socket.close(1000, "client stopped");
    }
    if (this.state !== "failed") {
      this.setState("idle", "Not connected."); // a failure stays on show until the next start()
    }
  }

  isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Bytes queued in the browser but not yet on the wire (a second, local, backpressure signal). */
  buffered() {
    return this.socket ? this.socket.bufferedAmount : 0;
  }

  send(bytes) {
    if (!this.isOpen()) {
      return false;
    }
    this.socket.send(bytes);
    return true;
  }

  open() {
    if (this.apiKey && !isSendableKey(this.apiKey)) {
      this.wanted = false;
      this.setState("failed", "This API key contains characters a browser cannot send; check it.");
      return;
    }
    let socket;
    try {
      socket = new WebSocket(this.url, subprotocols(this.apiKey));
    } catch (err) {
      this.wanted = false;
      this.setState("failed", `Cannot connect to ${this.url}: ${err.message}`);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.setState("connecting", `Connecting to ${this.url} …`);

    socket.onopen = () => {
      this.setState("open", "Connected.");
    };
    socket.onmessage = (event) => {
      let message;
      try {
        message = decodeMessage(event.data);
      } catch (err) {
        this.emit("message", { type: "error", code: "bad_message", message: err.message });
        return;
      }
      if (message.type === "hello") {
        this.attempt = 0; // a healthy session resets the backoff
      }
      this.emit("message", message);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) {
        return;
      }
      this.socket = null;
      const { text, retry } = describeClose(event.code, event.reason);
      if (!this.wanted) {
        this.setState("idle", text);
      } else if (!retry) {
        this.wanted = false;
        this.setState("failed", text, event.code);
      } else {
        const delay = backoffDelay(this.attempt, event.code === 1013 ? OVERLOAD_MIN_MS : 0);
        this.attempt += 1;
        this.setState("waiting", `${text} Reconnecting in ${(delay / 1000).toFixed(1)} s …`, event.code);
        this.retryTimer = setTimeout(() => this.wanted && this.open(), delay);
      }
    };
    // onerror carries no detail in browsers; the close event that always follows says what happened.
    socket.onerror = () => {};
  }

  setState(state, text, code = null) {
    this.state = state;
    this.emit("state", { state, text, code });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

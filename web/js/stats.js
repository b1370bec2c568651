// Live statistics: event rates over a sliding window and latency percentiles. Pure bookkeeping,
// time is always passed in (milliseconds from performance.now()).

/** Events per second over the last `windowMs`. */
export class RateMeter {
  constructor(windowMs = 2000) {
    this.windowMs = windowMs;
    this.times = [];
  }

  mark(now) {
    this.times.push(now);
    this.trim(now);
  }

  rate(now) {
    this.trim(now);
    if (this.times.length < 2) {
      return this.times.length / (this.windowMs / 1000);
    }
    // Over the span actually covered, so the number is right soon after start, not after a window.
    const span = Math.max(now - this.times[0], 1);
    return (this.times.length / span) * 1000;
  }

  trim(now) {
    const oldest = now - this.windowMs;
    let drop = 0;
    while (drop < this.times.length && this.times[drop] < oldest) {
      drop += 1;
    }
    if (drop) {
      this.times.splice(0, drop);
    }
  }

  reset() {
    this.times = [];
  }
}

/** The p-th percentile (0..100) of `values` by nearest rank; NaN when empty. */
export function percentile(values, p) {
  if (!values.length) {
    return NaN;
  }
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** The last `size` samples of something (latency, server timings). */
export class SampleWindow {
  constructor(size = 120) {
    this.size = size;
    this.values = [];
  }

  add(value) {
    if (typeof value !== "number" || !Number.isFinite(value)) {
      return;
    }
    this.values.push(value);
    if (this.values.length > this.size) {
      this.values.shift();
    }
  }

  percentile(p) {
    return percentile(this.values, p);
  }

  mean() {
    if (!this.values.length) {
      return NaN;
    }
    return this.values.reduce((a, b) => a + b, 0) / this.values.length;
  }

  reset() {
    this.values = [];
  }
}

/** "12.3" / "–" formatting for numbers that may be NaN. */
export function fmt(value, digits = 1) {
  return Number.isFinite(value) ? value.toFixed(digits) : "–";
}

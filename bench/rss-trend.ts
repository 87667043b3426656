/** RSS samples over a run: the trend over its last half, and a plot of it. */

export interface Sample {
  /** Seconds since the run started. */
  t: number;
  mb: number;
}

export interface Trend {
  /** Least-squares slope over the last half of the run, MB per minute. */
  slopeMbPerMin: number;
  /** Growth of the fitted line across the last half, in % of its value at the half. */
  growthPercent: number;
}

/** The least-squares line through the samples of the last half of the run. */
export function trend(samples: readonly Sample[]): Trend {
  const end = samples.at(-1)?.t ?? 0;
  const half = samples.filter((s) => s.t >= end / 2);
  const n = half.length;
  if (n < 2) return { slopeMbPerMin: 0, growthPercent: 0 };
  const meanT = half.reduce((a, s) => a + s.t, 0) / n;
  const meanMb = half.reduce((a, s) => a + s.mb, 0) / n;
  const num = half.reduce((a, s) => a + (s.t - meanT) * (s.mb - meanMb), 0);
  const den = half.reduce((a, s) => a + (s.t - meanT) ** 2, 0);
  const slope = den === 0 ? 0 : num / den;
  const at = (t: number) => meanMb + slope * (t - meanT);
  const from = at(half[0]!.t);
  return {
    slopeMbPerMin: Math.round(slope * 60 * 1000) / 1000,
    growthPercent: Math.round(((at(end) - from) / from) * 1000) / 10,
  };
}

/** An SVG line plot of RSS over time, with the last half's trend drawn over it. */
export function svgPlot(samples: readonly Sample[], title: string): string {
  const width = 800;
  const height = 360;
  const pad = { left: 60, right: 20, top: 40, bottom: 40 };
  const end = Math.max(samples.at(-1)?.t ?? 1, 1);
  const top = Math.max(...samples.map((s) => s.mb), 1) * 1.1;
  const x = (t: number) => pad.left + (t / end) * (width - pad.left - pad.right);
  const y = (mb: number) => height - pad.bottom - (mb / top) * (height - pad.top - pad.bottom);
  const points = samples.map((s) => `${x(s.t).toFixed(1)},${y(s.mb).toFixed(1)}`).join(' ');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const mb = Math.round(top * f);
    return `<line x1="${pad.left}" x2="${width - pad.right}" y1="${y(mb)}" y2="${y(mb)}" stroke="#ddd"/><text x="${pad.left - 8}" y="${y(mb) + 4}" text-anchor="end">${mb}</text>`;
  });
  const minutes = Array.from({ length: Math.floor(end / 60) + 1 }, (_, m) => m).filter(
    (m) => m % Math.max(1, Math.ceil(end / 60 / 10)) === 0,
  );
  const xTicks = minutes.map(
    (m) =>
      `<text x="${x(m * 60)}" y="${height - pad.bottom + 18}" text-anchor="middle">${m}</text>`,
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>`,
    ...ticks,
    ...xTicks,
    `<text x="${width / 2}" y="${height - 6}" text-anchor="middle">minutes</text>`,
    `<text x="14" y="${height / 2}" transform="rotate(-90 14 ${height / 2})" text-anchor="middle">RSS (MB)</text>`,
    `<line x1="${x(end / 2)}" x2="${x(end / 2)}" y1="${pad.top}" y2="${height - pad.bottom}" stroke="#999" stroke-dasharray="4"/>`,
    `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${points}"/>`,
    '</svg>',
    '',
  ].join('\n');
}

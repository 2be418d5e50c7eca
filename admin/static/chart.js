// Small hand-drawn SVG charts of daily counts: no library and nothing loaded from elsewhere.
// Built with DOM calls and text nodes only, like the rest of the console; colours are SVG
// presentation attributes (the page's CSP allows no inline style), the rest is console.css.

const NS = "http://www.w3.org/2000/svg";
const DAY_MS = 86400000;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value != null && value !== false) element.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child == null) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// The `count` days up to and including `today`'s (UTC), oldest first, as "YYYY-MM-DD".
export function lastDays(count, today = new Date()) {
  const end = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate());
  return Array.from({ length: count }, (_, i) =>
    new Date(end - (count - 1 - i) * DAY_MS).toISOString().slice(0, 10),
  );
}

// "2026-12-02" -> "Dec 2" (the same in every browser locale).
export function dayLabel(day) {
  const [, month, date] = day.split("-").map(Number);
  return `${MONTHS[month - 1]} ${date}`;
}

const count = (n) => n.toLocaleString("en");

// How a series' line and points are drawn (in the plot and in the legend alike).
const line = (s) => ({ stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dashed ? "5 4" : null });
const dot = (s) => (s.dashed ? { fill: "none", stroke: s.color, "stroke-width": 1.5 } : { fill: s.color });

// The y axis: a top at or above `max` in about four steps of 1, 2 or 5 times a power of ten
// (never below 1: the counts are whole).
function axis(max) {
  if (max <= 0) return { top: 1, step: 1 };
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = Math.max(1, [1, 2, 5, 10].map((f) => f * power).find((v) => v >= rough));
  return { top: Math.ceil(max / step) * step, step };
}

// A chart of one value per day for each series ({key, label, color, values, dashed}): "line"
// draws a line with a point per day, "bar" a bar per day (side by side when there are several
// series). Every point and bar carries data-series, data-day and data-value and a tooltip.
// Lines are drawn last series first, so the first lies on top; a dashed one (with hollow
// points) lets the line it covers show through where both have the same counts.
// The whole is one image to assistive technology: role="img", its aria-label and <title> say
// what it shows and `summary` says what it adds up to.
export function dailyChart({ title, summary, days, series, kind = "line", width = 880, height = 260 }) {
  const margin = { left: 46, right: 14, top: 34, bottom: 30 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const { top, step } = axis(Math.max(0, ...series.flatMap((s) => s.values)));
  const y = (value) => margin.top + plotHeight - (value / top) * plotHeight;
  const band = plotWidth / days.length;
  const x = (i) => margin.left + band * (i + 0.5);

  const root = svg(
    "svg",
    {
      class: `chart ${kind}`,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": summary ? `${title}. ${summary}` : title,
      "data-days": days.length,
    },
    svg("title", {}, title),
    summary ? svg("desc", {}, summary) : null,
  );

  const grid = svg("g", { class: "axis y" });
  for (let value = 0; value <= top; value += step) {
    grid.append(
      svg("line", {
        class: value ? "grid" : "base",
        x1: margin.left,
        x2: width - margin.right,
        y1: y(value),
        y2: y(value),
      }),
      svg(
        "text",
        { x: margin.left - 6, y: y(value), "text-anchor": "end", "dominant-baseline": "middle" },
        count(value),
      ),
    );
  }
  root.append(grid);

  // Day labels every week (every two beyond a month), counted back from the last day, so that
  // the newest day is always labelled.
  const every = days.length > 31 ? 14 : 7;
  const ticks = svg("g", { class: "axis x" });
  for (let i = days.length - 1; i >= 0; i -= every) {
    const at = x(i);
    ticks.append(
      svg("line", { class: "tick", x1: at, x2: at, y1: y(0), y2: y(0) + 4 }),
      svg("text", { x: at, y: height - 8, "text-anchor": "middle" }, dayLabel(days[i])),
    );
  }
  root.append(ticks);

  const plotted = svg("g", { class: "series" });
  series.forEach((s, index) => {
    const group = svg("g", { "data-series": s.key, class: "series-group" });
    const tip = (i) => svg("title", {}, `${dayLabel(days[i])}: ${count(s.values[i])} ${s.label.toLowerCase()}`);
    const mark = { "data-series": s.key };
    if (kind === "bar") {
      const barWidth = (band * 0.8) / series.length;
      s.values.forEach((value, i) => {
        const bar = {
          ...mark,
          "data-day": days[i],
          "data-value": value,
          fill: s.color,
          x: margin.left + band * i + band * 0.1 + index * barWidth,
          y: y(value),
          width: barWidth,
          height: y(0) - y(value),
        };
        group.append(svg("rect", bar, tip(i)));
      });
    } else {
      const points = s.values.map((value, i) => `${x(i).toFixed(1)},${y(value).toFixed(1)}`);
      group.append(svg("polyline", { points: points.join(" "), fill: "none", ...line(s) }));
      s.values.forEach((value, i) => {
        const point = {
          ...mark,
          "data-day": days[i],
          "data-value": value,
          ...dot(s),
          cx: x(i),
          cy: y(value),
          r: days.length > 31 ? 2 : 3,
        };
        group.append(svg("circle", point, tip(i)));
      });
    }
    plotted.prepend(group);
  });
  root.append(plotted);

  // The legend, across the top: a swatch and the label with the range's total.
  const legend = svg("g", { class: "legend" });
  let left = margin.left;
  for (const s of series) {
    const total = s.values.reduce((a, b) => a + b, 0);
    const text = `${s.label} (${count(total)})`;
    const swatch =
      kind === "bar"
        ? svg("rect", { x: left, y: 8, width: 12, height: 12, fill: s.color })
        : [
            svg("line", { x1: left, x2: left + 14, y1: 14, y2: 14, ...line(s) }),
            svg("circle", { cx: left + 7, cy: 14, r: 3, ...dot(s) }),
          ];
    const label = svg("text", { x: left + 19, y: 14, "dominant-baseline": "middle" }, text);
    legend.append(svg("g", { "data-legend": s.key }, swatch, label));
    left += 19 + text.length * 7 + 18; // about 7 units a character at the legend's size
  }
  root.append(legend);
  return root;
}

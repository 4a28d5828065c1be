// Charts of the metrics page (templates/review/metrics.html), drawn with Chart.js from
// the JSON the page embeds with json_script. Labels (segment names) are untrusted:
// Chart.js draws them as canvas text, never as HTML.
(function () {
  "use strict";

  const INK = "#1d2330";
  const BASE = "#98a2b3";
  const BAR = "#2e90fa";
  const GOOD = "#067647";
  const BAD = "#b42318";

  // Chart.js draws no error bars: this plugin draws each dataset's `intervals`
  // ([low, high] in the axis's units, or nulls) over its bars.
  const errorBars = {
    id: "errorBars",
    afterDatasetsDraw(chart) {
      const { ctx, scales } = chart;
      chart.data.datasets.forEach((dataset, i) => {
        if (!dataset.intervals) return;
        chart.getDatasetMeta(i).data.forEach((bar, j) => {
          const interval = dataset.intervals[j];
          if (!interval || interval[0] === null || interval[1] === null) return;
          const top = scales.y.getPixelForValue(interval[1]);
          const bottom = scales.y.getPixelForValue(interval[0]);
          ctx.save();
          ctx.strokeStyle = INK;
          ctx.lineWidth = 1.5;
          ctx.beginPath();
          ctx.moveTo(bar.x, top);
          ctx.lineTo(bar.x, bottom);
          ctx.moveTo(bar.x - 6, top);
          ctx.lineTo(bar.x + 6, top);
          ctx.moveTo(bar.x - 6, bottom);
          ctx.lineTo(bar.x + 6, bottom);
          ctx.stroke();
          ctx.restore();
        });
      });
    },
  };

  const percent = (x) => (x === null || x === undefined ? null : x * 100);
  const interval = (pair) => (pair ? pair.map(percent) : [null, null]);

  function bounds(values, intervals) {
    const all = values.concat(...intervals).filter((v) => v !== null && Number.isFinite(v));
    return { min: Math.min(0, ...all), max: Math.max(0, ...all) };
  }

  function draw(canvas, config) {
    const previous = window.Chart.getChart(canvas);
    if (previous) previous.destroy();
    return new window.Chart(canvas, config);
  }

  function tooltip(intervals, unit) {
    return {
      callbacks: {
        label(item) {
          if (item.raw === null) return "no data";
          const pair = intervals[item.dataIndex] || [null, null];
          const ci = pair[0] === null ? "" : ` [${pair[0].toFixed(1)}, ${pair[1].toFixed(1)}]`;
          return `${item.raw.toFixed(2)}${unit}${ci}`;
        },
      },
    };
  }

  function drawVersions(canvas, data) {
    const labels = ["Base copy"].concat(data.versions.map((v) => v.label));
    const values = [percent(data.control.ctr)].concat(data.versions.map((v) => percent(v.ctr)));
    const intervals = [interval(data.control.interval)].concat(
      data.versions.map((v) => interval(v.interval)),
    );
    const range = bounds(values, intervals);
    draw(canvas, {
      type: "bar",
      data: {
        labels,
        datasets: [
          {
            label: "Click-through rate (%)",
            data: values,
            intervals,
            backgroundColor: labels.map((_, i) => (i === 0 ? BASE : BAR)),
          },
        ],
      },
      options: {
        animation: false,
        plugins: { legend: { display: false }, tooltip: tooltip(intervals, "%") },
        scales: { y: { suggestedMin: range.min, suggestedMax: range.max, title: { display: true, text: "CTR %" } } },
      },
      plugins: [errorBars],
    });
  }

  function drawSegments(canvas, data) {
    const labels = data.segments.map((s) => s.label);
    const values = data.segments.map((s) => percent(s.uplift));
    const intervals = data.segments.map((s) => interval(s.interval));
    const range = bounds(values, intervals);
    const colour = (s) => {
      if (!s.enough) return "rgba(152, 162, 179, 0.45)";
      if (s.interval[1] !== null && s.interval[1] < 0) return BAD;
      if (s.interval[0] !== null && s.interval[0] > 0) return GOOD;
      return BAR;
    };
    draw(canvas, {
      type: "bar",
      data: {
        labels,
        datasets: [
          {
            label: "CTR uplift against the base copy (%)",
            data: values,
            intervals,
            backgroundColor: data.segments.map(colour),
          },
        ],
      },
      options: {
        animation: false,
        plugins: { legend: { display: false }, tooltip: tooltip(intervals, "%") },
        scales: { y: { suggestedMin: range.min, suggestedMax: range.max, title: { display: true, text: "uplift %" } } },
      },
      plugins: [errorBars],
    });
  }

  function drawAll() {
    const source = document.getElementById("metrics-chart-data");
    if (!source || !window.Chart) return;
    const data = JSON.parse(source.textContent);
    if (!data) return;
    const versions = document.getElementById("chart-versions");
    const segments = document.getElementById("chart-segments");
    if (versions) drawVersions(versions, data);
    if (segments) drawSegments(segments, data);
  }

  document.addEventListener("DOMContentLoaded", drawAll);
  // The prompt selector swaps #metrics over HTMX: draw the new charts.
  document.addEventListener("htmx:afterSettle", drawAll);
})();

// Draws each element's chart from its data-chart attribute (JSON the server escaped into it), with
// uPlot. No inline script: the page's Content-Security-Policy allows scripts from the console only.
(function () {
  "use strict";
  var PALETTE = ["#2f6fde", "#e8843c", "#3aa675", "#9b59b6", "#c0392b", "#16a2b8", "#d4a017", "#7f8c8d", "#555555"];
  var NEGATIVE = "#c62828";

  function draw(element) {
    var chart = JSON.parse(element.getAttribute("data-chart"));
    if (chart.x.length === 0) {
      element.textContent = "No data in this window.";
      element.classList.add("empty");
      return;
    }
    var width = Math.max(300, element.clientWidth);
    var bars = chart.kind !== "line" ? uPlot.paths.bars({ size: [0.7, 48] }) : undefined;
    var raw = chart.series.map(function (series) { return series.values; });
    var drawn = raw;
    var order = chart.series.map(function (_, index) { return index; });
    if (chart.kind === "stacked") {
      // uPlot does not stack: each layer is drawn at its running total, the highest first, so
      // the lower layers paint over the part of it that is theirs.
      var running = chart.x.map(function () { return 0; });
      var totals = raw.map(function (values) {
        running = running.map(function (sum, index) { return sum + values[index]; });
        return running.slice();
      });
      order = order.reverse();
      drawn = order.map(function (index) { return totals[index]; });
    }
    var series = [{}].concat(order.map(function (index, position) {
      var color = chart.negative ? NEGATIVE : PALETTE[index % PALETTE.length];
      return {
        label: chart.series[index].label,
        stroke: color,
        fill: chart.kind === "line" ? (chart.negative ? "rgba(198,40,40,0.12)" : "rgba(47,111,222,0.10)") : color,
        width: chart.kind === "line" ? 1.5 : 0,
        paths: bars,
        points: { show: false },
        // The legend shows each layer's own value, not its running total.
        value: function (_u, _v, _si, at) { return at == null ? "—" : raw[index][at].toLocaleString("en-US"); },
      };
    }));
    var options = {
      width: width,
      height: 220,
      series: series,
      // Bars stand on zero; a line (a balance) keeps its own range.
      scales: {
        // Entries posted by one batch share one instant. uPlot widens such a range by 86,400 / ms,
        // a day in milliseconds but 1,000 days in the seconds used here; an hour either side instead.
        x: {
          time: true,
          range: function (u, min, max) {
            var xs = u.data[0];
            return xs.length > 0 && xs[0] === xs[xs.length - 1] ? [xs[0] - 3600, xs[0] + 3600] : [min, max];
          },
        },
        y: chart.kind === "line" ? {} : { range: function (_u, _min, max) { return [0, max > 0 ? max * 1.05 : 1]; } },
      },
      axes: [{}, { size: 90, values: function (_u, ticks) { return ticks.map(function (tick) { return tick.toLocaleString("en-US"); }); } }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
    element.textContent = "";
    new uPlot(options, [chart.x].concat(drawn), element);
    element.setAttribute("data-drawn", "true");
  }

  function drawAll() {
    var charts = document.querySelectorAll(".chart[data-chart]");
    for (var index = 0; index < charts.length; index += 1) {
      try {
        draw(charts[index]);
      } catch (error) {
        charts[index].textContent = "The chart could not be drawn: " + error.message;
      }
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll);
  else drawAll();
})();

/* The operator dashboard's browser side: charts drawn with ECharts from data the page
   embeds (json_script), and the live overview fed by the ws/dashboard/ socket. */
(function () {
  "use strict";

  var PALETTE = ["#3b5bdb", "#0ca678", "#f08c00", "#e8590c", "#7048e8", "#1098ad", "#d6336c", "#74b816"];
  var charts = [];

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function draw(el, option) {
    var chart = echarts.init(el, null, { renderer: "canvas" });
    // Set once the first rendering (animation included) is complete: screenshots wait for it.
    chart.on("finished", function () { el.dataset.rendered = "true"; });
    chart.setOption(Object.assign({ color: PALETTE, animationDuration: 300 }, option));
    el.dataset.drawn = "true";
    charts.push(chart);
    return chart;
  }

  // Tooltips are HTML: text that visitors chose (event names, page titles and paths) is escaped,
  // or an event named "<img onerror=...>" would run in the operator's session.
  var ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(value) {
    return String(value).replace(/[&<>"']/g, function (c) { return ENTITIES[c]; });
  }

  function fmtTime(iso) {
    var d = new Date(iso);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  var grid = { left: 48, right: 20, top: 30, bottom: 30, containLabel: true };

  var renderers = {
    timeline: function (el, rows) {
      var types = Array.from(new Set(rows.map(function (r) { return r.type; })));
      return draw(el, {
        grid: grid,
        tooltip: { formatter: function (p) { return esc(p.data[2]) + "<br>" + esc(p.data[0]); } },
        xAxis: { type: "time" },
        yAxis: { type: "category", data: types },
        series: [{ type: "scatter", symbolSize: 10, data: rows.map(function (r) { return [r.t, r.type, r.label]; }) }],
      });
    },
    consent: function (el, rows) {
      return draw(el, {
        grid: grid,
        tooltip: { valueFormatter: function (v) { return v + "%"; } },
        xAxis: { type: "value", max: 100, axisLabel: { formatter: "{value}%" } },
        yAxis: { type: "category", data: rows.map(function (r) { return r.purpose; }) },
        series: [{ type: "bar", data: rows.map(function (r) { return Math.round(r.rate * 1000) / 10; }), label: { show: true, position: "right", formatter: "{c}%" } }],
      });
    },
    trend: function (el, data) {
      var current = data.current || [];
      var previous = data.previous || [];
      return draw(el, {
        grid: grid,
        legend: { top: 0 },
        tooltip: { trigger: "axis" },
        xAxis: { type: "category", data: current.map(function (p) { return p.label; }) },
        yAxis: { type: "value" },
        series: [
          { name: data.name || "This period", type: "line", smooth: true, areaStyle: { opacity: 0.08 }, data: current.map(function (p) { return p.value; }) },
          { name: "Previous period", type: "line", smooth: true, lineStyle: { type: "dashed" }, data: previous.map(function (p) { return p.value; }) },
        ],
      });
    },
    pie: function (el, rows) {
      return draw(el, {
        tooltip: { trigger: "item" },
        legend: { type: "scroll", bottom: 0 },
        series: [{ type: "pie", radius: ["40%", "68%"], center: ["50%", "45%"], data: rows.map(function (r) { return { name: r.label, value: r.value }; }) }],
      });
    },
    bars: function (el, rows) {
      return draw(el, {
        grid: grid,
        tooltip: { trigger: "axis" },
        xAxis: { type: "value" },
        yAxis: { type: "category", inverse: true, data: rows.map(function (r) { return r.label; }) },
        series: [{ type: "bar", data: rows.map(function (r) { return r.value; }) }],
      });
    },
    funnel: function (el, steps) {
      return draw(el, {
        grid: grid,
        tooltip: { trigger: "axis" },
        xAxis: { type: "category", data: steps.map(function (s) { return s.label; }) },
        yAxis: { type: "value" },
        series: [
          { name: "Reached", type: "bar", stack: "f", data: steps.map(function (s) { return s.count; }), label: { show: true, position: "top" } },
          { name: "Dropped", type: "bar", stack: "f", itemStyle: { color: "#ffe3e3" }, data: steps.map(function (s) { return s.dropped || 0; }) },
        ],
      });
    },
    sankey: function (el, graph) {
      // Node names are "level:page" (a page can appear at several steps); labels show the page.
      var labels = {};
      graph.nodes.forEach(function (n) { labels[n.name] = n.title; });
      return draw(el, {
        tooltip: {
          trigger: "item",
          formatter: function (p) {
            if (p.dataType === "edge") return esc(labels[p.data.source]) + " → " + esc(labels[p.data.target]) + ": " + esc(p.data.value);
            return esc(labels[p.name]) + ": " + esc(p.value);
          },
        },
        series: [{
          type: "sankey", left: 10, right: 160, top: 10, bottom: 10, nodeGap: 10, nodeAlign: "left",
          emphasis: { focus: "adjacency" },
          lineStyle: { color: "gradient", opacity: 0.35 },
          label: { formatter: function (p) { return labels[p.name]; } },
          data: graph.nodes, links: graph.links,
        }],
      });
    },
    heatmap: function (el, data) {
      // One row per cohort: grow the chart with the cohorts so each stays readable.
      el.style.height = Math.max(280, 80 + 26 * data.rows.length) + "px";
      var values = [];
      data.rows.forEach(function (row, y) {
        row.values.forEach(function (v, x) { if (v !== null) values.push([x, y, v]); });
      });
      return draw(el, {
        grid: { left: 100, right: 20, top: 20, bottom: 60 },
        tooltip: { formatter: function (p) { return esc(data.rows[p.data[1]].label) + ", " + esc(data.columns[p.data[0]]) + ": " + esc(p.data[2]) + "%"; } },
        xAxis: { type: "category", data: data.columns, splitArea: { show: true } },
        yAxis: { type: "category", data: data.rows.map(function (r) { return r.label; }), inverse: true, splitArea: { show: true } },
        visualMap: { min: 0, max: 100, calculable: true, orient: "horizontal", left: "center", bottom: 0, inRange: { color: ["#f1f3ff", "#3b5bdb"] } },
        series: [{ type: "heatmap", data: values, label: { show: true, formatter: function (p) { return p.data[2]; } } }],
      });
    },
  };

  function drawAll() {
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var data = readJSON(el.dataset.source);
      var render = renderers[el.dataset.chart];
      if (render && data !== null) render(el, data);
    });
  }

  /* ---- live overview -------------------------------------------------------- */

  function setLive(name, value) {
    document.querySelectorAll('[data-live="' + name + '"]').forEach(function (el) {
      var text = String(value);
      if (el.textContent !== text) {
        el.textContent = text;
        el.classList.add("bump");
        setTimeout(function () { el.classList.remove("bump"); }, 700);
      }
    });
  }

  function live() {
    var panel = document.getElementById("live");
    if (!panel) return;
    var status = document.getElementById("live-status");
    var chartEl = document.getElementById("live-chart");
    var feed = document.getElementById("live-feed");
    var chart = draw(chartEl, {
      grid: grid,
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: [] },
      yAxis: { type: "value", minInterval: 1 },
      series: [
        { name: "Events", type: "bar", data: [] },
        { name: "Page views", type: "line", smooth: true, data: [] },
      ],
    });
    var seen = {};
    var retry = 500;

    function render(snap) {
      var minutes = snap.windowMinutes || 5;
      setLive("activeSessions", snap.activeSessions);
      setLive("events", snap.events);
      setLive("eventsPerMinute", (snap.events / minutes).toFixed(1));
      setLive("pageViews", snap.pageViews);
      setLive("conversions", snap.conversions);
      chart.setOption({
        xAxis: { data: snap.perMinute.map(function (m) { return fmtTime(m.minute); }) },
        series: [
          { data: snap.perMinute.map(function (m) { return m.events; }) },
          { data: snap.perMinute.map(function (m) { return m.pageViews; }) },
        ],
      });
      var fresh = (snap.recentEvents || []).filter(function (e) { return !seen[e.id]; });
      if (fresh.length && feed.querySelector(".muted")) feed.innerHTML = "";
      fresh.reverse().forEach(function (e) {
        seen[e.id] = true;
        var li = document.createElement("li");
        li.className = "fresh";
        var time = document.createElement("time");
        time.textContent = new Date(e.timestamp).toLocaleTimeString();
        var pill = document.createElement("span");
        pill.className = "pill";
        pill.textContent = e.type;
        var text = document.createElement("span");
        text.textContent = (e.name || e.path || "") + " · " + e.neuron;
        li.append(time, pill, text);
        feed.prepend(li);
      });
      while (feed.children.length > 50) feed.lastElementChild.remove();
      status.dataset.state = snap.available === false ? "down" : "live";
      status.textContent = snap.available === false ? "counters unavailable" : "live";
    }

    function connect() {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      var socket = new WebSocket(scheme + location.host + "/ws/dashboard/");
      socket.onopen = function () { retry = 500; };
      socket.onmessage = function (message) {
        var body = JSON.parse(message.data);
        if (body.type === "snapshot") render(body.data);
      };
      socket.onclose = function (event) {
        status.dataset.state = "down";
        if (event.code === 4403) { status.textContent = "not allowed"; return; }
        status.textContent = "reconnecting…";
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 10000);
      };
    }
    connect();
  }

  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
  document.addEventListener("DOMContentLoaded", function () { drawAll(); live(); });
})();

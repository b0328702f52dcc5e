// The explorer page of palindrome-lens: pick a string, see its logit difference, its direct logit
// attribution, what patching each node from its counterpart does, and every head's attention.
// Offline: the data is the page's own JSON (#explorer-data); plotly.js and CircuitsVis come from assets/.
// The page loads this script in <head>, so it waits for the document before it looks for its elements.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var data = JSON.parse(document.getElementById("explorer-data").textContent);
  var pick = document.getElementById("explorer-pick");
  var view = function (name) { return document.querySelector('[data-view="' + name + '"]'); };
  var config = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendChartToCloud"]};
  var rendered = 0;

  function fmt(x) { return x === null ? "n/a" : (x > 0 ? "+" : "") + x.toFixed(2); }

  function escape(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }

  function tokens(s) {
    var out = ["[BOS]"].concat(s.text.split(""));
    if (s.n > s.text.length + 1) { out.push("[EOS]"); }
    return out;
  }

  function broken(text) {  // character indices whose mirrored pair does not match
    var out = {};
    for (var i = 0; i < text.length; i++) { if (text[i] !== text[text.length - 1 - i]) { out[i] = true; } }
    return out;
  }

  function marked(text) {
    var bad = broken(text);
    return text.split("").map(function (c, i) {
      return bad[i] ? '<span class="broken">' + escape(c) + "</span>" : escape(c);
    }).join("");
  }

  function summary(s) {
    var says = s.diff > 0 ? "palindrome" : "not a palindrome";
    var truth = s.label ? "a palindrome" : "not a palindrome";
    return '<div class="text">' + marked(s.text) + "</div>" +
      "<div>" + escape(s.source) + ", kind " + escape(s.kind) + ". It is " + truth + "; the model says " + says +
      " (logit difference " + fmt(s.diff) + " at " + escape(data.readout) + "): " +
      (s.correct ? "right." : "<strong>wrong</strong>.") + " Broken pairs are highlighted.</div>" +
      "<div>Counterpart (what patching takes each node from): <span class=\"text\">" + marked(s.cp) + "</span>, " +
      "logit difference " + fmt(s.cdiff) + ".</div>";
  }

  function bars(div, x, y, colors, title, xTitle, yTitle, hover) {
    Plotly.react(div, [{type: "bar", x: x, y: y, marker: {color: colors}, hovertext: hover, hoverinfo: "text"}], {
      title: {text: title}, height: 420, margin: {t: 70, b: 120},
      xaxis: {title: {text: xTitle}, type: "category", tickangle: -40},
      yaxis: {title: {text: yTitle}, zeroline: true, zerolinecolor: "#52606d"}
    }, config);
  }

  function drawDla(s) {
    var colors = s.dla.map(function (v) { return v > 0 ? "#c92a2a" : "#1c7ed6"; });
    var hover = data.components.map(function (c, i) { return c + ": " + fmt(s.dla[i]); });
    bars(view("dla"), data.components, s.dla, colors,
      "Direct logit attribution of " + s.text + " (sums to " + fmt(s.diff) + ")",
      "component", "contribution to the logit difference", hover);
  }

  function drawPatching(s) {
    var inCircuit = {};
    data.circuit.forEach(function (n) { inCircuit[n] = true; });
    var colors = data.nodes.map(function (n) { return inCircuit[n] ? "#3e4c59" : "#adb5bd"; });
    var hover = data.nodes.map(function (n, i) {
      return n + (inCircuit[n] ? " (circuit)" : "") + ": recovery " + (s.rec[i] === null ? "n/a" : s.rec[i].toFixed(3)) +
        ", logit difference " + fmt(s.pld[i]) + " (own " + fmt(s.diff) + ", counterpart " + fmt(s.cdiff) + ")";
    });
    bars(view("patching"), data.nodes, s.rec, colors,
      "Patching one node of " + s.text + " from " + s.cp, "node (dark: in the circuit)",
      "recovery: share of the way to the counterpart's answer", hover);
  }

  function drawAttention(s) {
    var holder = view("attention");
    var bytes = atob(s.attn), n = s.n, heads = [];
    for (var h = 0; h < data.heads.length; h++) {
      var rows = [];
      for (var d = 0; d < n; d++) {
        var row = [];
        for (var k = 0; k < n; k++) { row.push(bytes.charCodeAt((h * n + d) * n + k) / 255); }
        rows.push(row);
      }
      heads.push(rows);
    }
    // CircuitsVis makes a React root per element: draw each string into a fresh child.
    var child = document.createElement("div");
    child.id = holder.id + "-" + (rendered++);
    holder.replaceChildren(child);
    CircuitsVis.render(child.id, CircuitsVis.AttentionHeads,
      {attention: heads, tokens: tokens(s), attentionHeadNames: data.heads, maskUpperTri: false});
  }

  function show(i) {
    var s = data.strings[i];
    view("summary").innerHTML = summary(s);
    drawDla(s);
    drawPatching(s);
    drawAttention(s);
  }

  pick.addEventListener("change", function () { show(Number(pick.value)); });
  show(Number(pick.value));
});

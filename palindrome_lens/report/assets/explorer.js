// The explorer page of palindrome-lens: filter the strings, pick one, see its logit difference, its direct
// logit attribution, what patching each node from its counterpart does, and every head's attention.
// Offline: the data is data/explorer-data.js (zlib-compressed JSON, one list per field, in base64), loaded by a
// plain <script> (fetch does not work from file://); plotly.js and CircuitsVis come from assets/.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var pick = document.getElementById("explorer-pick");
  var view = function (name) { return document.querySelector('[data-view="' + name + '"]'); };
  var config = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendChartToCloud"]};
  var rendered = 0, data = null, attention = null, offsets = [], shownLimit = 400;

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
    // A string the model answers like its counterpart (a failure) leaves no gap to recover: draw the patched
    // logit difference itself, not a share of a near-zero gap.
    var sameSide = (s.diff > 0) === (s.cdiff > 0);
    bars(view("patching"), data.nodes, sameSide ? s.pld : s.rec, colors,
      "Patching one node of " + s.text + " from " + s.cp, "node (dark: in the circuit)",
      sameSide ? "logit difference after patching" : "recovery: share of the way to the counterpart's answer", hover);
  }

  function drawAttention(s) {
    var holder = view("attention"), n = s.n, heads = [];
    for (var h = 0; h < data.heads.length; h++) {
      var rows = [];
      for (var d = 0; d < n; d++) {
        var row = [];
        for (var k = 0; k < n; k++) { row.push(attention[s.offset + (h * n + d) * n + k] / data.levels); }
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

  function string(i) {
    return {text: data.text[i], cp: data.cp[i], source: data.sources[data.source[i]], kind: data.kinds[data.kind[i]],
            label: data.label[i] === 1, correct: data.correct[i] === 1, diff: data.diff[i], cdiff: data.cdiff[i],
            dla: data.dla[i], rec: data.rec[i], pld: data.pld[i], n: data.n[i], offset: offsets[i]};
  }

  function margin(i) { return data.label[i] === 1 ? data.diff[i] : -data.diff[i]; }

  function passes(i) {
    var group = document.getElementById("explorer-group").value;
    var pair = document.getElementById("explorer-pair").value;
    var lo = document.getElementById("explorer-min").value, hi = document.getElementById("explorer-max").value;
    if (group && group[0] === "s" && data.source[i] !== Number(group.slice(1))) { return false; }
    if (group && group[0] === "k" && data.kind[i] !== Number(group.slice(1))) { return false; }
    if (pair !== "" && !broken(data.text[i])[Number(pair)]) { return false; }
    if (lo !== "" && margin(i) < Number(lo)) { return false; }
    if (hi !== "" && margin(i) > Number(hi)) { return false; }
    return true;
  }

  function fill(keep) {  // the strings that pass the filters, in the data's order (wrong answers first)
    var chosen = [];
    for (var i = 0; i < data.text.length; i++) { if (passes(i)) { chosen.push(i); } }
    var options = chosen.slice(0, shownLimit).map(function (i) {
      return '<option value="' + i + '">' + escape(data.text[i] + " · " + data.sources[data.source[i]] + " · " +
        data.kinds[data.kind[i]] + " · margin " + fmt(margin(i)) + (data.correct[i] ? "" : " · WRONG")) + "</option>";
    });
    pick.innerHTML = options.join("");
    document.getElementById("explorer-count").textContent = chosen.length + " of " + data.text.length +
      " strings" + (chosen.length > shownLimit ? " (the first " + shownLimit + " listed)" : "");
    if (keep !== undefined && chosen.indexOf(keep) >= 0 && chosen.indexOf(keep) < shownLimit) {
      pick.value = String(keep);
    }
    if (chosen.length) { show(Number(pick.value)); }
  }

  function show(i) {
    var s = string(i);
    view("summary").innerHTML = summary(s);
    drawDla(s);
    drawPatching(s);
    drawAttention(s);
  }

  function start(payload, bytes) {
    data = payload;
    attention = bytes;
    for (var i = 0, at = 0; i < data.n.length; i++) { offsets.push(at); at += data.heads.length * data.n[i] * data.n[i]; }
    pick.addEventListener("change", function () { show(Number(pick.value)); });
    ["explorer-group", "explorer-pair", "explorer-min", "explorer-max"].forEach(function (id) {
      document.getElementById(id).addEventListener("change", function () { fill(Number(pick.value)); });
    });
    fill(data.start);
  }

  function inflate(base64) {  // zlib-compressed bytes in base64 -> an ArrayBuffer, with the browser's own inflater
    var bytes = Uint8Array.from(atob(base64), function (c) { return c.charCodeAt(0); });
    return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"))).arrayBuffer();
  }

  Promise.all([inflate(window.EXPLORER_DATA_Z), inflate(window.EXPLORER_ATTENTION_Z)]).then(function (parts) {
    start(JSON.parse(new TextDecoder().decode(parts[0])), new Uint8Array(parts[1]));
  });
});

/* The lineage graph of templates/_graph.html: draws #graph from its data-src (the answer of
 * /ui/lineage/graph.json) with cytoscape and the dagre layout, left to right.
 *
 * No inline script, no eval (the UI's Content-Security-Policy forbids both). Colour is never
 * the only signal: each kind has a shape too, a label names any state but active, and erased,
 * retired and unlearned nodes have borders of their own. Clicking a node (or Enter in the
 * search) selects it: its details, the shortest path from the node asked about, and a button
 * that fetches one more step from it and merges what is new. The table under the drawing lists
 * the same nodes (rendered on the server; rows added here when the graph grows).
 * After each drawing #graph has data-ready="1" and data-nodes="N".
 */
(function () {
  "use strict";

  var box = document.getElementById("graph");
  if (!box || typeof window.cytoscape !== "function") {
    return;
  }
  var cytoscape = window.cytoscape;
  /* above this many nodes dagre takes too long (about 0.5 s at 500 nodes, measured by
   * benchmarks/ui.py): columns by depth are laid out instead */
  var BIG = 400;
  var PLAIN = { active: true, completed: true };
  var COLOURS = {
    subject: "#fdd663", source: "#d7ccc8", asset: "#e0e0e0", dataset_version: "#aecbfa",
    model: "#f6aea9", index: "#a8dab5", "export": "#d7aefb", transfer: "#a1e4f2", run: "#f1f3f4"
  };
  var $ = function (id) { return document.getElementById(id); };
  var search = $("graph-search");
  var matches = $("graph-matches");
  var count = $("graph-count");
  var expandButton = $("graph-expand");
  var openLink = $("graph-open");
  var status = $("graph-status");
  var table = $("graph-table");
  var pages = {};
  var expand = {};
  var rootId = null;
  var selected = null;
  var cy = null;

  function shown(n) {
    var state = n.state || "";
    return state && !PLAIN[state] ? n.label + " \u00b7 " + state : n.label;
  }

  function nodeData(n) {
    return {
      id: n.id, label: n.label, shown: shown(n), kind: n.kind, state: n.state || "",
      depth: n.depth, colour: COLOURS[n.kind] || "#cfd8dc"
    };
  }

  function edgeId(e) { return e.from + "\u2192" + e.to; }

  function stateClass(state) {
    if (state === "erased" || state === "retired" || state === "unlearned") { return state; }
    return state && !PLAIN[state] ? "other-state" : "";
  }

  function addRow(n) {
    if (!table) { return; }
    var body = table.tBodies[0];
    var row = body.insertRow(-1);
    row.setAttribute("data-id", n.id);
    var cell = row.insertCell(-1);
    if (pages[n.id]) {
      var a = document.createElement("a");
      a.href = pages[n.id];
      a.textContent = n.label;
      cell.appendChild(a);
    } else {
      cell.textContent = n.label;
    }
    row.insertCell(-1).textContent = n.kind;
    row.insertCell(-1).textContent = n.state || "not in the lineage answer";
    row.insertCell(-1).textContent = String(n.depth);
  }

  function listedRows() {
    var seen = {};
    if (table) {
      var rows = table.tBodies[0].rows;
      for (var i = 0; i < rows.length; i++) { seen[rows[i].getAttribute("data-id")] = true; }
    }
    return seen;
  }

  /* the elements of an answer that the graph lacks; depths counted from the first root */
  function merge(answer, baseDepth) {
    var elements = [];
    var rows = listedRows();
    var known = function (id) { return cy !== null && cy.getElementById(id).length > 0; };
    Object.assign(pages, answer.pages || {});
    Object.assign(expand, answer.expand || {});
    var nodes = answer.root_listed ? answer.nodes : [answer.root].concat(answer.nodes);
    var have = {};
    nodes.forEach(function (n) {
      if (known(n.id) || have[n.id]) { return; }
      have[n.id] = true;
      var node = Object.assign({}, n, { depth: baseDepth + n.depth });
      var classes = [n.kind === "run" ? "run" : n.kind, stateClass(n.state || "")];
      if (n.id === rootId) { classes.push("root"); }
      elements.push({ group: "nodes", data: nodeData(node), classes: classes.join(" ") });
      if (!rows[n.id]) { addRow(node); }
    });
    answer.edges.forEach(function (e) {
      var id = edgeId(e);
      if (known(id) || have[id]) { return; }
      if (!(known(e.from) || have[e.from]) || !(known(e.to) || have[e.to])) { return; }
      have[id] = true;
      elements.push({ group: "edges", data: { id: id, source: e.from, target: e.to } });
    });
    return elements;
  }

  /* the cheap layout of a big graph, in one pass: a block of columns per depth, left to right
   * (one column of thousands of nodes, as breadthfirst draws a fan-out, is a line) */
  function columns() {
    var byDepth = {};
    cy.nodes().forEach(function (n) {
      var d = n.data("depth") || 0;
      (byDepth[d] = byDepth[d] || []).push(n);
    });
    var positions = {};
    var order = {}; /* a placed node's rank in its column */
    var x = 0;
    /* a node goes next to the nodes it is linked to in the columns before it (the mean of
     * their ranks, one pass), so a chain stays on one row instead of crossing the others */
    function near(n) {
      var ranks = n.neighborhood("node").map(function (m) { return order[m.id()]; })
        .filter(function (r) { return r !== undefined; });
      return ranks.length ? ranks.reduce(function (a, b) { return a + b; }, 0) / ranks.length : -1;
    }
    Object.keys(byDepth).map(Number).sort(function (a, b) { return a - b; }).forEach(function (d) {
      var list = byDepth[d].map(function (n) { return { n: n, key: near(n), label: n.data("label") }; })
        .sort(function (a, b) { return a.key - b.key || (a.label < b.label ? -1 : a.label > b.label ? 1 : 0); })
        .map(function (e) { return e.n; });
      var rows = Math.min(list.length, Math.max(40, Math.ceil(Math.sqrt(list.length * 4))));
      list.forEach(function (n, i) {
        order[n.id()] = i;
        positions[n.id()] = { x: x + Math.floor(i / rows) * 190, y: (i % rows - rows / 2) * 34 };
      });
      x += Math.ceil(list.length / rows) * 190 + 140;
    });
    return positions;
  }

  function layoutOptions() {
    if (cy.nodes().length > BIG) {
      var positions = columns();
      return { name: "preset", positions: function (n) { return positions[n.id()]; }, animate: false };
    }
    return { name: "dagre", rankDir: "LR", nodeSep: 18, rankSep: 60, animate: false };
  }

  function drawn() {
    var n = cy.nodes().length;
    var m = cy.edges().length;
    count.textContent = n + " nodes, " + m + " edges";
    box.setAttribute("data-nodes", String(n));
    box.setAttribute("data-ready", "1");
  }

  function relayout() {
    box.removeAttribute("data-ready");
    var layout = cy.layout(layoutOptions());
    layout.one("layoutstop", function () {
      cy.fit(undefined, 20);
      drawn();
    });
    layout.run();
  }

  function showDetails(node) {
    $("graph-none").hidden = true;
    $("graph-detail").hidden = false;
    $("graph-detail-label").textContent = node.data("label");
    $("graph-detail-kind").textContent = node.data("kind");
    $("graph-detail-state").textContent = node.data("state") || "not in the lineage answer";
    $("graph-detail-depth").textContent = String(node.data("depth"));
    expandButton.disabled = !expand[node.id()];
    if (pages[node.id()]) {
      openLink.href = pages[node.id()];
      openLink.hidden = false;
    } else {
      openLink.hidden = true;
    }
    status.textContent = "";
  }

  function highlightPath(node) {
    cy.elements().removeClass("on-path");
    var root = cy.getElementById(rootId);
    if (!root.length) { return; }
    var found = cy.elements().aStar({ root: root, goal: node, directed: false });
    if (found.found) { found.path.addClass("on-path"); }
  }

  function select(node) {
    selected = node;
    cy.nodes().removeClass("chosen");
    node.addClass("chosen");
    showDetails(node);
    highlightPath(node);
  }

  function doSearch() {
    var text = search.value.trim().toLowerCase();
    cy.elements().removeClass("match dimmed");
    if (!text) {
      matches.textContent = "";
      return null;
    }
    var hits = cy.nodes().filter(function (n) {
      return n.data("label").toLowerCase().indexOf(text) >= 0 || n.id().toLowerCase().indexOf(text) >= 0;
    });
    hits.addClass("match");
    cy.elements().difference(hits).addClass("dimmed");
    matches.textContent = hits.length === 1 ? "1 node matches" : hits.length + " nodes match";
    return hits;
  }

  function load(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) { throw new Error("the server answered " + r.status); }
      return r.json();
    });
  }

  function grow() {
    if (!selected || !expand[selected.id()]) { return; }
    var node = selected;
    expandButton.disabled = true;
    status.textContent = "Loading\u2026";
    load(expand[node.id()]).then(function (answer) {
      var added = merge(answer, node.data("depth"));
      var newNodes = added.filter(function (e) { return e.group === "nodes"; }).length;
      cy.add(added);
      status.textContent = newNodes === 1 ? "1 new node" : newNodes + " new nodes";
      relayout();
      expandButton.disabled = false;
      highlightPath(node);
      if (search.value.trim()) { doSearch(); }
    }).catch(function (err) {
      status.textContent = "Could not expand: " + err.message;
      expandButton.disabled = false;
    });
  }

  var style = [
    { selector: "node", style: {
      "label": "data(shown)", "background-color": "data(colour)", "shape": "round-rectangle",
      "width": function (n) { return Math.max(36, n.data("shown").length * 6.2 + 14); }, "height": 26, "padding": "6px", "font-size": 11, "text-valign": "center",
      "text-halign": "center", "border-width": 1, "border-color": "#5f6368", "color": "#202124",
      "min-zoomed-font-size": 7
    } },
    { selector: "node.run", style: { "shape": "ellipse" } },
    { selector: "node.subject, node.source, node.asset", style: {
      "shape": "diamond", "width": 40, "height": 40, "text-valign": "bottom", "text-margin-y": 4
    } },
    { selector: "node.erased", style: { "border-style": "dashed", "border-width": 3, "border-color": "#c5221f", "background-opacity": 0.45 } },
    { selector: "node.retired", style: { "border-style": "dotted", "border-width": 3, "border-color": "#5f6368" } },
    { selector: "node.unlearned", style: { "border-style": "double", "border-width": 5, "border-color": "#b06000" } },
    { selector: "node.other-state", style: { "border-style": "dashed", "border-width": 2 } },
    { selector: "node.root", style: { "border-width": 5, "border-color": "#1a73e8", "font-weight": "bold", "font-size": 13 } },
    { selector: "edge", style: {
      "width": 1.5, "line-color": "#9aa0a6", "target-arrow-color": "#9aa0a6",
      "target-arrow-shape": "triangle", "curve-style": "bezier"
    } },
    { selector: "edge.on-path", style: { "line-color": "#1a73e8", "target-arrow-color": "#1a73e8", "width": 4 } },
    { selector: "node.on-path", style: { "border-color": "#1a73e8", "border-width": 4 } },
    { selector: "node.chosen", style: { "overlay-color": "#1a73e8", "overlay-opacity": 0.25, "overlay-padding": 4 } },
    { selector: ".dimmed", style: { "opacity": 0.2 } },
    { selector: "node.match", style: { "underlay-color": "#f9ab00", "underlay-opacity": 0.6, "underlay-padding": 6 } }
  ];

  load(box.getAttribute("data-src")).then(function (answer) {
    rootId = answer.root.id;
    var big = answer.nodes.length > BIG;
    cy = cytoscape({
      container: box, style: style, minZoom: 0.02, maxZoom: 4,
      textureOnViewport: big, hideEdgesOnViewport: big, pixelRatio: big ? 1 : "auto"
    });
    /* a deliberate test hook: the browser tests read the graph through it */
    window.disgorgeGraph = cy;
    cy.add(merge(answer, 0));
    cy.on("tap", "node", function (event) { select(event.target); });
    relayout();
  }).catch(function (err) {
    count.textContent = "The graph could not be drawn (" + err.message + "); the table lists its nodes.";
    box.setAttribute("data-ready", "error");
  });

  expandButton.addEventListener("click", grow);
  var typing = null;
  search.addEventListener("input", function () {
    clearTimeout(typing);  /* once typing pauses: a search restyles every node */
    typing = setTimeout(function () { if (cy) { doSearch(); } }, 150);
  });
  search.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !cy) { return; }
    event.preventDefault();
    clearTimeout(typing);
    var hits = doSearch();
    if (hits && hits.length) { select(hits[0]); }
  });
}());

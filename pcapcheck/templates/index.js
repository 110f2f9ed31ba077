(function () {
  "use strict";
  // Sorting and filtering for the conversations table. The table is already sorted worst first, so
  // without scripts it reads the same; this only adds clicks. Row text is read with textContent only.
  var table = document.getElementById("convs");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var controls = document.getElementById("controls");
  var q = document.getElementById("q");
  var sev = document.getElementById("sev");
  var paged = document.getElementById("paged");
  var shown = document.getElementById("shown");
  controls.hidden = false;
  var texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
  function value(row, col, numeric) {
    var cell = row.cells[col];
    if (numeric) { return Number(cell.getAttribute("data-v")); }
    return cell.textContent;
  }
  function apply() {
    var needle = q.value.trim().toLowerCase();
    var min = Number(sev.value);
    var onlyPaged = paged.checked;
    var n = 0;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      var ok = (!needle || texts[i].indexOf(needle) >= 0) &&
        Number(r.getAttribute("data-w")) >= min &&
        (!onlyPaged || r.getAttribute("data-p") === "1");
      r.hidden = !ok;
      if (ok) { n++; }
    }
    shown.textContent = n + " of " + rows.length + " shown";
  }
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var numeric = th.getAttribute("data-t") === "n";
      var dir = th.getAttribute("aria-sort") === "descending" ? 1 : -1;
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      var order = rows.map(function (r, i) { return [value(r, col, numeric), i]; });
      order.sort(function (a, b) {
        if (a[0] < b[0]) { return -dir; }
        if (a[0] > b[0]) { return dir; }
        return a[1] - b[1];
      });
      var frag = document.createDocumentFragment();
      var newRows = [], newTexts = [];
      order.forEach(function (o) { frag.appendChild(rows[o[1]]); newRows.push(rows[o[1]]); newTexts.push(texts[o[1]]); });
      rows = newRows; texts = newTexts;
      body.appendChild(frag);
    });
  });
  q.addEventListener("input", apply);
  sev.addEventListener("change", apply);
  paged.addEventListener("change", apply);
  apply();
}());

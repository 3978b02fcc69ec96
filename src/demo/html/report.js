"use strict";
(function () {
  var FLAMES = JSON.parse(document.getElementById("flame-data").textContent);

  // Fills a flame graph's frame the first time it is shown: an inferno SVG document per frame.
  function showFlame(id) {
    var box = document.getElementById(id);
    if (!box) return null;
    box.hidden = false;
    var frame = box.querySelector("iframe");
    var flame = FLAMES[id];
    if (frame && flame && !frame.dataset.loaded) {
      // Deep stacks make tall graphs: past a screenful the frame scrolls.
      frame.style.height = Math.min(flame.height + 4, 860) + "px";
      frame.srcdoc = flame.doc;
      frame.dataset.loaded = "1";
    }
    return box;
  }

  // Tabs: one flame graph per group at a time.
  document.querySelectorAll(".tabs").forEach(function (tabs) {
    var buttons = tabs.querySelectorAll(".tab");
    function select(button) {
      buttons.forEach(function (b) {
        var on = b === button;
        b.setAttribute("aria-selected", String(on));
        var box = document.getElementById(b.dataset.flame);
        if (box) box.hidden = !on;
      });
      showFlame(button.dataset.flame);
    }
    buttons.forEach(function (b) {
      b.addEventListener("click", function () { select(b); });
      if (b.getAttribute("aria-selected") === "true") select(b);
    });
  });
  showFlame("flame-diff");

  // A local root span opens (or closes) the flame graph of its own samples.
  function toggleSpan(row, open) {
    var id = row.dataset.flame;
    var box = document.getElementById(id);
    if (!box) return;
    var show = open === undefined ? box.hidden : open;
    if (show) {
      showFlame(id);
      row.classList.add("selected");
      history.replaceState(null, "", "#span=" + row.dataset.span);
    } else {
      box.hidden = true;
      row.classList.remove("selected");
    }
  }
  document.querySelectorAll(".span-row.root").forEach(function (row) {
    row.addEventListener("click", function () { toggleSpan(row); });
    row.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggleSpan(row); }
    });
  });

  // index.html#span=<span id> opens that span's flame graph, as a click would.
  var m = /^#span=([0-9a-f]{16})$/.exec(location.hash);
  if (m) {
    var row = document.querySelector('.span-row.root[data-span="' + m[1] + '"]');
    if (row) {
      toggleSpan(row, true);
      row.scrollIntoView({ block: "start" });
    }
  }
})();

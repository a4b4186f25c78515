/* edvis site: draws the maps and images on canvases, runs the epoch slider, sorts and filters
 * the class index, and steps the layers page through epochs.
 *
 * Data comes from data/common.js (EDVIS.names, EDVIS.lut) and from one data object per page,
 * EDVIS[key] = {epochs, map_size, image_size, sprite_px, columns, alpha, sprite, shape, maps, ...}, loaded
 * by <script> tags so the pages also work when opened from disk. maps is base64 of uint8 maps
 * of shape (sequences, epochs, S, S), each map scaled to its own maximum; sprite is the id of an
 * <img> holding the images in a grid of `columns` columns.
 *
 * A canvas.map names its object (data-src), its image (data-cell), its map sequence (data-seq)
 * and the epoch shown (data-epoch-index); canvases and figures marked "follow" move with the
 * page's epoch slider, whose epoch is kept in the address (?epoch=12), and of the elements with a
 * data-epoch-panel the one of the slider's epoch is shown. */
(function () {
  "use strict";

  var all = window.EDVIS || {};
  var names = all.names || [];
  var lut = all.lut || [];
  var bytesOf = {};
  var mapCache = {};

  function decodeBase64(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function mapBytes(key) {
    if (!bytesOf[key]) bytesOf[key] = decodeBase64(all[key].maps);
    return bytesOf[key];
  }

  function className(k) {
    return k >= 0 && k < names.length ? names[k] : "class " + k;
  }

  // An s x s canvas of viridis colours from `count` bytes of `bytes` starting at `offset`.
  function gridCanvas(bytes, offset, h, w) {
    var canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    var ctx = canvas.getContext("2d");
    var pixels = ctx.createImageData(w, h);
    for (var k = 0; k < h * w; k++) {
      var v = bytes[offset + k];
      pixels.data[4 * k] = lut[3 * v];
      pixels.data[4 * k + 1] = lut[3 * v + 1];
      pixels.data[4 * k + 2] = lut[3 * v + 2];
      pixels.data[4 * k + 3] = 255;
    }
    ctx.putImageData(pixels, 0, 0);
    return canvas;
  }

  // Map `seq` of object `key` at epoch index e.
  function mapCanvas(key, seq, e) {
    var id = key + ":" + seq + ":" + e;
    if (mapCache[id]) return mapCache[id];
    var data = all[key];
    var s = data.map_size;
    var epochs = data.shape[1];
    mapCache[id] = gridCanvas(mapBytes(key), (seq * epochs + e) * s * s, s, s);
    return mapCache[id];
  }

  function draw(canvas) {
    var key = canvas.getAttribute("data-src");
    var data = all[key];
    if (!data) return;
    var ctx = canvas.getContext("2d");
    var cell = canvas.getAttribute("data-cell");
    var seq = canvas.getAttribute("data-seq");
    var e = Number(canvas.getAttribute("data-epoch-index") || 0);
    var sprite = document.getElementById(data.sprite);
    var size = data.image_size;  // boxes and peaks are in image pixels
    var side = data.sprite_px || size;  // an image's side in the sprite sheet
    var scale = canvas.width / size;
    ctx.globalAlpha = 1;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    var drewImage = false;
    if (cell !== null && sprite && sprite.complete && sprite.naturalWidth) {
      var c = Number(cell);
      var col = c % data.columns;
      var row = Math.floor(c / data.columns);
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(sprite, col * side, row * side, side, side, 0, 0, canvas.width, canvas.height);
      drewImage = true;
    }
    if (seq !== null && data.shape[0] > Number(seq)) {
      ctx.imageSmoothingEnabled = true;
      ctx.globalAlpha = drewImage ? data.alpha : 1;
      ctx.drawImage(mapCanvas(key, Number(seq), e), 0, 0, canvas.width, canvas.height);
      ctx.globalAlpha = 1;
    }
    var box = canvas.getAttribute("data-box");
    if (box) {
      var b = box.split(" ").map(Number);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
      ctx.strokeRect(b[0] * scale, b[1] * scale, (b[2] - b[0] + 1) * scale, (b[3] - b[1] + 1) * scale);
    }
    var peak = canvas.getAttribute("data-peak");
    if (peak) {
      var p = peak.split(" ").map(Number);
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#000";
      ctx.beginPath();
      ctx.arc((p[0] + 0.5) * scale, (p[1] + 0.5) * scale, 5, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 1;
      ctx.stroke();
    }
  }

  function drawAll(selector) {
    var canvases = document.querySelectorAll(selector || "canvas.map");
    for (var j = 0; j < canvases.length; j++) draw(canvases[j]);
  }

  // Point a following figure's caption at epoch index e (its canvas is redrawn by the caller).
  function retarget(figure, e) {
    var data = all[figure.getAttribute("data-src")];
    var seq = Number(figure.getAttribute("data-seq"));
    var canvas = figure.querySelector("canvas");
    if (!data || !data.pred || !(seq < data.pred.length) || !figure.querySelector(".pred")) return;
    var k = data.pred[seq][e];
    var truth = data.truth[seq];
    var right = k === truth;
    var verdict = right ? "right" : "wrong";
    var prob = (100 * data.prob[seq][e]).toFixed(1) + "%";
    var label = data.files[seq] + ", true class " + className(truth) + ": its map at epoch " + data.epochs[e] +
      "; predicted " + className(k) + " (" + prob + "), " + verdict;
    if (data.perturbation && seq % 2 === 1) label += " (" + data.perturbation + ")";
    canvas.setAttribute("aria-label", label);
    figure.classList.toggle("right", right);
    figure.classList.toggle("wrong", !right);
    figure.querySelector(".mark").textContent = right ? "\u2713" : "\u2717";
    figure.querySelector(".word").textContent = verdict;
    figure.querySelector(".pred").textContent = className(k);
    figure.querySelector(".prob").textContent = prob;
  }

  function setupSlider() {
    var slider = document.getElementById("epoch");
    if (!slider) return;
    var epochs = slider.getAttribute("data-epochs").split(" ").map(Number);
    slider.closest("label").hidden = false;
    var help = document.getElementById("epoch-help");
    if (help) help.hidden = false;

    function show(e, remember) {
      slider.value = String(e);
      var shown = document.querySelectorAll(".epoch-now");
      for (var j = 0; j < shown.length; j++) shown[j].textContent = String(epochs[e]);
      var panels = document.querySelectorAll("[data-epoch-panel]");  // one per epoch: the slider's is shown
      for (var q = 0; q < panels.length; q++) panels[q].hidden = panels[q].getAttribute("data-epoch-panel") !== String(epochs[e]);
      var figures = document.querySelectorAll("figure.follow");
      for (var f = 0; f < figures.length; f++) retarget(figures[f], e);
      var canvases = document.querySelectorAll("canvas.map");
      for (var c = 0; c < canvases.length; c++) {
        var canvas = canvases[c];
        if (canvas.classList.contains("follow") || canvas.closest("figure.follow")) {
          canvas.setAttribute("data-epoch-index", String(e));
          draw(canvas);
        }
      }
      var main = document.querySelector("[data-edvis-class]");
      var data = main && all[main.getAttribute("data-edvis-class")];
      if (data && data.mean_count) {
        var counts = document.querySelectorAll(".mean-count");
        for (var m = 0; m < counts.length; m++) counts[m].textContent = String(data.mean_count[e]);
        var mean = document.querySelector(".mean-tile canvas");
        if (mean) mean.setAttribute("aria-label", "Mean " + names[data.index] + " map over the " + data.mean_count[e] +
          " right predictions at epoch " + epochs[e]);
      }
      if (remember) {
        try {
          history.replaceState(null, "", "?epoch=" + epochs[e] + location.hash);
        } catch (err) {
          // some browsers refuse to change the address of a file:// page; the slider still works
        }
      }
    }

    slider.addEventListener("input", function () { show(Number(slider.value), true); });
    document.addEventListener("keydown", function (ev) {
      var tag = ev.target && ev.target.tagName;
      if (ev.altKey || ev.ctrlKey || ev.metaKey || tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
      var step = ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      var e = Math.min(epochs.length - 1, Math.max(0, Number(slider.value) + step));
      if (e !== Number(slider.value)) show(e, true);
      ev.preventDefault();
    });
    var m = /[?&]epoch=(\d+)/.exec(location.search);
    if (m) {
      var at = epochs.indexOf(Number(m[1]));
      if (at >= 0 && at !== Number(slider.value)) show(at, false);
    }
  }

  // A table sorted by a column when its heading is clicked (numbers by data-value); returns its rows.
  function makeSortable(table) {
    var tbody = table.tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    var heads = table.tHead.rows[0].cells;

    function value(row, col, numeric) {
      var cell = row.cells[col];
      var v = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
      if (!numeric) return v.toLowerCase();
      return v === "" ? null : Number(v);
    }

    function sortBy(col, descending) {
      var numeric = heads[col].getAttribute("data-type") === "num";
      var sorted = rows.slice().sort(function (a, b) {
        var x = value(a, col, numeric);
        var y = value(b, col, numeric);
        if (x === null && y === null) return rows.indexOf(a) - rows.indexOf(b);
        if (x === null) return 1;  // missing values last, either way
        if (y === null) return -1;
        var d = numeric ? x - y : x < y ? -1 : x > y ? 1 : 0;
        if (d === 0) return rows.indexOf(a) - rows.indexOf(b);
        return descending ? -d : d;
      });
      for (var i = 0; i < sorted.length; i++) tbody.appendChild(sorted[i]);
      for (var h = 0; h < heads.length; h++) heads[h].removeAttribute("aria-sort");
      heads[col].setAttribute("aria-sort", descending ? "descending" : "ascending");
    }

    for (var h = 0; h < heads.length; h++) {
      (function (col) {
        var head = heads[col];
        var button = document.createElement("button");
        button.type = "button";
        button.className = "sort";
        while (head.firstChild) button.appendChild(head.firstChild);
        head.appendChild(button);
        button.addEventListener("click", function () {
          sortBy(col, head.getAttribute("aria-sort") === "ascending");
        });
      })(h);
    }

    return rows;
  }

  // The class index: sortable, and filtered by name or id; other tables marked "sortable" sort too.
  function setupTables() {
    var others = document.querySelectorAll("table.sortable:not(#class-index)");
    for (var t = 0; t < others.length; t++) makeSortable(others[t]);
    var table = document.getElementById("class-index");
    if (!table) return;
    var rows = makeSortable(table);
    var controls = document.getElementById("class-controls");
    if (controls) controls.hidden = false;
    var filter = document.getElementById("class-filter");
    var count = document.getElementById("class-count");
    function applyFilter() {
      var q = filter.value.trim().toLowerCase();
      var shown = 0;
      for (var i = 0; i < rows.length; i++) {
        var hit = !q || rows[i].getAttribute("data-filter").indexOf(q) >= 0;
        rows[i].hidden = !hit;
        if (hit) shown++;
      }
      if (count) count.textContent = shown + " of " + rows.length + " classes";
    }
    if (filter) filter.addEventListener("input", applyFilter);
  }

  // The layers page: draw each layer's strongest channels and their mean; switch epochs.
  function setupLayers() {
    var main = document.querySelector("[data-edvis-layers]");
    if (!main) return;
    var decoded = {};

    function layerBytes(epoch, j, l) {
      var id = epoch + ":" + j + ":" + l;
      if (!decoded[id]) decoded[id] = decodeBase64(all["layers-" + String(epoch).padStart(3, "0")].images[j].layers[l].data);
      return decoded[id];
    }

    function drawLayers(epoch) {
      var data = all["layers-" + String(epoch).padStart(3, "0")];
      if (!data) return;
      var canvases = document.querySelectorAll("canvas.act");
      for (var c = 0; c < canvases.length; c++) {
        var canvas = canvases[c];
        var j = Number(canvas.getAttribute("data-image"));
        var l = Number(canvas.getAttribute("data-layer"));
        var slot = Number(canvas.getAttribute("data-slot"));
        var layer = data.images[j] && data.images[j].layers[l];
        var ctx = canvas.getContext("2d");
        ctx.clearRect(0, 0, canvas.width, canvas.height);
        if (!layer) continue;
        var grid = gridCanvas(layerBytes(epoch, j, l), slot * layer.h * layer.w, layer.h, layer.w);
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(grid, 0, 0, canvas.width, canvas.height);
        var caption = canvas.parentNode.querySelector(".ch");
        if (caption && slot < layer.channels.length) {
          var ch = layer.channels[slot];
          var isClass = canvas.closest(".layer").getAttribute("data-class-channels") === "1";
          caption.textContent = isClass ? className(ch) : "#" + ch;
          canvas.setAttribute("aria-label", canvas.getAttribute("data-label") + " channel " + ch +
            (isClass ? " (" + className(ch) + ")" : "") + " at epoch " + epoch);
        }
      }
      var shown = document.querySelectorAll(".epoch-now");
      for (var s = 0; s < shown.length; s++) shown[s].textContent = String(epoch);
    }

    var select = document.getElementById("layer-epoch");
    if (select) {
      select.closest("label").hidden = false;
      select.addEventListener("change", function () {
        var epoch = Number(select.value);
        try {
          history.replaceState(null, "", "?epoch=" + epoch + location.hash);
        } catch (err) {
          // a file:// page may refuse; the selector still works
        }
        if (all["layers-" + String(epoch).padStart(3, "0")]) return drawLayers(epoch);
        var script = document.createElement("script");
        script.src = select.options[select.selectedIndex].getAttribute("data-src");
        script.onload = function () { all = window.EDVIS; drawLayers(epoch); };
        document.body.appendChild(script);
      });
      var m = /[?&]epoch=(\d+)/.exec(location.search);
      if (m) {
        for (var o = 0; o < select.options.length; o++) {
          if (Number(select.options[o].value) === Number(m[1]) && !select.options[o].selected) {
            select.selectedIndex = o;
            select.dispatchEvent(new Event("change"));
          }
        }
      }
    }
    var epochs = main.getAttribute("data-edvis-layers").split(" ").map(Number);
    drawLayers(epochs[epochs.length - 1]);
  }

  // What try.html's script shares with the other pages: the same colour scale and grids.
  window.edvisDraw = {gridCanvas: gridCanvas, className: className, decodeBase64: decodeBase64};

  function setup() {
    setupTables();
    drawAll();
    var sprites = document.querySelectorAll("img.sprite");
    for (var s = 0; s < sprites.length; s++) {
      if (!(sprites[s].complete && sprites[s].naturalWidth)) sprites[s].addEventListener("load", function () { drawAll(); });
    }
    setupSlider();
    setupLayers();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();

/* Draws the class page's tiles: each validation image from the sprite sheet, with its
 * true-class map (8x8, one byte per cell) upsampled and coloured by the viridis table.
 * Data comes from data/common.js (EDVIS.names, EDVIS.lut) and data/NNN.js (EDVIS[NNN]),
 * loaded by <script> tags so the page also works when opened from disk. */
(function () {
  "use strict";

  function decodeBase64(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function setup() {
    var main = document.querySelector("[data-edvis-class]");
    var all = window.EDVIS || {};
    var data = main && all[main.getAttribute("data-edvis-class")];
    var sprite = document.getElementById("sprite");
    if (!data || !all.lut || !all.names || !sprite) return;

    var maps = decodeBase64(data.maps);
    var lut = all.lut;
    var names = all.names;
    var nEpochs = data.epochs.length;
    var s = data.map_size;
    var size = data.image_size;
    var cache = {};

    // The map of image i at epoch index e, as an s x s canvas of viridis colours.
    function mapCanvas(i, e) {
      var key = i + ":" + e;
      if (cache[key]) return cache[key];
      var canvas = document.createElement("canvas");
      canvas.width = s;
      canvas.height = s;
      var ctx = canvas.getContext("2d");
      var pixels = ctx.createImageData(s, s);
      var offset = (i * nEpochs + e) * s * s;
      for (var k = 0; k < s * s; k++) {
        var v = maps[offset + k];
        pixels.data[4 * k] = lut[3 * v];
        pixels.data[4 * k + 1] = lut[3 * v + 1];
        pixels.data[4 * k + 2] = lut[3 * v + 2];
        pixels.data[4 * k + 3] = 255;
      }
      ctx.putImageData(pixels, 0, 0);
      cache[key] = canvas;
      return canvas;
    }

    function draw(canvas) {
      var i = Number(canvas.getAttribute("data-image"));
      var e = Number(canvas.getAttribute("data-epoch-index"));
      var ctx = canvas.getContext("2d");
      var col = i % data.columns;
      var row = Math.floor(i / data.columns);
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.globalAlpha = 1;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(sprite, col * size, row * size, size, size, 0, 0, canvas.width, canvas.height);
      ctx.globalAlpha = data.alpha;
      ctx.drawImage(mapCanvas(i, e), 0, 0, canvas.width, canvas.height);
      ctx.globalAlpha = 1;
    }

    // Point a grid tile at another epoch: its canvas, caption and label.
    function retarget(figure, e) {
      var canvas = figure.querySelector("canvas");
      var i = Number(canvas.getAttribute("data-image"));
      var k = data.pred[i][e];
      var right = k === data.index;
      var verdict = right ? "right" : "wrong";
      var name = k >= 0 && k < names.length ? names[k] : "class " + k;
      var prob = (100 * data.prob[i][e]).toFixed(1) + "%";
      canvas.setAttribute("data-epoch-index", String(e));
      canvas.setAttribute("aria-label", data.files[i] + ", true class " + names[data.index] +
        ": its map at epoch " + data.epochs[e] + "; predicted " + name + " (" + prob + "), " + verdict);
      figure.classList.toggle("right", right);
      figure.classList.toggle("wrong", !right);
      figure.querySelector(".mark").textContent = right ? "\u2713" : "\u2717";
      figure.querySelector(".word").textContent = verdict;
      figure.querySelector(".pred").textContent = name;
      figure.querySelector(".prob").textContent = prob;
      draw(canvas);
    }

    function drawAll() {
      var canvases = document.querySelectorAll("canvas.map");
      for (var j = 0; j < canvases.length; j++) draw(canvases[j]);
    }

    var slider = document.getElementById("epoch");
    if (slider) {
      slider.closest("label").hidden = false;
      slider.addEventListener("input", function () {
        var e = Number(slider.value);
        var shown = document.querySelectorAll(".epoch-now");
        for (var j = 0; j < shown.length; j++) shown[j].textContent = String(data.epochs[e]);
        var tiles = document.querySelectorAll("#grid .tile");
        for (var t = 0; t < tiles.length; t++) retarget(tiles[t], e);
      });
    }

    if (sprite.complete && sprite.naturalWidth) drawAll();
    else sprite.addEventListener("load", drawAll);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();

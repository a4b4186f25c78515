/* edvis site, try.html: the run's exported ONNX model in the browser, by onnxruntime-web.
 *
 * data/try.js (EDVIS.try) names the shipped epochs' ONNX files, the runtime's folder, each class's
 * sprite sheet with the validation indices in its cells, and the store's top-1 at those epochs.
 * An image becomes what the renderer feeds the model: uint8 RGB (1, S, S, 3), NHWC. A validation
 * image is read from its class's sprite cell, which holds load_image's pixels exactly; an image of
 * another size is resized as Pillow's Image.resize(BILINEAR) does (two passes, 22-bit fixed-point
 * weights; see resize below). The outputs are summarised as the site does elsewhere: softmax,
 * top-5 by probability (ties: lower index), each map scaled to its own maximum, each layer's
 * strongest channels and mean scaled from their own minimum to maximum.
 *
 * From file:// the browser refuses to fetch the model and the runtime, so the page says how to
 * serve the folder and does nothing else. window.edvisTry.run({epoch, index} | {file}) returns a
 * promise of the result (the tests read it). */
(function () {
  "use strict";

  var all = window.EDVIS || {};
  var data = all["try"];
  var draw = window.edvisDraw;
  var main = document.querySelector("[data-edvis-try]");
  if (!main || !data || !draw) return;
  var S = data.image_size;
  var M = data.map_size;
  var TILE = 128;
  var api = window.edvisTry = {last: null, busy: false};
  var statusLine = document.getElementById("try-status");
  var resultBox = document.getElementById("try-result");

  function say(text) { statusLine.textContent = text; }

  if (location.protocol === "file:") {
    document.getElementById("try-serve").hidden = false;
    api.blocked = "file";
    return;
  }
  if (!window.ort) {
    say("onnxruntime-web did not load (" + data.runtime + "ort.wasm.min.js).");
    return;
  }
  var base = document.baseURI;
  ort.env.wasm.numThreads = 1;  // no cross-origin isolation needed: any static host will do
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL(data.runtime, base).href;
  ort.env.logLevel = "error";

  // -- the model --------------------------------------------------------------------------------

  var sessions = {};

  function modelOf(epoch) {
    for (var i = 0; i < data.models.length; i++) if (data.models[i].epoch === epoch) return data.models[i];
    throw new Error("epoch " + epoch + " is not shipped");
  }

  function session(epoch) {
    if (!sessions[epoch]) {
      var m = modelOf(epoch);
      say("Loading the model of epoch " + epoch + " (" + (m.size / 1e6).toFixed(1) + " MB)…");
      sessions[epoch] = ort.InferenceSession.create(new URL(m.file, base).href,
        {executionProviders: ["wasm"], graphOptimizationLevel: "all"});
      sessions[epoch].catch(function () { delete sessions[epoch]; });
    }
    return sessions[epoch];
  }

  // -- pixels: uint8 RGB, as load_image gives them ------------------------------------------------

  var sheets = {};

  function sheet(src) {
    if (!sheets[src]) {
      sheets[src] = new Promise(function (resolve, reject) {
        var img = new Image();
        img.onload = function () { resolve(img); };
        img.onerror = function () { delete sheets[src]; reject(new Error("cannot load " + src)); };
        img.src = new URL(src, base).href;
      });
    }
    return sheets[src];
  }

  function rgbOf(source, w, h) {
    var canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    var ctx = canvas.getContext("2d", {willReadFrequently: true});
    ctx.drawImage(source, 0, 0);
    var rgba = ctx.getImageData(0, 0, w, h).data;
    var rgb = new Uint8Array(w * h * 3);
    for (var p = 0; p < w * h; p++) {  // alpha is dropped, as load_image does
      rgb[3 * p] = rgba[4 * p];
      rgb[3 * p + 1] = rgba[4 * p + 1];
      rgb[3 * p + 2] = rgba[4 * p + 2];
    }
    return rgb;
  }

  function validationPixels(index) {
    var entry = data.classes[String(data.labels[index])];
    var cell = entry ? entry.cells.indexOf(index) : -1;
    if (cell < 0) return Promise.reject(new Error("validation image " + index + " is on no sprite sheet"));
    return sheet(entry.sprite).then(function (img) {
      var canvas = document.createElement("canvas");
      canvas.width = S;
      canvas.height = S;
      var col = cell % data.columns;
      var row = Math.floor(cell / data.columns);
      canvas.getContext("2d").drawImage(img, col * S, row * S, S, S, 0, 0, S, S);
      return rgbOf(canvas, S, S);
    });
  }

  function filePixels(file) {
    // EXIF orientation and colour profiles ignored, as Pillow's decoder ignores them
    return createImageBitmap(file, {imageOrientation: "none", premultiplyAlpha: "none", colorSpaceConversion: "none"})
      .then(function (bitmap) {
        if (bitmap.width * bitmap.height > data.max_pixels) {
          throw new Error(file.name + " is " + bitmap.width + "×" + bitmap.height + " pixels, over the " +
            data.max_pixels + " that load_image accepts");
        }
        var rgb = rgbOf(bitmap, bitmap.width, bitmap.height);
        var out = resize(rgb, bitmap.width, bitmap.height, S);
        if (bitmap.close) bitmap.close();
        return {rgb: out, size: [bitmap.width, bitmap.height]};
      });
  }

  // Pillow's resampling (libImaging/Resample.c) with the bilinear filter: per axis, weights of a
  // triangle stretched by the scale when shrinking, normalised, then rounded to 22-bit integers.
  var PRECISION = 22;

  function coefficients(inSize, outSize) {
    var scale = inSize / outSize;
    var filterscale = Math.max(scale, 1);
    var support = filterscale;  // the bilinear filter's support is 1
    var ksize = Math.ceil(support) * 2 + 1;
    var bounds = new Int32Array(2 * outSize);
    var kk = new Float64Array(outSize * ksize);
    for (var xx = 0; xx < outSize; xx++) {
      var center = (xx + 0.5) * scale;
      var ss = 1 / filterscale;
      var xmin = Math.max(0, Math.trunc(center - support + 0.5));
      var xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
      var ww = 0;
      var x;
      for (x = 0; x < xmax; x++) {
        var t = Math.abs((x + xmin - center + 0.5) * ss);
        var w = t < 1 ? 1 - t : 0;
        kk[xx * ksize + x] = w;
        ww += w;
      }
      for (x = 0; x < xmax; x++) {
        var k = ww !== 0 ? kk[xx * ksize + x] / ww : kk[xx * ksize + x];
        kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * (1 << PRECISION)) : Math.trunc(0.5 + k * (1 << PRECISION));
      }
      bounds[2 * xx] = xmin;
      bounds[2 * xx + 1] = xmax;
    }
    return {bounds: bounds, kk: kk, ksize: ksize};
  }

  function clip8(v) {
    v = v >> PRECISION;
    return v < 0 ? 0 : v > 255 ? 255 : v;
  }

  function resize(src, w, h, size) {
    if (w === size && h === size) return src;
    var H = coefficients(w, size);
    var V = coefficients(h, size);
    var cur = src;
    var curW = w;
    var yb = V.bounds;
    var half = 1 << (PRECISION - 1);
    if (w !== size) {  // horizontal pass over the rows the vertical pass will use
      var first = V.bounds[0];
      var last = V.bounds[2 * size - 2] + V.bounds[2 * size - 1];
      yb = new Int32Array(V.bounds);
      for (var i = 0; i < size; i++) yb[2 * i] -= first;
      var tmp = new Uint8Array((last - first) * size * 3);
      for (var y = 0; y < last - first; y++) {
        for (var xx = 0; xx < size; xx++) {
          var xmin = H.bounds[2 * xx];
          var xmax = H.bounds[2 * xx + 1];
          for (var c = 0; c < 3; c++) {
            var ss = half;
            for (var x = 0; x < xmax; x++) ss += src[((y + first) * w + xmin + x) * 3 + c] * H.kk[xx * H.ksize + x];
            tmp[(y * size + xx) * 3 + c] = clip8(ss);
          }
        }
      }
      cur = tmp;
      curW = size;
    }
    if (h === size) return cur;
    var out = new Uint8Array(size * curW * 3);
    for (var yy = 0; yy < size; yy++) {
      var ymin = yb[2 * yy];
      var ymax = yb[2 * yy + 1];
      for (var x2 = 0; x2 < curW; x2++) {
        for (var c2 = 0; c2 < 3; c2++) {
          var s2 = half;
          for (var k = 0; k < ymax; k++) s2 += cur[((ymin + k) * curW + x2) * 3 + c2] * V.kk[yy * V.ksize + k];
          out[(yy * curW + x2) * 3 + c2] = clip8(s2);
        }
      }
    }
    return out;
  }

  // -- the outputs, summarised as the site does ---------------------------------------------------

  function rint(v) {  // numpy's rint: halves to even
    var r = Math.round(v);
    return (r - v === 0.5 && r % 2 !== 0) ? r - 1 : r;
  }

  function softmax(logits) {
    var peak = -Infinity;
    for (var i = 0; i < logits.length; i++) peak = Math.max(peak, logits[i]);
    var e = logits.map(function (v) { return Math.exp(v - peak); });
    var sum = e.reduce(function (a, b) { return a + b; }, 0);
    return e.map(function (v) { return v / sum; });
  }

  function topK(values, k) {
    var order = values.map(function (_, i) { return i; });
    order.sort(function (a, b) { return values[b] - values[a] || a - b; });
    return order.slice(0, k);
  }

  function scaleToMax(grid) {  // normalise_maps: negatives as zero, the maximum as 255
    var peak = 0;
    var v = Array.prototype.map.call(grid, function (x) { return isFinite(x) && x > 0 ? x : 0; });
    for (var i = 0; i < v.length; i++) peak = Math.max(peak, v[i]);
    return Uint8Array.from(v, function (x) { return peak > 0 ? rint(x / peak * 255) : 0; });
  }

  function scaleMinMax(grid) {  // picks.scale_minmax
    var lo = Infinity;
    var hi = -Infinity;
    for (var i = 0; i < grid.length; i++) { lo = Math.min(lo, grid[i]); hi = Math.max(hi, grid[i]); }
    return Uint8Array.from(grid, function (x) { return hi > lo ? rint((x - lo) / (hi - lo) * 255) : 0; });
  }

  function layerSummary(name, tensor) {
    var dims = tensor.dims;
    var ch = dims[1];
    var hw = dims[2] * dims[3];
    var values = tensor.data;
    var means = [];
    var mean = new Float64Array(hw);
    for (var c = 0; c < ch; c++) {
      var s = 0;
      for (var p = 0; p < hw; p++) { s += values[c * hw + p]; mean[p] += values[c * hw + p]; }
      means.push(s / hw);
    }
    for (var q = 0; q < hw; q++) mean[q] /= ch;
    var chosen = topK(means, data.channels);
    return {
      name: name.replace(/^layer\./, ""), shape: [ch, dims[2], dims[3]], channels: chosen,
      grids: chosen.map(function (k) { return scaleMinMax(values.subarray(k * hw, (k + 1) * hw)); }),
      mean: scaleMinMax(mean),
    };
  }

  function summarise(outputs) {
    var logits = Array.from(outputs.logits.data);
    var probs = softmax(logits);
    var top = topK(probs, Math.min(5, probs.length));
    var maps = outputs.maps.data;
    return {
      logits: logits,
      top5: top,
      probs: top.map(function (k) { return probs[k]; }),
      maps: top.map(function (k) { return Array.from(scaleToMax(maps.subarray(k * M * M, (k + 1) * M * M))); }),
      layers: data.layers.filter(function (n) { return outputs[n]; }).map(function (n) { return layerSummary(n, outputs[n]); }),
    };
  }

  // -- drawing ------------------------------------------------------------------------------------

  function element(tag, attrs, text) {
    var el = document.createElement(tag);
    for (var key in attrs) el.setAttribute(key, attrs[key]);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function imageCanvas(rgb) {
    var canvas = document.createElement("canvas");
    canvas.width = S;
    canvas.height = S;
    var ctx = canvas.getContext("2d");
    var pixels = ctx.createImageData(S, S);
    for (var p = 0; p < S * S; p++) {
      pixels.data[4 * p] = rgb[3 * p];
      pixels.data[4 * p + 1] = rgb[3 * p + 1];
      pixels.data[4 * p + 2] = rgb[3 * p + 2];
      pixels.data[4 * p + 3] = 255;
    }
    ctx.putImageData(pixels, 0, 0);
    return canvas;
  }

  // A tile as the other pages draw it: the image, and the map over it at the site's opacity.
  function tile(image, map, label, caption, cls) {
    var figure = element("figure", {"class": "tile" + (cls ? " " + cls : "")});
    var canvas = element("canvas", {"class": "try-map", width: TILE, height: TILE, role: "img", "aria-label": label});
    var ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(image, 0, 0, TILE, TILE);
    if (map) {
      ctx.globalAlpha = data.alpha;
      ctx.drawImage(draw.gridCanvas(map, 0, M, M), 0, 0, TILE, TILE);
      ctx.globalAlpha = 1;
    }
    figure.appendChild(canvas);
    var cap = element("figcaption");
    for (var i = 0; i < caption.length; i++) cap.appendChild(caption[i]);
    figure.appendChild(cap);
    return figure;
  }

  function actCanvas(bytes, h, w, px, label) {
    var canvas = element("canvas", {"class": "act", width: px, height: px, role: "img", "aria-label": label});
    var ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(draw.gridCanvas(bytes, 0, h, w), 0, 0, px, px);
    return canvas;
  }

  function show(result, rgb) {
    var image = imageCanvas(rgb);
    var what = result.source === "file" ? result.name : data.files[result.index];
    var truth = result.index !== null ? data.labels[result.index] : null;
    var box = document.createDocumentFragment();
    box.appendChild(element("h2", {}, "Epoch " + result.epoch + ": " + what));
    var facts = "Computed in your browser in " + result.ms.toFixed(0) + " ms.";
    if (result.store) {
      facts += " The render store's top-1 at this epoch: " + draw.className(result.store.pred) + " (" +
        (100 * result.store.prob).toFixed(1) + "%)" + (result.store.pred === result.top5[0] ? ", the same." : ", not the same.");
    }
    box.appendChild(element("p", {"class": "muted"}, facts));
    var row = element("div", {"class": "gallery-row try-top"});
    var inputLabel = truth !== null ? "true class " + draw.className(truth) : result.size.join("×") + " px, resized to " + S + "×" + S;
    row.appendChild(tile(image, null, what + ": the input image", [element("span", {"class": "epoch"}, "input"),
      document.createTextNode(inputLabel)]));
    result.top5.forEach(function (k, r) {
      var right = truth !== null && k === truth;
      var prob = (100 * result.probs[r]).toFixed(1) + "%";
      var caption = [element("span", {"class": "epoch"}, "#" + (r + 1))];
      if (right) caption.push(element("span", {"class": "verdict"}, "\u2713 "));
      caption.push(element("span", {"class": "pred"}, draw.className(k) + " "), element("span", {"class": "prob"}, prob));
      row.appendChild(tile(image, Uint8Array.from(result.maps[r]), what + ": the map of " + draw.className(k) + " (" + prob +
        ") at epoch " + result.epoch, caption, right ? "right" : ""));
    });
    box.appendChild(row);
    box.appendChild(element("h2", {}, "Every layer"));
    var layers = element("div", {"class": "layer-row"});
    result.layers.forEach(function (layer) {
      var div = element("div", {"class": "layer"});
      div.appendChild(element("h3", {}, layer.name + " ")).appendChild(element("span", {"class": "muted"}, layer.shape.join("×")));
      var h = layer.shape[1];
      var w = layer.shape[2];
      div.appendChild(actCanvas(layer.mean, h, w, 96, what + ": mean of the " + layer.shape[0] + " channels of " + layer.name));
      var channels = element("div", {"class": "channels"});
      var isClass = data.class_layers.indexOf(layer.name) >= 0 && layer.shape[0] === (all.names || []).length;
      layer.channels.forEach(function (ch, j) {
        var fig = element("figure");
        var caption = isClass ? draw.className(ch) : "#" + ch;
        fig.appendChild(actCanvas(layer.grids[j], h, w, 40, what + ": " + layer.name + " channel " + ch + (isClass ? " (" + caption + ")" : "")));
        fig.appendChild(element("figcaption", {"class": "ch"}, caption));
        channels.appendChild(fig);
      });
      div.appendChild(channels);
      layers.appendChild(div);
    });
    box.appendChild(layers);
    resultBox.replaceChildren(box);
  }

  // -- running ------------------------------------------------------------------------------------

  var pending = null;

  function run(request) {
    var epoch = Number(request.epoch);
    var pixels = request.file ? filePixels(request.file) : validationPixels(request.index).then(function (rgb) {
      return {rgb: rgb, size: [S, S]};
    });
    var job = Promise.all([pixels, session(epoch)]).then(function (got) {
      var input = got[0];
      var t0 = performance.now();
      return got[1].run({images: new ort.Tensor("uint8", input.rgb, [1, S, S, 3])}).then(function (outputs) {
        var ms = performance.now() - t0;
        var result = summarise(outputs);
        result.epoch = epoch;
        result.ms = ms;
        result.source = request.file ? "file" : "validation";
        result.name = request.file ? request.file.name : null;
        result.index = request.file ? null : request.index;
        result.size = input.size;
        var stored = data.store[String(epoch)];
        result.store = stored && !request.file ? {pred: stored.pred[request.index], prob: stored.prob[request.index]} : null;
        if (pending === job) {  // a later request replaces what an earlier one shows
          show(result, input.rgb);
          say("Epoch " + epoch + ": top-1 " + draw.className(result.top5[0]) + " (" + (100 * result.probs[0]).toFixed(1) + "%).");
        }
        api.last = result;
        return result;
      });
    });
    pending = job;
    job.catch(function (err) { say("Could not run the model: " + err.message); });
    return job;
  }
  api.run = run;

  // -- controls -----------------------------------------------------------------------------------

  var epochSelect = document.getElementById("try-epoch");
  var classSelect = document.getElementById("try-class");
  var imageSelect = document.getElementById("try-image");
  var fileInput = document.getElementById("try-file");
  var drop = document.getElementById("try-drop");
  var current = null;  // what the epoch selector reruns: {index} or {file}

  function fillImages() {
    var entry = data.classes[classSelect.value];
    imageSelect.replaceChildren();
    (entry ? entry.cells : []).forEach(function (i, n) {
      imageSelect.appendChild(element("option", {value: String(i)}, (n + 1) + ": " + data.files[i]));
    });
  }

  function again() {
    if (!current) return;
    run({epoch: epochSelect.value, index: current.index, file: current.file});
  }

  document.getElementById("try-controls").hidden = false;
  classSelect.addEventListener("change", function () { fillImages(); imageSelect.dispatchEvent(new Event("change")); });
  imageSelect.addEventListener("change", function () {
    if (imageSelect.value === "") return;
    current = {index: Number(imageSelect.value)};
    again();
  });
  epochSelect.addEventListener("change", again);
  fileInput.addEventListener("change", function () {
    if (!fileInput.files.length) return;
    current = {file: fileInput.files[0]};
    again();
  });
  drop.addEventListener("dragover", function (ev) { ev.preventDefault(); });
  drop.addEventListener("drop", function (ev) {
    ev.preventDefault();
    if (!ev.dataTransfer.files.length) return;
    current = {file: ev.dataTransfer.files[0]};
    again();
  });
  fillImages();
  if (imageSelect.options.length) {
    current = {index: Number(imageSelect.value)};
    again();
  }
})();

/* labeler dashboard: draw a box on the large view (search by a region), and the
 * anomaly heat maps of the Next cards.
 *
 * Box: Shift+drag over the large image, or drag after pressing "▭ draw a box" (the
 * button toggles the mode; without it a plain drag pans, as keys.js does). The box is
 * kept as fractions of the image's natural size, so zoom and pan (keys.js moves the
 * wrapper, the box's parent) and the /view copy's downscaling do not change it; it is
 * written with Dash's set_props into the lv-box-store as {src, fx, fy, fw, fh}
 * (tabs/search/region.py turns it into pixels of the original image). A new image
 * clears it.
 *
 * Heat maps: a Next card's thumbnail holds an <img class="heat-overlay" data-src=...>;
 * its src is set only while the page root has the class heat-on (the "heat map" tick
 * box), so nothing is fetched while the overlay is off.
 */
(function () {
    "use strict";
    let mode = false;   // "▭ draw a box" pressed: a plain drag draws
    let draw = null;    // the box being drawn: {x0, y0} fractions
    const MIN_PX = 4;   // a smaller drag is a click, not a box

    function el(id) { return document.getElementById(id); }

    // The picture's rectangle inside the <img> (object-fit: contain), in the given box.
    function fitted(im, w, h) {
        const nw = im.naturalWidth || 1, nh = im.naturalHeight || 1;
        const s = Math.min(w / nw, h / nh);
        return {left: (w - nw * s) / 2, top: (h - nh * s) / 2, width: nw * s, height: nh * s};
    }

    // Pointer position as fractions of the picture (on screen: after keys.js's zoom / pan).
    function fraction(e) {
        const im = el("lv-img");
        const r = im.getBoundingClientRect();
        const f = fitted(im, r.width, r.height);
        const fx = (e.clientX - r.left - f.left) / f.width, fy = (e.clientY - r.top - f.top) / f.height;
        return {x: Math.min(Math.max(fx, 0), 1), y: Math.min(Math.max(fy, 0), 1), scale: f.width};
    }

    function show(b) {
        const box = el("lv-box"), im = el("lv-img");
        if (!box || !im) { return; }
        if (!b) { box.style.display = "none"; return; }
        const f = fitted(im, im.offsetWidth, im.offsetHeight);  // layout size: the wrapper scales both
        box.style.left = (f.left + b.fx * f.width) + "px";
        box.style.top = (f.top + b.fy * f.height) + "px";
        box.style.width = (b.fw * f.width) + "px";
        box.style.height = (b.fh * f.height) + "px";
        box.style.display = "block";
    }

    function rect(a, b) {
        return {fx: Math.min(a.x, b.x), fy: Math.min(a.y, b.y), fw: Math.abs(a.x - b.x), fh: Math.abs(a.y - b.y)};
    }

    function setMode(on) {
        mode = on;
        const btn = el("lv-box-mode"), stage = document.querySelector(".lv-stage");
        if (btn) { btn.classList.toggle("btn-active", on); }
        if (stage) { stage.classList.toggle("lv-drawing", on); }
    }

    document.addEventListener("click", function (e) {
        if (e.target && e.target.id === "lv-box-mode") { setMode(!mode); }
    });

    // Capture phase: runs before keys.js's pan (a bubbling listener), which it stops.
    document.addEventListener("mousedown", function (e) {
        const wrap = e.target && e.target.closest && e.target.closest("#lv-img-wrap");
        if (!wrap || e.button !== 0 || !(mode || e.shiftKey)) { return; }
        e.preventDefault();
        e.stopPropagation();
        draw = fraction(e);
    }, true);

    document.addEventListener("mousemove", function (e) {
        if (!draw) { return; }
        e.stopPropagation();
        show(rect(draw, fraction(e)));
    }, true);

    document.addEventListener("mouseup", function (e) {
        if (!draw) { return; }
        e.stopPropagation();
        const end = fraction(e), b = rect(draw, end);
        const big = b.fw * draw.scale >= MIN_PX && b.fh * draw.scale >= MIN_PX;
        draw = null;
        if (!big) { return; }
        show(b);
        const src = (el("lv-img").getAttribute("src") || "").split("?")[0];
        window.dash_clientside.set_props("lv-box-store", {data: {src: src, fx: b.fx, fy: b.fy, fw: b.fw, fh: b.fh}});
        const note = el("lv-region-note");
        if (note) { note.textContent = "Box drawn: press Search this region."; }
    }, true);

    // A new image in the large view: the old box does not belong to it.
    document.addEventListener("load", function (e) {
        if (!(e.target && e.target.id === "lv-img")) { return; }
        show(null);
        if (window.dash_clientside && window.dash_clientside.set_props) {
            window.dash_clientside.set_props("lv-box-store", {data: null});
        }
    }, true);

    // Heat overlays of the Next cards: load them only while the overlay is on.
    let queued = false;
    function fill() {
        queued = false;
        const root = el("app-root");
        if (!root || !root.classList.contains("heat-on")) { return; }
        document.querySelectorAll("img.heat-overlay[data-src]:not([src])").forEach(function (im) {
            im.setAttribute("src", im.getAttribute("data-src"));
        });
    }
    new MutationObserver(function () {
        if (!queued) { queued = true; window.requestAnimationFrame(fill); }
    }).observe(document.documentElement, {subtree: true, childList: true, attributes: true,
                                           attributeFilter: ["class"]});
    // A heat map that cannot be drawn (no anomaly scores) hides instead of showing a broken
    // image, until one loads.
    function heatImage(t) {
        return t && t.classList && (t.classList.contains("heat-overlay") || t.id === "lv-heat-img");
    }
    document.addEventListener("error", function (e) {
        if (heatImage(e.target)) { e.target.style.visibility = "hidden"; }
    }, true);
    document.addEventListener("load", function (e) {
        if (heatImage(e.target)) { e.target.style.visibility = ""; }
    }, true);
})();

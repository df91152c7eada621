/* labeler dashboard: keyboard shortcuts and the large view's zoom / pan.
 *
 * A file in assets/ (served from 'self'), not an inline script, so a
 * Content-Security-Policy without 'unsafe-inline' allows it.
 *
 * Keys are ignored while the focus is in a text box, and with Ctrl / Alt / Meta
 * (Ctrl+Z is the undo listener in callbacks_explore.py). A shortcut that needs the
 * server is written as {key, n} into the kb-event store (Dash's set_props);
 * callbacks_viewer.keyboard_step decides what it does. The table is KEYS in
 * components.py ('?' shows it).
 */
(function () {
    "use strict";
    let counter = 0;
    const SERVER_KEYS = {
        n: "next", j: "next", ArrowRight: "next",
        p: "prev", k: "prev", ArrowLeft: "prev",
        Enter: "enter", PageDown: "pgdn", PageUp: "pgup",
    };

    function shown(id) {
        const el = document.getElementById(id);
        return !!el && el.style.display !== "none";
    }

    function click(id) {
        const el = document.getElementById(id);
        if (el) { el.click(); }
    }

    function typing(t) {
        const tag = (t && t.tagName || "").toLowerCase();
        return tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable);
    }

    function send(key) {
        counter += 1;
        window.dash_clientside.set_props("kb-event-store", {data: {key: key, n: counter}});
    }

    function toggleHelp(show) {
        const el = document.getElementById("help-overlay");
        if (el) { el.style.display = show ? "flex" : "none"; }
    }

    document.addEventListener("keydown", function (e) {
        if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target) || e.isComposing) { return; }
        if (shown("name-dialog")) { return; }
        const key = e.key;
        if (key === "?") { e.preventDefault(); toggleHelp(!shown("help-overlay")); return; }
        if (shown("help-overlay")) {
            if (key === "Escape") { e.preventDefault(); toggleHelp(false); }
            return;
        }
        if (shown("lv-overlay")) {
            const act = {Escape: "lv-close", ArrowLeft: "lv-prev", ArrowRight: "lv-next"}[key];
            if (act) { e.preventDefault(); click(act); }
            return;
        }
        const tag = (e.target && e.target.tagName || "").toLowerCase();
        if (key === "l") {
            const box = document.getElementById("cluster-label-input");
            if (box && box.offsetParent !== null) { e.preventDefault(); box.focus(); box.select(); }
            return;
        }
        if (/^[1-9]$/.test(key)) { e.preventDefault(); send("label:" + key); return; }
        const name = SERVER_KEYS[key];
        if (!name) { return; }
        if (key === "Enter" && (tag === "button" || tag === "a")) { return; }  // the browser clicks it
        e.preventDefault();
        send(name);
    });

    document.addEventListener("click", function (e) {
        const t = e.target;
        if (t && t.id === "help-button") { toggleHelp(!shown("help-overlay")); }
        else if (t && t.id === "help-overlay") { toggleHelp(false); }
    });

    /* -- large view: wheel zoom around the pointer, drag to pan, double-click resets -- */
    const view = {scale: 1, x: 0, y: 0};

    function apply(wrap) {
        wrap.style.transform = "translate(" + view.x + "px," + view.y + "px) scale(" + view.scale + ")";
    }

    function reset() {
        view.scale = 1; view.x = 0; view.y = 0;
        const wrap = document.getElementById("lv-img-wrap");
        if (wrap) { apply(wrap); }
    }

    document.addEventListener("load", function (e) {
        if (e.target && e.target.id === "lv-img") { reset(); }
    }, true);

    document.addEventListener("wheel", function (e) {
        const wrap = e.target && e.target.closest && e.target.closest("#lv-img-wrap");
        if (!wrap) { return; }
        e.preventDefault();
        const box = wrap.parentElement.getBoundingClientRect();
        const px = e.clientX - box.left, py = e.clientY - box.top;
        const factor = Math.exp(-e.deltaY * 0.0015);
        const scale = Math.min(Math.max(view.scale * factor, 1), 16);
        const k = scale / view.scale;
        view.x = px - k * (px - view.x);
        view.y = py - k * (py - view.y);
        view.scale = scale;
        if (scale === 1) { view.x = 0; view.y = 0; }
        apply(wrap);
    }, {passive: false});

    let drag = null;
    document.addEventListener("mousedown", function (e) {
        const wrap = e.target && e.target.closest && e.target.closest("#lv-img-wrap");
        if (!wrap || e.button !== 0) { return; }
        e.preventDefault();
        drag = {wrap: wrap, x: e.clientX - view.x, y: e.clientY - view.y};
    });
    document.addEventListener("mousemove", function (e) {
        if (!drag) { return; }
        view.x = e.clientX - drag.x;
        view.y = e.clientY - drag.y;
        apply(drag.wrap);
    });
    document.addEventListener("mouseup", function () { drag = null; });
    document.addEventListener("dblclick", function (e) {
        if (e.target && e.target.closest && e.target.closest("#lv-img-wrap")) { reset(); }
    });
})();

/* The same file chosen twice in a row fires no 'change' on a file input whose value
 * still names it: clear the value once the upload component has read the files, so
 * that uploading the same photo again searches again. */
document.addEventListener("change", function (e) {
    const t = e.target;
    if (t && t.type === "file" && t.closest && t.closest("#upload")) {
        setTimeout(function () { t.value = ""; }, 0);
    }
}, true);

/* labeler dashboard: keyboard shortcuts and the large view's zoom / pan.
 *
 * A file in assets/ (served from 'self'), not an inline script, so a
 * Content-Security-Policy without 'unsafe-inline' allows it.
 *
 * Shortcut keys are ignored while the focus is in a text box, and with Alt (with
 * Ctrl / Meta only Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y: undo and redo). A shortcut that
 * needs the server is written as {key, n} into the kb-event store (Dash's
 * set_props); viewer.keyboard_step decides what it does and answers n in
 * the hidden #kb-ack. Keys pressed before that answer wait in a queue and go out one
 * at a time, in order, each after the previous one's answer: a second Enter or an
 * `n` right after Enter acts on what the first one left (the next cluster, an empty
 * label box), never on the page as it was before. The table is KEYS in
 * components.py ('?' shows it).
 *
 * Text boxes: Esc leaves any of them; Enter in a label box submits it (the cluster
 * box: label the cluster and open the next; the others click the button beside
 * them) and leaves the box, so the keys that follow are shortcuts again.
 * The "Who is labelling?" dialog holds the focus while it is shown.
 */
(function () {
    "use strict";
    let counter = 0;      // n of the last kb event sent
    let sentAt = 0;       // when it was sent
    const queue = [];     // shortcuts waiting for the server's answer to the last one
    const ACK_TIMEOUT_MS = 20000;  // a lost answer (server error) does not block the keys for good
    const SERVER_KEYS = {
        n: "next", j: "next", ArrowRight: "next",
        p: "prev", k: "prev", ArrowLeft: "prev",
        Enter: "enter", PageDown: "pgdn", PageUp: "pgup",
    };
    const OWN_SUBMIT = {"name-input": true};  // boxes whose Enter a Dash callback handles itself

    function shown(id) {
        const el = document.getElementById(id);
        return !!el && el.style.display !== "none";
    }

    function click(id) {
        const el = document.getElementById(id);
        if (el) { el.click(); }
    }

    // Inputs that take no typed text: a shortcut pressed while one has the focus (a thumbnail's
    // tick box just clicked) is a shortcut, not text.
    const NOT_TEXT = {checkbox: true, radio: true, button: true, submit: true, reset: true, range: true,
                      color: true, file: true, image: true};

    function typing(t) {
        const tag = (t && t.tagName || "").toLowerCase();
        if (tag === "input") { return !NOT_TEXT[(t.type || "text").toLowerCase()]; }
        return tag === "textarea" || tag === "select" || (t && t.isContentEditable);
    }

    function answered() {
        const el = document.getElementById("kb-ack");
        const ack = el ? Number(el.textContent || 0) : counter;
        return ack >= counter || Date.now() - sentAt > ACK_TIMEOUT_MS;
    }

    function dispatch(item) {
        if (item.click || item.button) {  // by id: the button may have been drawn again meanwhile
            const el = (item.click && document.getElementById(item.click)) || item.button;
            if (el) { el.click(); }
            return;
        }
        if (item.focus) {
            const box = document.getElementById(item.focus);
            if (box && box.offsetParent !== null) { box.focus(); box.select(); }
            return;
        }
        counter += 1;
        sentAt = Date.now();
        window.dash_clientside.set_props("kb-event-store", {data: {key: item.key, n: counter}});
    }

    function pump() {
        while (queue.length && answered()) { dispatch(queue.shift()); }
        if (queue.length) { setTimeout(pump, 40); }
    }

    function later(item) { queue.push(item); pump(); }
    function send(key) { later({key: key}); }

    function toggleHelp(show) {
        const el = document.getElementById("help-overlay");
        if (el) { el.style.display = show ? "flex" : "none"; }
    }

    /* The button an Enter in a label box clicks: the first one after the box in its row. */
    function submitButton(box) {
        const row = box.closest && box.closest(".action-row");
        if (!row) { return null; }
        const buttons = Array.from(row.querySelectorAll("button")).filter(function (b) {
            return !b.classList.contains("dash-input-stepper") &&
                (box.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
        });
        return buttons[0] || null;
    }

    function inTextBox(e) {
        const t = e.target;
        if (e.key === "Escape") { e.preventDefault(); t.blur(); return; }
        if (e.key !== "Enter" || e.isComposing || OWN_SUBMIT[t.id]) { return; }
        if (!(t.closest && t.closest(".label-input"))) { return; }
        if (t.id === "cluster-label-input") {  // label the open cluster and go on to the next
            e.preventDefault();
            t.blur();
            send("enter");
            return;
        }
        const b = submitButton(t);
        if (!b) { return; }
        e.preventDefault();
        t.blur();
        later({click: b.id || null, button: b});
    }

    document.addEventListener("keydown", function (e) {
        if (shown("name-dialog")) { trapInDialog(e); return; }
        if (typing(e.target)) { inTextBox(e); return; }
        if (e.altKey || e.isComposing) { return; }
        const key = e.key;
        const lower = (key || "").toLowerCase();
        if (e.ctrlKey || e.metaKey) {  // Ctrl+Z undo; Ctrl+Shift+Z, Ctrl+Y redo
            if (lower === "z" || (lower === "y" && !e.shiftKey)) {
                e.preventDefault();
                later({click: lower === "z" && !e.shiftKey ? "undo-button" : "redo-button"});
            }
            return;
        }
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
        if (e.repeat && (key === "Enter" || key === "u" || key === "r")) { return; }  // a held key acts once
        const tag = (e.target && e.target.tagName || "").toLowerCase();
        if (key === "u" || key === "r") {
            e.preventDefault();
            later({click: key === "u" ? "undo-button" : "redo-button"});
            return;
        }
        if (key === "l") { e.preventDefault(); later({focus: "cluster-label-input"}); return; }
        if (/^[1-9]$/.test(key)) { e.preventDefault(); send("label:" + key); return; }
        const name = SERVER_KEYS[key];
        if (!name) { return; }
        if (key === "Enter" && (tag === "button" || tag === "a")) { return; }  // the browser clicks it
        e.preventDefault();
        send(name);
    });

    /* -- the name dialog: its box takes the focus, and Tab stays in the dialog -- */
    function dialogItems() {
        const d = document.getElementById("name-dialog");
        return d ? Array.from(d.querySelectorAll("input, button")).filter(function (el) {
            return !el.disabled && el.offsetParent !== null;
        }) : [];
    }

    function trapInDialog(e) {
        if (e.key !== "Tab") { return; }
        const items = dialogItems();
        if (!items.length) { return; }
        e.preventDefault();
        const i = items.indexOf(document.activeElement);
        const next = e.shiftKey ? (i <= 0 ? items.length - 1 : i - 1) : (i + 1) % items.length;
        items[next].focus();
    }

    setInterval(function () {
        if (!shown("name-dialog")) { return; }
        const d = document.getElementById("name-dialog");
        if (!d.contains(document.activeElement)) {
            const box = document.getElementById("name-input");
            if (box) { box.focus(); }
        }
    }, 150);

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

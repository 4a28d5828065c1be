// Keyboard for the review queue and the focus view of one variant.
//
// Every key presses a button or follows a link that is already on the page, so the
// keyboard adds nothing the forms do not do without JavaScript. Keys are ignored
// while typing in a field (Esc leaves it) and when a modifier is held.
(() => {
  "use strict";

  const KEYS_HELP = "keys-help";
  let currentId = null; // data-variant of the selected queue row
  let lastDecidedId = null; // the row whose decision `u` takes back
  let edge = null; // after a page change: select the "first" or "last" row

  const isTyping = (el) =>
    el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
  const focusView = () => document.getElementById("focus");
  const rows = () => Array.from(document.querySelectorAll("#variants .variant"));
  const rowById = (id) => (id ? document.querySelector(`#variants [data-variant="${id}"]`) : null);
  // The selected row; after a history restore the DOM's marking is the truth.
  const currentRow = () =>
    rowById(currentId) || document.querySelector("#variants .variant.is-current");

  function select(row, { scroll = true } = {}) {
    document.querySelectorAll("#variants .variant.is-current").forEach((el) => {
      el.classList.remove("is-current");
      el.removeAttribute("aria-current");
    });
    if (!row) {
      currentId = null;
      return;
    }
    row.classList.add("is-current");
    row.setAttribute("aria-current", "true");
    currentId = row.dataset.variant;
    if (scroll) row.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  // The region the action keys work on: the focus view, or the selected row.
  function region() {
    const focus = focusView();
    if (focus) return focus;
    const row = currentRow();
    if (!row) select(rows()[0]); // the first key press only selects
    return row;
  }

  function move(delta) {
    if (focusView()) {
      const link = document.querySelector(`.focus-nav a[rel="${delta > 0 ? "next" : "prev"}"]`);
      if (link) window.location.assign(link.href);
      return;
    }
    const list = rows();
    if (!list.length) return;
    const at = list.indexOf(currentRow());
    const to = at === -1 ? (delta > 0 ? 0 : list.length - 1) : at + delta;
    if (to >= list.length || to < 0) {
      const link = document.querySelector(`.pager a[rel="${to < 0 ? "prev" : "next"}"]`);
      if (link) {
        edge = to < 0 ? "last" : "first";
        link.click();
      }
      return;
    }
    select(list[to]);
  }

  function submit(form) {
    if (!form) return;
    const button = form.querySelector("button[type=submit], button:not([type])");
    form.requestSubmit(button || undefined);
  }

  function toggleHelp() {
    const dialog = document.getElementById(KEYS_HELP);
    if (!dialog) return;
    if (dialog.open) dialog.close();
    else dialog.showModal();
  }

  function updateSelection() {
    const bar = document.getElementById("bulk");
    if (!bar) return;
    const ticked = document.querySelectorAll('#variants input.select[form="bulk"]:checked').length;
    const label = bar.querySelector("[data-selection]");
    bar.classList.toggle("has-selection", ticked > 0);
    if (label) {
      if (!label.dataset.idle) label.dataset.idle = label.textContent;
      label.textContent = ticked ? `${ticked} selected:` : label.dataset.idle;
    }
  }

  const actions = {
    j: () => move(1),
    k: () => move(-1),
    a: () => {
      const r = region();
      if (r) submit(r.querySelector("form.approve-form"));
    },
    e: () => {
      const r = region();
      const details = r && r.querySelector("details.edit");
      if (!details) return;
      details.open = true;
      const textarea = details.querySelector("textarea");
      textarea.focus();
      textarea.setSelectionRange(textarea.value.length, textarea.value.length);
    },
    r: () => {
      const r = region();
      const reason = r && r.querySelector("form.reject-form select[name=reason]");
      if (reason) reason.focus();
    },
    g: () => {
      const r = region();
      const note = r && r.querySelector("form.regenerate-form input[name=note]");
      if (note) note.focus();
    },
    x: () => {
      const r = region();
      const box = r && r.querySelector("input.select");
      if (!box) return;
      box.checked = !box.checked;
      box.dispatchEvent(new Event("change", { bubbles: true }));
    },
    u: () => {
      const focus = focusView();
      const row = rowById(lastDecidedId);
      const form =
        (focus && focus.querySelector("form.undo-form")) ||
        (row && row.querySelector("form.undo-form")) ||
        document.querySelector("form.last-decision");
      if (!form) return;
      if (row && !focus) select(row);
      submit(form);
    },
    o: () => {
      const row = !focusView() && currentRow();
      const link = row && row.querySelector("a.open");
      if (link) window.location.assign(link.href);
    },
    "?": toggleHelp,
  };
  actions.Enter = actions.o;

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) {
      // Ctrl/Cmd+Enter in the edit box saves and approves.
      const el = event.target;
      if (event.key === "Enter" && el.tagName === "TEXTAREA" && el.form && !el.readOnly) {
        event.preventDefault();
        submit(el.form);
      }
      return;
    }
    if (isTyping(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const dialog = document.getElementById(KEYS_HELP);
    if (dialog && dialog.open && event.key !== "?") return;
    // Enter on a link or button keeps its own meaning.
    if (event.key === "Enter" && event.target.closest && event.target.closest("a, button, summary")) {
      return;
    }
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });

  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-keys-help]")) {
      toggleHelp();
      return;
    }
    const row = event.target.closest("#variants .variant");
    if (row) select(row, { scroll: false });
  });

  document.addEventListener("change", (event) => {
    if (event.target.matches("input.select")) updateSelection();
  });

  // htmx put new content in: a decided row, or the whole queue.
  document.addEventListener("htmx:load", (event) => {
    const swapped = event.detail.elt;
    if (swapped && swapped.id === "queue") {
      const list = rows();
      select(edge === "last" ? list[list.length - 1] : edge === "first" ? list[0] : rowById(currentId) || list[0], {
        scroll: edge !== null,
      });
      edge = null;
      updateSelection();
      return;
    }
    const row = swapped && swapped.matches && swapped.matches("#variants .variant") ? swapped : null;
    if (!row) return;
    const decided = !row.classList.contains("status-in_review");
    const wasCurrent = row.dataset.variant === currentId;
    if (decided && !row.querySelector(".actions > .error")) {
      // Only the latest decision can be undone: drop the older row's Undo button.
      const previous = lastDecidedId && lastDecidedId !== row.dataset.variant ? rowById(lastDecidedId) : null;
      if (previous) previous.querySelectorAll("form.undo-form").forEach((form) => form.remove());
      lastDecidedId = row.dataset.variant;
    }
    if (!wasCurrent) return;
    // A decision moves the selection on, so the next key works on the next variant.
    if (decided && !row.querySelector(".actions > .error")) {
      const list = rows();
      const at = list.indexOf(row);
      select(list[at + 1] || row);
    } else {
      select(row, { scroll: false });
    }
  });

  // Back or forward to a queue page htmx kept: select what the page shows selected.
  document.addEventListener("htmx:historyRestore", () => {
    currentId = null;
    select(currentRow() || rows()[0], { scroll: false });
    updateSelection();
  });

  document.addEventListener("DOMContentLoaded", () => {
    if (!focusView()) select(rows()[0], { scroll: false });
    updateSelection();
  });
})();

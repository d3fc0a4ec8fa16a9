// adstack console behaviour. No inline scripts (the CSP forbids them): everything hangs off data- attributes.
(function () {
  "use strict";

  function on(event, selector, handler) {
    document.addEventListener(event, function (e) {
      var target = e.target.closest ? e.target.closest(selector) : null;
      if (target) handler(e, target);
    });
  }

  // Selects that apply as soon as they change (the language switch, filters).
  on("change", "[data-autosubmit]", function (_e, el) {
    var form = el.form || el.closest("form");
    if (form) form.requestSubmit();
  });

  // Forms that ask before doing something that cannot be undone (delete with its cascade, reject...).
  on("submit", "form[data-confirm]", function (e, form) {
    if (!window.confirm(form.getAttribute("data-confirm"))) e.preventDefault();
  });
  on("click", "button[data-confirm]", function (e, button) {
    if (button.form && button.form.hasAttribute("data-confirm")) return;
    if (!window.confirm(button.getAttribute("data-confirm"))) { e.preventDefault(); e.stopImmediatePropagation(); }
  });

  // "Select all" for batch actions.
  on("change", "[data-check-all]", function (_e, box) {
    var scope = document.querySelectorAll(box.getAttribute("data-check-all"));
    scope.forEach(function (item) { item.checked = box.checked; });
  });

  // Copy a tracking link or postback template.
  on("click", "[data-copy]", function (_e, button) {
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (source && navigator.clipboard) navigator.clipboard.writeText(source.textContent.trim());
  });

  // Toggle an element (e.g. the reject reasons of a review row).
  on("click", "[data-toggle]", function (e, button) {
    e.preventDefault();
    var target = document.querySelector(button.getAttribute("data-toggle"));
    if (target) target.classList.toggle("hidden");
  });

  // Remove an uploaded material from the creative; the live preview follows.
  on("click", "[data-remove-material]", function (_e, button) {
    var item = button.closest(".material");
    if (item) item.remove();
    document.body.dispatchEvent(new CustomEvent("materials-changed", { bubbles: true }));
  });

  // Local preview of chosen image files before they are uploaded.
  on("change", "input[type=file][data-preview]", function (_e, input) {
    var target = document.querySelector(input.getAttribute("data-preview"));
    if (!target) return;
    target.innerHTML = "";
    Array.prototype.forEach.call(input.files || [], function (file) {
      if (!/^image\//.test(file.type)) return;
      var img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = file.name;
      img.style.maxWidth = "100%";
      img.style.display = "block";
      img.style.marginBottom = "8px";
      target.appendChild(img);
    });
  });

  // Charts: the server writes a Chart.js config as JSON in data-chart.
  var palette = ["#f56a00", "#0052d9", "#00a870", "#e37318", "#8e56dd", "#d54941", "#029cd4", "#86909c"];
  function drawCharts(root) {
    if (typeof window.Chart === "undefined") return;
    (root || document).querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas._chart) canvas._chart.destroy();
      var config = JSON.parse(canvas.getAttribute("data-chart"));
      (config.data.datasets || []).forEach(function (ds, i) {
        var many = config.type === "doughnut" || config.type === "pie";
        ds.backgroundColor = ds.backgroundColor || (many ? palette : palette[i % palette.length]);
        ds.borderColor = ds.borderColor || (many ? "#fff" : palette[i % palette.length]);
        if (config.type === "line") { ds.tension = 0.3; ds.pointRadius = 2; ds.fill = false; }
      });
      config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { position: "bottom" } } }, config.options || {});
      canvas._chart = new window.Chart(canvas, config);
    });
  }
  // Source: https://htmx.org/quirks/ "By Default 4xx & 5xx Responses Do Not Swap": htmx 2 leaves 4xx answers alone.
  // A refused quick edit or inline form answers with its own fragment and messages: swap it in place. A whole
  // error page is not swapped into a row; its message is shown beside the element that asked.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var status = e.detail.xhr.status;
    if (status < 400 || status >= 500) return;
    var body = e.detail.xhr.responseText || "";
    if (!/<html[\s>]/i.test(body)) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
      return;
    }
    var page = new DOMParser().parseFromString(body, "text/html");
    var card = page.querySelector("[data-error-status]");
    var text = card ? card.querySelector("p") : null;
    var note = document.createElement("div");
    note.className = "notice bad";
    note.setAttribute("role", "alert");
    note.textContent = text ? text.textContent.trim() : String(status);
    var anchor = e.detail.target && e.detail.target.closest("tr") ? e.detail.target.closest("table") : e.detail.target;
    if (anchor && anchor.parentNode) anchor.parentNode.insertBefore(note, anchor);
    e.detail.shouldSwap = false;
    e.detail.isError = false;
  });

  // A ⚠ button opens or closes the reason it controls; Escape closes it and gives the focus back to the button.
  function setPopover(button, open) {
    var panel = document.getElementById(button.getAttribute("aria-controls"));
    if (!panel) return;
    panel.hidden = !open;
    button.setAttribute("aria-expanded", open ? "true" : "false");
  }
  on("click", "[data-popover-toggle]", function (_e, button) {
    setPopover(button, button.getAttribute("aria-expanded") !== "true");
  });
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    document.querySelectorAll('[data-popover-toggle][aria-expanded="true"]').forEach(function (button) {
      setPopover(button, false);
      if (button.parentNode && button.parentNode.contains(document.activeElement)) button.focus();
    });
  });

  // The sidebar folds into a menu button on narrow screens.
  on("click", "[data-nav-toggle]", function (_e, button) {
    var shell = button.closest(".shell");
    if (!shell) return;
    var open = shell.classList.toggle("nav-open");
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });

  // Every table scrolls inside its own box, with its name column kept in view: the column marked data-sticky,
  // else the first whose cells link to the row's page.
  function tidyTables(root) {
    (root || document).querySelectorAll("table").forEach(function (table) {
      if (table.classList.contains("diff") || table.closest(".preview")) return;
      var wrap = table.parentElement;
      if (!wrap.classList.contains("table-wrap")) {
        wrap = document.createElement("div");
        wrap.className = "table-wrap";
        table.parentNode.insertBefore(wrap, table);
        wrap.appendChild(table);
      }
      // A box that scrolls sideways must be reachable by keyboard to be scrolled without a mouse.
      if (!wrap.hasAttribute("tabindex")) wrap.setAttribute("tabindex", "0");
      if (table.dataset.stickyDone) return;
      table.dataset.stickyDone = "1";
      var head = table.tHead && table.tHead.rows[0];
      if (!head) return;
      var index = -1;
      Array.prototype.forEach.call(head.cells, function (cell, i) {
        if (index < 0 && cell.hasAttribute("data-sticky")) index = i;
      });
      var body = table.tBodies[0] && table.tBodies[0].rows[0];
      var pick = function (test) {
        Array.prototype.some.call(body.cells, function (cell, i) {
          if (test(cell)) { index = i; return true; }
          return false;
        });
      };
      if (index < 0 && body) pick(function (cell) { return cell.querySelector("[data-name]"); });
      if (index < 0 && body) pick(function (cell) { return cell.querySelector("a[href]") && !cell.querySelector("input"); });
      if (index < 0) return;
      Array.prototype.forEach.call(table.rows, function (row) {
        if (row.cells.length === head.cells.length && row.cells[index]) row.cells[index].classList.add("sticky-col");
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); tidyTables(document); });
  document.addEventListener("htmx:afterSettle", function (e) { drawCharts(e.target); tidyTables(e.target); });
})();

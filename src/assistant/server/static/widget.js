/*
 * The assistant's embeddable chat widget. One script tag adds it to any page:
 *
 *   <script src="http://127.0.0.1:7860/widget.js" data-title="Ask the brochure"
 *           data-color="#1f5fbf" data-position="right" data-greeting="Hello!" defer></script>
 *
 * - The API base URL is the script's own origin (data-api overrides it).
 * - data-collection="NAME" answers from that collection only (default: `default`); an unknown
 *   collection, or one this site may not use, shows the server's error.
 * - Everything lives in a shadow DOM: the host page's CSS cannot reach it.
 * - Answers stream from POST /api/chat (Server-Sent Events read with fetch + ReadableStream).
 * - The conversation is kept in sessionStorage for the browser session.
 * - Each citation links to its passage in the document view (a new tab).
 * - Safety: no text from a question, an answer or a document is ever parsed as HTML. The DOM
 *   is built with createElement/textContent; the Markdown subset (paragraphs, **bold**, lists,
 *   [n] citation markers) is parsed here into nodes, never by an HTML parser.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) {
    var candidates = document.querySelectorAll('script[src*="widget.js"]');
    script = candidates[candidates.length - 1];
  }
  if (!script || !script.src) return;

  var src = new URL(script.src, window.location.href);
  var data = script.dataset || {};
  var API = (data.api || src.origin + src.pathname.replace(/\/widget\.js$/, "")).replace(/\/$/, "");
  var COLLECTION = data.collection || "";
  // One widget per assistant and collection; each keeps its own conversation.
  var KEY = "assistant-widget:" + API + (COLLECTION ? "#" + COLLECTION : "");
  if (window.__assistantWidgets && window.__assistantWidgets[KEY]) return;
  window.__assistantWidgets = window.__assistantWidgets || {};
  window.__assistantWidgets[KEY] = true;

  var TITLE = data.title || "Ask the documents";
  var GREETING = data.greeting ||
    "Hello! Ask me about the documents. Every answer cites the passages it used.";
  var POSITION = data.position === "left" ? "left" : "right";
  var COLOR = "#1f5fbf";
  if (data.color && window.CSS && CSS.supports && CSS.supports("color", data.color)) {
    COLOR = data.color;
  }
  var API_KEY = data.apiKey || "";
  var GENERATOR = data.generator || "";
  var MAX_TURNS = 40;

  // -- icons (inline SVG, built as nodes) ---------------------------------------------------
  var SVG_NS = "http://www.w3.org/2000/svg";
  var ICONS = {
    chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
    close: "M6 6l12 12M18 6L6 18",
    send: "M3 11l18-8-8 18-2-8-8-2z",
    reset: "M4 12a8 8 0 1 0 2.3-5.7M4 4v4h4"
  };

  function icon(name) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "22");
    svg.setAttribute("height", "22");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICONS[name]);
    path.setAttribute("fill", name === "chat" || name === "send" ? "currentColor" : "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-linecap", "round");
    path.setAttribute("stroke-linejoin", "round");
    svg.appendChild(path);
    return svg;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // -- state ---------------------------------------------------------------------------------
  var state = { open: false, messages: [] };
  try {
    var saved = JSON.parse(window.sessionStorage.getItem(KEY) || "null");
    if (saved && Array.isArray(saved.messages)) {
      state.messages = saved.messages.filter(function (m) {
        return m && (m.role === "user" || m.role === "assistant") && typeof m.content === "string";
      });
      state.open = !!saved.open;
    }
  } catch (e) { /* storage unavailable or corrupt: start afresh */ }
  var busy = false;

  function save() {
    try {
      var done = state.messages.filter(function (m) { return !m.pending; });
      window.sessionStorage.setItem(KEY, JSON.stringify({ open: state.open, messages: done }));
    } catch (e) { /* private mode or quota: the conversation just isn't kept */ }
  }

  // -- safe Markdown -------------------------------------------------------------------------
  var INLINE = /\*\*([^*\n]+)\*\*|\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;

  function renderInline(text, parent, onCite) {
    var last = 0;
    var match;
    INLINE.lastIndex = 0;
    while ((match = INLINE.exec(text)) !== null) {
      if (match.index > last) parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      if (match[1] !== undefined) {
        parent.appendChild(el("strong", null, match[1]));
      } else {
        match[2].split(",").forEach(function (n) {
          var id = n.trim();
          // An inline element (not a button) so a line never breaks between "[1]" and ".".
          var cite = el("span", "cite", "[" + id + "]");
          cite.setAttribute("role", "button");
          cite.setAttribute("tabindex", "0");
          cite.setAttribute("aria-label", "Source " + id);
          cite.addEventListener("click", function () { onCite(id); });
          cite.addEventListener("keydown", function (e) {
            if (e.key === "Enter" || e.key === " ") { e.preventDefault(); onCite(id); }
          });
          parent.appendChild(cite);
        });
      }
      last = INLINE.lastIndex;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function renderMarkdown(text, container, onCite) {
    var lines = String(text).replace(/\r\n?/g, "\n").split("\n");
    var para = null;
    var list = null;
    function endBlocks() { para = null; list = null; }
    lines.forEach(function (line) {
      var bullet = /^\s*[-*\u2022]\s+(.*)$/.exec(line);
      var numbered = /^\s*(\d{1,3})[.)]\s+(.*)$/.exec(line);
      var heading = /^\s*#{1,6}\s+(.*)$/.exec(line);
      if (!line.trim()) { endBlocks(); return; }
      if (bullet || numbered) {
        var tag = bullet ? "ul" : "ol";
        if (!list || list.tagName.toLowerCase() !== tag) {
          list = el(tag);
          if (numbered && numbered[1] !== "1") list.setAttribute("start", numbered[1]);
          container.appendChild(list);
        }
        para = null;
        var item = el("li");
        renderInline(bullet ? bullet[1] : numbered[2], item, onCite);
        list.appendChild(item);
        return;
      }
      list = null;
      if (heading) {
        var h = el("p", "heading");
        var strong = el("strong");
        renderInline(heading[1], strong, onCite);
        h.appendChild(strong);
        container.appendChild(h);
        para = null;
        return;
      }
      if (para) {
        para.appendChild(el("br"));
      } else {
        para = el("p");
        container.appendChild(para);
      }
      renderInline(line, para, onCite);
    });
  }

  // -- the DOM -------------------------------------------------------------------------------
  var CSS_TEXT = [
    ":host { all: initial; }",
    "* { box-sizing: border-box; }",
    ".root { --c: " + COLOR + "; font: 15px/1.45 system-ui, 'DejaVu Sans', sans-serif; color: #1b1f24; }",
    ".launcher { position: fixed; bottom: 20px; " + POSITION + ": 20px; z-index: 2147483000;",
    "  width: 56px; height: 56px; border-radius: 50%; border: none; cursor: pointer;",
    "  background: var(--c); color: #fff; box-shadow: 0 4px 14px rgba(0,0,0,.25);",
    "  display: flex; align-items: center; justify-content: center; }",
    ".launcher:focus-visible, button:focus-visible, textarea:focus-visible { outline: 3px solid #f0b400; outline-offset: 2px; }",
    ".panel { position: fixed; bottom: 88px; " + POSITION + ": 20px; z-index: 2147483001;",
    "  width: 380px; height: min(620px, calc(100vh - 110px)); display: flex; flex-direction: column;",
    "  background: #fff; border-radius: 14px; overflow: hidden;",
    "  box-shadow: 0 10px 40px rgba(0,0,0,.28); border: 1px solid #d5d9de; }",
    ".panel[hidden] { display: none; }",
    "header { display: flex; align-items: center; gap: 6px; padding: 10px 10px 10px 16px;",
    "  background: var(--c); color: #fff; }",
    "header .title { flex: 1; font-weight: 600; font-size: 16px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }",
    ".icon { background: transparent; border: none; color: inherit; cursor: pointer; padding: 6px;",
    "  border-radius: 8px; display: flex; }",
    ".icon:hover { background: rgba(255,255,255,.18); }",
    ".log { flex: 1; overflow-y: auto; padding: 14px; display: flex; flex-direction: column; gap: 10px; background: #f6f7f9; }",
    ".msg { max-width: 88%; padding: 9px 12px; border-radius: 12px; word-wrap: break-word; overflow-wrap: anywhere; }",
    ".msg p { margin: 0 0 6px; } .msg p:last-child { margin-bottom: 0; }",
    ".msg ul, .msg ol { margin: 4px 0 6px; padding-left: 20px; }",
    ".user { align-self: flex-end; background: var(--c); color: #fff; white-space: pre-wrap; }",
    ".bot { align-self: flex-start; background: #fff; border: 1px solid #e1e4e8; }",
    ".bot.refused { border-color: #e0b252; background: #fffaf0; }",
    ".badge { display: inline-block; margin: 4px 0 0; padding: 1px 6px; border-radius: 8px; font-size: 11px; background: #eef2f7; color: #334; cursor: help; }",
    ".badge.refused { background: #fff1d6; }",
    ".error { align-self: flex-start; background: #fdecea; border: 1px solid #f3b8b0; color: #8a1c12; }",
    ".pending .body:empty::after { content: '\u2026'; color: #6a737d; }",
    ".cite { font-size: 12px; font-weight: 600; color: var(--c); padding: 0 1px; cursor: pointer;",
    "  vertical-align: super; line-height: 1; }",
    ".cite:focus-visible { outline: 2px solid #f0b400; }",
    ".sources { margin-top: 8px; border-top: 1px solid #e1e4e8; padding-top: 6px; font-size: 13px; }",
    ".sources .label { font-weight: 600; color: #57606a; margin: 0 0 4px; }",
    "details { margin: 4px 0; } summary { cursor: pointer; color: #24292f; }",
    "summary .n { font-weight: 700; color: var(--c); margin-right: 4px; }",
    "blockquote { margin: 4px 0 2px; padding: 4px 8px; border-left: 3px solid var(--c); background: #f6f8fa;",
    "  color: #24292f; white-space: pre-wrap; }",
    ".doc { color: #6a737d; font-size: 12px; }",
    ".doc a.open { color: var(--c); font-weight: 600; }",
    "form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e1e4e8; background: #fff; }",
    "textarea { flex: 1; resize: none; font: inherit; padding: 8px 10px; border: 1px solid #c9ced4;",
    "  border-radius: 10px; max-height: 120px; min-height: 40px; color: #1b1f24; background: #fff; }",
    ".send { background: var(--c); color: #fff; border: none; border-radius: 10px; width: 44px; cursor: pointer;",
    "  display: flex; align-items: center; justify-content: center; }",
    ".send:disabled { opacity: .5; cursor: default; }",
    "@media (max-width: 600px) { .panel { inset: 0; width: 100%; height: 100%; border-radius: 0; border: none; }",
    "  .panel:not([hidden]) ~ .launcher { display: none; } }"
  ].join("\n");

  var host = el("div");
  host.setAttribute("data-assistant-widget", "");
  var root = host.attachShadow({ mode: "open" });
  var style = el("style", null, CSS_TEXT);
  var wrap = el("div", "root");

  var panel = el("section", "panel");
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", TITLE);
  panel.hidden = true;

  var header = el("header");
  header.appendChild(el("span", "title", TITLE));
  var resetBtn = el("button", "icon reset");
  resetBtn.type = "button";
  resetBtn.title = "New conversation";
  resetBtn.setAttribute("aria-label", "New conversation");
  resetBtn.appendChild(icon("reset"));
  var closeBtn = el("button", "icon close");
  closeBtn.type = "button";
  closeBtn.title = "Close";
  closeBtn.setAttribute("aria-label", "Close chat");
  closeBtn.appendChild(icon("close"));
  header.appendChild(resetBtn);
  header.appendChild(closeBtn);

  var log = el("div", "log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");

  var form = el("form");
  var input = el("textarea");
  input.rows = 1;
  input.placeholder = "Ask a question\u2026";
  input.setAttribute("aria-label", "Your question");
  input.maxLength = 2000;
  var sendBtn = el("button", "send");
  sendBtn.type = "submit";
  sendBtn.setAttribute("aria-label", "Send");
  sendBtn.appendChild(icon("send"));
  form.appendChild(input);
  form.appendChild(sendBtn);

  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(form);

  var launcher = el("button", "launcher");
  launcher.type = "button";
  launcher.setAttribute("aria-label", "Open chat: " + TITLE);
  launcher.appendChild(icon("chat"));

  wrap.appendChild(panel);
  wrap.appendChild(launcher);
  root.appendChild(style);
  root.appendChild(wrap);

  // -- rendering -----------------------------------------------------------------------------
  // What the pipeline did to ground an answer; the tooltip says what the badge means.
  var GROUNDING = {
    quoted: ["Quoted from the documents", "The answer is made of verbatim sentences from the documents."],
    checked: ["Checked against its sources", "Written by the language model; every figure and name it states was found in the sentences it cites."],
    refused: ["Not in the documents", "No passage of the documents answers this question."]
  };

  // A citation's `url` is relative to the assistant's base URL; only http(s) links to the
  // assistant itself are made.
  function sourceLink(url) {
    if (typeof url !== "string" || !url) return null;
    try {
      var u = new URL(url, API + "/");
      if (u.origin !== new URL(API + "/").origin || !/^https?:$/.test(u.protocol)) return null;
      return u.href;
    } catch (e) { return null; }
  }

  function renderSources(msg, bubble) {
    var box = el("div", "sources");
    var cites = msg.citations || [];
    var label = GROUNDING[msg.grounding];
    if (label) {
      var badge = el("span", "badge " + msg.grounding, label[0]);
      badge.setAttribute("title", label[1]);
      badge.setAttribute("data-grounding", msg.grounding);
      bubble.appendChild(badge);
    }
    if (cites.length) {
      box.appendChild(el("p", "label", "Sources"));
      cites.forEach(function (c) {
        var d = el("details");
        d.setAttribute("data-cite", String(c.id));
        var s = el("summary");
        s.appendChild(el("span", "n", "[" + c.id + "]"));
        s.appendChild(document.createTextNode((c.title || c.document || "") +
          (c.section ? " \u2014 " + c.section : "")));
        d.appendChild(s);
        d.appendChild(el("blockquote", null, c.text || ""));
        var where = el("div", "doc", (c.document || "") + (c.page ? " \u00b7 page " + c.page : ""));
        var href = sourceLink(c.url);
        if (href) {
          var a = el("a", "open", "Open in the document");
          a.href = href;
          a.target = "_blank";
          a.rel = "noopener";
          a.setAttribute("aria-label", "Open source " + c.id + " in the document (new tab)");
          where.appendChild(document.createTextNode(" \u00b7 "));
          where.appendChild(a);
        }
        d.appendChild(where);
        box.appendChild(d);
      });
    } else if (msg.refused && msg.suggestions && msg.suggestions.length) {
      box.appendChild(el("p", "label", "Closest sections"));
      var ul = el("ul");
      msg.suggestions.forEach(function (s) { ul.appendChild(el("li", null, s)); });
      box.appendChild(ul);
    } else {
      return;
    }
    bubble.appendChild(box);
  }

  function renderMessage(msg) {
    if (msg.role === "user") return el("div", "msg user", msg.content);
    var bubble = el("div", "msg bot");
    if (msg.refused) bubble.classList.add("refused");
    if (msg.pending) bubble.classList.add("pending");
    if (msg.error && !msg.content) {
      bubble.className = "msg error";
      bubble.setAttribute("role", "alert");
      bubble.textContent = msg.error;
      return bubble;
    }
    var body = el("div", "body");
    renderMarkdown(msg.content || "", body, function (id) {
      var d = bubble.querySelector('details[data-cite="' + id.replace(/\D/g, "") + '"]');
      if (d) { d.open = true; d.scrollIntoView({ block: "nearest" }); }
    });
    bubble.appendChild(body);
    if (msg.error) bubble.appendChild(el("p", "doc", msg.error));
    if (!msg.pending) renderSources(msg, bubble);
    return bubble;
  }

  function render() {
    while (log.firstChild) log.removeChild(log.firstChild);
    log.appendChild(renderMessage({ role: "assistant", content: GREETING }));
    state.messages.forEach(function (m) { log.appendChild(renderMessage(m)); });
    log.scrollTop = log.scrollHeight;
  }

  function updateLast() {
    var last = log.lastChild;
    var msg = state.messages[state.messages.length - 1];
    if (!last || !msg) return render();
    log.replaceChild(renderMessage(msg), last);
    log.scrollTop = log.scrollHeight;
  }

  function setOpen(open) {
    state.open = open;
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    launcher.setAttribute("aria-label", (open ? "Close chat: " : "Open chat: ") + TITLE);
    save();
    if (open) { render(); input.focus(); }
  }

  // -- talking to the API --------------------------------------------------------------------
  function history() {
    var turns = state.messages.filter(function (m) { return !m.failed && !m.pending; })
      .map(function (m) { return { role: m.role, content: m.content }; });
    return turns.slice(-(MAX_TURNS + 1));
  }

  function parseEvent(block) {
    var event = "message";
    var lines = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) event = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) lines.push(line.slice(5).replace(/^ /, ""));
    });
    if (!lines.length) return null;
    try { return { event: event, data: JSON.parse(lines.join("\n")) }; } catch (e) { return null; }
  }

  function apply(reply, ev) {
    if (ev.event === "delta") {
      reply.content += ev.data.text || "";
    } else if (ev.event === "final") {
      reply.content = ev.data.answer || reply.content;
      reply.citations = ev.data.citations || [];
      reply.refused = !!ev.data.refused;
      reply.suggestions = ev.data.suggestions || [];
      reply.grounding = ev.data.grounding || "";
    } else if (ev.event === "error") {
      reply.error = ev.data.error || "The assistant failed to answer.";
    }
  }

  async function ask(question) {
    busy = true;
    sendBtn.disabled = true;
    var mine = { role: "user", content: question };
    state.messages.push(mine);
    var turns = history();
    var reply = { role: "assistant", content: "", pending: true };
    state.messages.push(reply);
    render();
    var headers = { "Content-Type": "application/json", "Accept": "text/event-stream" };
    if (API_KEY) headers.Authorization = "Bearer " + API_KEY;
    var body = { messages: turns, stream: true };
    if (GENERATOR) body.generator = GENERATOR;
    if (COLLECTION) body.collection = COLLECTION;
    try {
      var resp = await fetch(API + "/api/chat", {
        method: "POST", headers: headers, body: JSON.stringify(body), credentials: "omit"
      });
      if (!resp.ok) {
        var message = "The assistant answered with an error (HTTP " + resp.status + ").";
        try { message = (await resp.json()).error || message; } catch (e) { /* not JSON */ }
        reply.error = message;
      } else {
        var reader = resp.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        for (;;) {
          var chunk = await reader.read();
          if (chunk.done) break;
          buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
          var cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            var ev = parseEvent(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
            if (ev) { apply(reply, ev); updateLast(); }
          }
        }
        var tail = parseEvent(buffer);
        if (tail) apply(reply, tail);
        if (!reply.content && !reply.error) reply.error = "The answer was cut off. Try again.";
      }
    } catch (e) {
      reply.error = "Could not reach the assistant. Check the connection and try again.";
    }
    reply.pending = false;
    if (reply.error && !reply.content) { reply.failed = true; mine.failed = true; }
    busy = false;
    sendBtn.disabled = false;
    save();
    render();
    input.focus();
  }

  // -- events --------------------------------------------------------------------------------
  launcher.addEventListener("click", function () { setOpen(!state.open); });
  closeBtn.addEventListener("click", function () { setOpen(false); launcher.focus(); });
  resetBtn.addEventListener("click", function () {
    if (busy) return;
    state.messages = [];
    save();
    render();
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var q = input.value.trim();
    if (!q || busy) return;
    input.value = "";
    ask(q);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit"));
    }
  });
  panel.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { setOpen(false); launcher.focus(); }
  });

  function mount() {
    document.body.appendChild(host);
    setOpen(state.open);
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();

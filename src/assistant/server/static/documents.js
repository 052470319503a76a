/*
 * The chat page's Documents tab (Gradio runs this as the gr.HTML component's js_on_load, with
 * `element` its root). A small client of /api/documents: the operator types the admin key,
 * which stays in this closure (never stored, never sent by the server) and goes with every
 * request as `Authorization: Bearer`; the server checks it each time.
 * No server or document text is parsed as HTML: nodes are built with textContent.
 */
(function (root) {
  "use strict";

  var API = new URL("api/documents", window.location.href).href.split("?")[0];
  var key = "";
  var busy = false;

  function q(selector) { return root.querySelector(selector); }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  var unlockForm = q(".unlock");
  var keyInput = q("input[name=key]");
  var unlockStatus = q(".unlock-status");
  var manage = q(".manage");
  var select = q("select[name=collection]");
  var newCollection = q("input[name=newcollection]");
  var uploadForm = q(".upload");
  var fileInput = q("input[type=file]");
  var progressBox = q(".progress");
  var progressBar = q("progress");
  var progressText = q(".progress-text");
  var results = q(".results");
  var manageStatus = q(".manage-status");
  var tbody = q("table.list tbody");
  var wanted = new URLSearchParams(window.location.search).get("collection") || "default";

  function collection() {
    return (newCollection.value || "").trim() || select.value || "default";
  }

  function request(method, url, body) {
    return fetch(url, {
      method: method,
      headers: { "Authorization": "Bearer " + key },
      body: body || undefined,
      credentials: "same-origin"
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        return { status: resp.status, data: data };
      });
    });
  }

  function errorText(r) {
    var e = r.data && r.data.error;
    return (typeof e === "string" && e) || ("The server answered HTTP " + r.status + ".");
  }

  function listUrl(name) {
    return API + "?collection=" + encodeURIComponent(name);
  }

  function renderCollections(names, current) {
    while (select.firstChild) select.removeChild(select.firstChild);
    names.forEach(function (n) {
      var opt = el("option", null, n);
      opt.value = n;
      if (n === current) opt.selected = true;
      select.appendChild(opt);
    });
  }

  function renderList(documents) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    if (!documents.length) {
      var row = el("tr");
      var cell = el("td", "note", "No documents in this collection yet.");
      cell.colSpan = 6;
      row.appendChild(cell);
      tbody.appendChild(row);
      return;
    }
    documents.forEach(function (d) {
      var row = el("tr");
      row.setAttribute("data-document", d.id);
      row.appendChild(el("td", "title", d.title));
      row.appendChild(el("td", null, d.id));
      row.appendChild(el("td", null, d.type + (d.pages ? " (" + d.pages + " pages)" : "")));
      row.appendChild(el("td", "num", d.chunks === null || d.chunks === undefined ? "" : d.chunks));
      row.appendChild(el("td", null, d.ingested ? d.ingested.replace("T", " ").replace("Z", " UTC") : ""));
      var action = el("td");
      if (d.removable) {
        var button = el("button", "remove", "Remove");
        button.type = "button";
        button.setAttribute("aria-label", "Remove " + d.id);
        button.addEventListener("click", function () { remove(d.id); });
        action.appendChild(button);
      } else {
        action.appendChild(el("span", "note", d.source === "corpus" ? "corpus folder" : "ingested by the CLI"));
      }
      row.appendChild(action);
      tbody.appendChild(row);
    });
  }

  function refresh(name) {
    return request("GET", listUrl(name)).then(function (r) {
      if (r.status !== 200) {
        manageStatus.textContent = errorText(r);
        if (r.status === 401 || r.status === 429) lock(errorText(r));
        return false;
      }
      manageStatus.textContent = "";
      renderCollections(r.data.collections || [], r.data.collection);
      renderList(r.data.documents || []);
      return true;
    });
  }

  function lock(message) {
    key = "";
    manage.hidden = true;
    unlockForm.hidden = false;
    unlockStatus.textContent = message || "";
  }

  unlockForm.addEventListener("submit", function (e) {
    e.preventDefault();
    key = keyInput.value.trim();
    keyInput.value = "";
    if (!key) return;
    unlockStatus.textContent = "";
    request("GET", listUrl(wanted)).then(function (r) {
      if (r.status === 404 && wanted !== "default" && key) {
        wanted = "default";  // the page's collection does not exist (yet): start at default
        return request("GET", listUrl(wanted));
      }
      return r;
    }).then(function (r) {
      if (r.status !== 200) {
        lock(r.status === 401 ? "That key is not right." : errorText(r));
        return;
      }
      unlockForm.hidden = true;
      manage.hidden = false;
      renderCollections(r.data.collections || [], r.data.collection);
      renderList(r.data.documents || []);
    }).catch(function () { lock("Could not reach the server."); });
  });

  q(".lock").addEventListener("click", function () { lock(""); });

  select.addEventListener("change", function () {
    newCollection.value = "";
    refresh(select.value);
  });

  function showProgress(fraction, text) {
    progressBox.hidden = false;
    if (fraction === null) progressBar.removeAttribute("value");
    else progressBar.value = Math.round(fraction * 100);
    progressText.textContent = text;
  }

  function watchIngest(name) {
    // While the server ingests, its listing says how far the embedding has got.
    return setInterval(function () {
      request("GET", listUrl(name)).then(function (r) {
        var p = r.status === 200 && r.data.ingest;
        if (!p || !busy) return;
        if (p.phase === "embedding" && p.total) {
          showProgress(p.done / p.total, "Indexing: " + p.done + " of " + p.total + " passages and sentences embedded");
        } else {
          showProgress(null, p.phase === "checking" ? "Checking the files…" : "Reading the files…");
        }
      }).catch(function () { /* the upload's own answer says what happened */ });
    }, 1000);
  }

  function showResults(files) {
    while (results.firstChild) results.removeChild(results.firstChild);
    (files || []).forEach(function (f) {
      var ok = f.status === "added" || f.status === "updated" || f.status === "unchanged";
      var item = el("li", ok ? "ok" : "bad");
      item.setAttribute("data-status", f.status);
      item.textContent = (f.file || "(no name)") + ": " + f.status +
        (f.document && f.document !== f.file ? " as " + f.document : "") +
        (f.error ? " \u2014 " + f.error : "");
      results.appendChild(item);
    });
  }

  uploadForm.addEventListener("submit", function (e) {
    e.preventDefault();
    if (busy || !fileInput.files.length) return;
    var name = collection();
    var isNew = (newCollection.value || "").trim() !== "";
    var data = new FormData();
    Array.prototype.forEach.call(fileInput.files, function (f) { data.append("files", f, f.name); });
    data.append("collection", name);
    if (isNew) data.append("create", "true");
    busy = true;
    uploadForm.querySelector("button").disabled = true;
    manageStatus.textContent = "";
    showResults([]);
    showProgress(0, "Uploading…");
    var timer = null;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", API);
    xhr.setRequestHeader("Authorization", "Bearer " + key);
    xhr.upload.onprogress = function (ev) {
      if (ev.lengthComputable) showProgress(ev.loaded / ev.total, "Uploading: " + Math.round(100 * ev.loaded / ev.total) + "%");
    };
    xhr.upload.onload = function () {
      showProgress(null, "Checking and indexing…");
      timer = watchIngest(name);
    };
    function done() {
      busy = false;
      if (timer) clearInterval(timer);
      uploadForm.querySelector("button").disabled = false;
      progressBox.hidden = true;
    }
    xhr.onload = function () {
      done();
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { /* not JSON */ }
      if (body.files) {
        showResults(body.files);
        fileInput.value = "";
        newCollection.value = "";
        refresh(name);
      } else {
        manageStatus.textContent = (typeof body.error === "string" && body.error) ||
          ("The upload failed (HTTP " + xhr.status + ").");
        if (xhr.status === 401 || xhr.status === 429) lock(manageStatus.textContent);
      }
    };
    xhr.onerror = function () {
      done();
      manageStatus.textContent = "The upload did not reach the server.";
    };
    xhr.send(data);
  });

  function remove(id) {
    if (busy) return;
    if (!window.confirm("Remove " + id + " from the collection " + select.value + "? Its passages leave the index.")) return;
    busy = true;
    var name = select.value;
    showProgress(null, "Removing " + id + "…");
    request("DELETE", API + "/" + id.split("/").map(encodeURIComponent).join("/") +
            "?collection=" + encodeURIComponent(name)).then(function (r) {
      busy = false;
      progressBox.hidden = true;
      if (r.status !== 200) {
        manageStatus.textContent = errorText(r);
        if (r.status === 401 || r.status === 429) lock(errorText(r));
        return;
      }
      showResults([]);
      manageStatus.textContent = "";
      refresh(name);
    }).catch(function () {
      busy = false;
      progressBox.hidden = true;
      manageStatus.textContent = "Could not reach the server.";
    });
  }
})(element);

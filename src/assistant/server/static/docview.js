/*
 * The document view (/docs/...): bring the cited passage into view when the link's #cite
 * fragment was lost on the way (e.g. after the API key form). Nothing else: the page's text
 * is rendered by the server, escaped.
 */
(function () {
  "use strict";
  var cite = document.getElementById("cite");
  if (cite && window.location.hash !== "#cite") cite.scrollIntoView({ block: "center" });
})();

// The live stream of an open page: each look the analysis worker publishes (server-sent
// events from the estimates topic), and each status change the controller announces (from
// the experiment-events topic), makes htmx fetch the page's live parts again: the page's
// own template over the API's document. No other script.

// A 503 (the broker or Redis not answering) carries the console's one
// sentence, drawn by the template of the part that asked (an act's reply, the Health
// section): it is drawn as a 4xx is, where the response holds the part it replaces; a page
// that holds none (a live part's refetch) leaves the part as it was.
document.body.addEventListener("htmx:beforeSwap", function (e) {
  var xhr = e.detail.xhr, target = e.detail.target;
  if (xhr.status === 503 && target && target.id &&
      xhr.responseText.indexOf('id="' + target.id + '"') >= 0) {
    e.detail.shouldSwap = true;
    e.detail.isError = false;
  }
});
document.querySelectorAll("[data-live]").forEach(function (el) {
  var source = new EventSource(el.dataset.live);
  source.addEventListener("look", function (e) {
    var look = JSON.parse(e.data);
    el.textContent = "new look" + (look.experiment ? " of " + look.experiment : "") +
      " as of " + look.as_of;
    htmx.trigger(document.body, "look");
  });
  source.addEventListener("status", function (e) {
    var change = JSON.parse(e.data);
    el.textContent = change.experiment + " is " + change.state + (change.frozen ? " (frozen)" : "");
    htmx.trigger(document.body, "status");
  });
});

// The live stream of an open page: each look the analysis worker publishes (server-sent
// events from the estimates topic), and each status change the controller announces (from
// the experiment-events topic), makes htmx fetch the page's live parts again: the page's
// own template over the API's document. No other script.
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

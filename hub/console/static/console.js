// The console's only script, loaded as a module (no inline script: the CSP forbids it).
// It marks the page as JavaScript-enabled, as GOV.UK Frontend's own template would inline,
// then starts every GOV.UK Frontend component; every page works without it.
import { initAll } from "./govuk/govuk-frontend.min.js";

document.body.classList.add("js-enabled");
if ("noModule" in HTMLScriptElement.prototype) {
  document.body.classList.add("govuk-frontend-supported");
}
initAll();

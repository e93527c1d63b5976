// Dashboard settings for wherever these files are served from.
// On a static host (COS behind the CDN), set apiBase to the API's URL, e.g.
//   apiBase: "https://fleet.example.com"
// and set BOOTFLEET_CORS_ORIGIN on the API to this page's origin.
// Left empty, the dashboard calls the origin it was loaded from (bootfleet serve, nginx).
// The API field on the sign-in form overrides it (kept in localStorage); a link's ?api= only
// fills that field in: it is used once the operator signs in to it.
window.BOOTFLEET_DASHBOARD = {
  apiBase: "",
  pollMs: 2000, // how often to ask status for new events
  refreshMs: 15000, // how often to re-read everything (stuck nodes, last seen)
};

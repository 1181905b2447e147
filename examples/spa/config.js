// Where the example SPA finds Hecate and the sample downstream service. Edit for your setup, or
// let serve.py write it (`python serve.py --hecate URL --downstream URL`). The SPA's own origin
// must be in Hecate's CORS_ORIGINS (its APP_URL's origin is, by default).
//
// Deliberately not read from the page's query string: a link that pointed the SPA at another
// "Hecate" would make it post the user's password there.
window.HECATE_CONFIG = {
  hecateUrl: "http://localhost:8080",
  downstreamUrl: "http://localhost:8000",
};

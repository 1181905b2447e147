// The example SPA: everything a single-page application needs to use Hecate, in plain JavaScript.
//
// The three rules that matter, whatever your framework:
//
// 1. Send cookies: every request to Hecate (and to services that trust its cookie) is made with
//    `credentials: "include"` (fetch) or `withCredentials: true` (Axios). Hecate's cookies are
//    HttpOnly: this code never sees a token, the browser attaches them when asked to.
//        fetch(url, { credentials: "include" })
//        axios.create({ baseURL: "https://api.example.com/api", withCredentials: true })
//
// 2. Say JSON: every POST, PUT and DELETE carries `Content-Type: application/json`, even without
//    a body (send `{}`). It is half of Hecate's CSRF defence: an HTML form on another site cannot
//    send that type, and fetch sends it across origins only after a CORS preflight, which only
//    Hecate's CORS_ORIGINS pass. (Axios sets it for object bodies; give `{}` as the body.)
//
// 3. On a 401, refresh once and retry: the access cookie lives minutes (JWT_ACCESS_TTL). When a
//    call answers 401, POST /api/auth/refresh (the refresh cookie goes only to /api/auth); if
//    that works, repeat the call once; if not, the user is signed out.
//
// Hecate's own origin check needs nothing from you: browsers send `Origin` themselves.

"use strict";

const config = window.HECATE_CONFIG;
const API = config.hecateUrl.replace(/\/+$/, "") + "/api";
const DOWNSTREAM = config.downstreamUrl.replace(/\/+$/, "");

// --- Talking to Hecate --------------------------------------------------------------------------

// One request, as every request to Hecate should be made. Answers { status, ok, data } where
// data is the parsed JSON body: the result, or a problem ({ code, message, ... }) on errors.
async function send(url, { method = "GET", body } = {}) {
  const init = {
    method,
    // Rule 1. Without it the browser neither sends Hecate's cookies nor stores the ones it sets.
    credentials: "include",
    headers: { Accept: "application/json" },
  };
  if (method !== "GET" && method !== "HEAD") {
    // Rule 2. DELETE /api/auth/sessions/{id} has no body but still needs the type.
    init.headers["Content-Type"] = "application/json";
    if (method !== "DELETE") init.body = JSON.stringify(body ?? {});
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    // A network failure, or CORS refused to let us read the answer (wrong CORS_ORIGINS).
    logRequest(method, url, "failed");
    return { status: 0, ok: false, data: { code: "network_error", message: String(error) } };
  }
  logRequest(method, url, response.status);
  const data = await response.json().catch(() => null);
  return { status: response.status, ok: response.ok, data };
}

// Rule 3. Concurrent calls that all get a 401 share a single refresh: the refresh token is
// single-use, and one rotation is enough for all of them.
let refreshing = null;
function refreshOnce() {
  if (!refreshing) {
    refreshing = send(`${API}/auth/refresh`, { method: "POST" }).finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

// A call that needs the user signed in (to Hecate or to a service that trusts its cookie).
async function call(url, options) {
  const first = await send(url, options);
  if (first.status !== 401) return first;
  const refreshed = await refreshOnce();
  if (!refreshed.ok) {
    // The session is over (signed out, expired, ended from another device): sign out here too.
    showSignedOut();
    return first;
  }
  const retried = await send(url, options);
  if (retried.status === 401) showSignedOut();
  return retried;
}

// --- The flows ----------------------------------------------------------------------------------

async function register(username, email, password) {
  // Creates the account and signs in (cookies set); a verification mail goes out.
  const result = await send(`${API}/user/register`, {
    method: "POST", body: { username, email, password },
  });
  if (result.ok) showSignedIn(result.data.user);
  else showError(result);
}

async function login(email, password, rememberMe) {
  // A plain send, not call(): a 401 here means a wrong password, not an expired cookie.
  const result = await send(`${API}/auth/login`, {
    method: "POST", body: { email, password, rememberMe },
  });
  if (result.ok) showSignedIn(result.data.user);
  else showError(result);
}

async function whoAmI() {
  const result = await call(`${API}/user`);
  if (result.ok) showSignedIn(result.data.user);
  else if (result.status !== 401) showError(result);
}

async function callDownstream() {
  // The downstream service verifies the access cookie itself (hecate.verify), without calling
  // Hecate; a 401 there is refreshed at Hecate exactly like one of Hecate's own.
  const result = await call(`${DOWNSTREAM}/hello`);
  el("downstream").textContent = result.ok ? JSON.stringify(result.data) : "";
  if (!result.ok && result.status !== 401) showError(result);
}

async function listSessions() {
  const result = await call(`${API}/auth/sessions`);
  const list = el("sessions");
  list.replaceChildren();
  if (!result.ok) {
    if (result.status !== 401) showError(result);
    return;
  }
  for (const session of result.data.sessions) {
    const item = document.createElement("li");
    item.dataset.sessionId = session.id;
    item.dataset.current = String(session.current);
    // textContent, never innerHTML: the user agent string comes from whoever signed in.
    const label = document.createElement("span");
    label.textContent = `${session.current ? "This device" : "Other device"} · signed in ` +
      `${new Date(session.created).toLocaleString()} · ${session.remember ? "remembered" : "1 h"} ` +
      `· ${session.userAgent.slice(0, 60)} `;
    const end = document.createElement("button");
    end.textContent = "Sign this device out";
    end.className = "end-session";
    end.addEventListener("click", () => endSession(session.id, session.current));
    item.append(label, end);
    list.append(item);
  }
}

async function endSession(id, current) {
  const result = await call(`${API}/auth/sessions/${encodeURIComponent(id)}`, {
    method: "DELETE",
  });
  if (!result.ok) return showError(result);
  // Ending this browser's own session clears its cookies: that is a sign-out.
  if (current) showSignedOut();
  else await listSessions();
}

async function logout() {
  // Idempotent: it answers 200 and clears the cookies even when the session is already over.
  await send(`${API}/auth/logout`, { method: "POST" });
  showSignedOut();
}

async function logoutEverywhere() {
  // Ends every session of the user. Access cookies already handed out to other devices stay
  // valid until they expire (at most JWT_ACCESS_TTL): services verify them without asking Hecate.
  const result = await call(`${API}/auth/invalidate`, { method: "POST" });
  if (!result.ok && result.status !== 401) return showError(result);
  showSignedOut();
}

// The verification mail links to APP_URL + /verify?token=...; this page hands the token to Hecate.
async function verifyEmail(token) {
  el("verify-section").hidden = false;
  // Drop the token from the address bar and history: it is a credential, if a single-use one.
  history.replaceState(null, "", "/");
  const result = await send(`${API}/user/email/verification`, { method: "PUT", body: { token } });
  el("verify-result").textContent = result.ok
    ? `Address confirmed: ${result.data.user.email}`
    : `This link does not work (${result.data?.code ?? result.status}): request a new one.`;
}

// --- The page -----------------------------------------------------------------------------------

function el(id) {
  return document.getElementById(id);
}

function showSignedIn(user) {
  const status = el("status");
  status.textContent = `Signed in as ${user.username}`;
  status.className = "signed-in";
  el("me").textContent = JSON.stringify(user, null, 2);
  el("signed-in").hidden = false;
  el("signed-out").hidden = true;
  el("error").textContent = "";
}

function showSignedOut() {
  const status = el("status");
  status.textContent = "Signed out";
  status.className = "signed-out";
  el("me").textContent = "";
  el("downstream").textContent = "";
  el("sessions").replaceChildren();
  el("signed-in").hidden = true;
  el("signed-out").hidden = false;
}

function showError(result) {
  // Branch on result.data.code (stable), show result.data.message (for people).
  const problem = result.data ?? {};
  el("error").textContent = `${problem.message ?? "Request failed"} (${problem.code ?? result.status})`;
}

function logRequest(method, url, status) {
  const item = document.createElement("li");
  item.textContent = `${method} ${url} → ${status}`;
  el("log").append(item);
}

function on(id, event, handler) {
  el(id).addEventListener(event, (e) => {
    e.preventDefault();
    el("error").textContent = "";
    handler();
  });
}

on("register-form", "submit", () =>
  register(el("register-username").value, el("register-email").value, el("register-password").value));
on("login-form", "submit", () =>
  login(el("login-email").value, el("login-password").value, el("login-remember").checked));
on("whoami", "click", whoAmI);
on("hello", "click", callDownstream);
on("list-sessions", "click", listSessions);
on("logout", "click", logout);
on("logout-everywhere", "click", logoutEverywhere);

(async function start() {
  const token = new URLSearchParams(location.search).get("token");
  if (location.pathname === "/verify" && token) await verifyEmail(token);
  // After a reload the page knows nothing: ask who is signed in (refreshing if needed).
  await whoAmI();
  if (el("status").textContent === "Loading…") showSignedOut();
})();

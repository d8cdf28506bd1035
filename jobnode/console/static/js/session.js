// Who is using the console. The bearer token lives in sessionStorage: it survives a reload
// of the tab (a console that logs out on every F5 gets its token pasted somewhere worse),
// but not the tab itself, and other tabs and origins cannot read it. It never goes into a
// cookie (so no request carries it without this code asking) nor into a URL.

const KEY = "jobnode.console.session";

export const session = {
  token: null,
  role: null,
  user: null,
  authOn: null, // null until the first API answer tells
};

export function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (saved && typeof saved.token === "string") Object.assign(session, saved);
  } catch {
    sessionStorage.removeItem(KEY);
  }
}

export function saveSession(token, role, user) {
  Object.assign(session, { token, role, user, authOn: true });
  sessionStorage.setItem(KEY, JSON.stringify({ token, role, user }));
}

export function clearSession() {
  Object.assign(session, { token: null, role: null, user: null });
  sessionStorage.removeItem(KEY);
}

// What the role may do: the same rules the API enforces (docs/security.md). They only hide
// buttons; the server refuses the requests anyway. With auth off everyone may do everything.
export function can(what) {
  const role = session.authOn === false ? "admin" : session.role;
  switch (what) {
    case "see-jobs":
    case "cancel":
      return role === "admin" || role === "user";
    case "retry":
    case "delete":
    case "see-nodes":
    case "steer": // pause and resume schedules and limits
      return role === "admin";
    default:
      return false;
  }
}

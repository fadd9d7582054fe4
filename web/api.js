// The one way the client talks HTTP to the server: same-origin, the HttpOnly session
// cookie (never a token in script-readable storage), the CSRF token from the readable
// `conclave_csrf` cookie on every state-changing request, nothing cached.

export class ApiError extends Error {
  constructor(status, code, message, requestId, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

/** The session's CSRF token, set as a SameSite=Strict cookie at sign-in. */
export function csrfToken() {
  for (const part of document.cookie.split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === 'conclave_csrf') return decodeURIComponent(value.join('='));
  }
  return '';
}

export async function errorFrom(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const error = body && body.error;
  const retry = response.headers.get('retry-after');
  if (error && error.code) {
    return new ApiError(response.status, error.code, error.message || error.code, error.request_id, retry);
  }
  return new ApiError(response.status, 'http_' + response.status,
    `The server answered ${response.status} ${response.statusText || ''}`.trim(), null, retry);
}

let onUnauthenticated = () => {};
/** Called when any request finds the session gone (401). */
export function setUnauthenticatedHandler(handler) { onUnauthenticated = handler; }

export async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD') headers['x-csrf-token'] = csrfToken();
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached. Check the connection and try again.');
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && !path.startsWith('/api/v1/auth/')) onUnauthenticated(error);
    throw error;
  }
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : null;
}

/** Uploads a file with progress (fetch cannot report upload progress; XHR can). */
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.withCredentials = true;
    xhr.setRequestHeader('content-type', file.type || 'application/octet-stream');
    xhr.setRequestHeader('x-csrf-token', csrfToken());
    xhr.setRequestHeader('accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(body);
      const error = body && body.error;
      const retry = xhr.getResponseHeader('retry-after');
      const failure = error
        ? new ApiError(xhr.status, error.code, error.message, error.request_id, retry)
        : new ApiError(xhr.status, 'http_' + xhr.status, `The upload failed (${xhr.status}).`, null, retry);
      // As for every other request: a session that ended returns to sign-in.
      if (xhr.status === 401) onUnauthenticated(failure);
      reject(failure);
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network', 'The upload was interrupted.')));
    xhr.send(file);
  });
}

/** A sentence for people: the server's safe message, with what to do for common codes. */
export function describe(error) {
  if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
  const advice = {
    unauthenticated: 'Please sign in again.',
    rate_limited: error.retryAfter ? `Try again in ${error.retryAfter} s.` : 'Try again shortly.',
    too_many_requests: error.retryAfter ? `Try again in ${error.retryAfter} s.` : 'Try again shortly.',
    policy_violation: 'Your organisation\'s policy does not allow this.',
    payload_too_large: 'The file or text is too large.',
    directory_unavailable: 'The sign-in service is unavailable; try again later.',
  }[error.code];
  return advice && !error.message.includes(advice) ? `${error.message} ${advice}` : error.message;
}

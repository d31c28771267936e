// Guest SDK for urlcap: HTTP through the authorities the host preopened for you, for
// JavaScript guests built with componentize-js against the `urlcap:guest/command` world in
// sdk/wit (see README.md, "Writing a guest"). Types: index.d.ts.
//
// It wraps the bindings componentize-js makes from wit/urlcap-http.wit. Those calls are
// synchronous (the host buffers each response within the authority's limits), so is this.

import { getAuthorities } from 'urlcap:http/preopens@0.1.0';
import { run as sandboxRun } from 'urlcap:http/sandbox@0.1.0';

/**
 * The host's snake_case audit code for a WIT `error.reason`: the bindings give a case of the
 * WIT enum `reason` as its kebab-case name (`path-not-allowed`).
 */
function reasonCode(reason) {
  return String(reason).replaceAll('-', '_');
}

/** The host refused: a request, a derivation or a nested sandbox. */
export class Denied extends Error {
  constructor(reason, detail) {
    super(`${reason}: ${detail}`);
    this.name = 'Denied';
    /** Stable snake_case code, the same as in the host's audit log. */
    this.reason = reason;
    /** Human text. */
    this.detail = detail;
  }
}

// A binding that returns `result<_, error>` throws its error's value as `payload`.
function call(f) {
  try {
    return f();
  } catch (e) {
    const p = e && e.payload;
    if (p && typeof p === 'object' && 'reason' in p && 'detail' in p) {
      throw new Denied(reasonCode(p.reason), String(p.detail));
    }
    throw e;
  }
}

const encoder = new TextEncoder();

function bytes(body) {
  if (body === undefined || body === null) return new Uint8Array();
  if (typeof body === 'string') return encoder.encode(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  throw new TypeError('a body is a string, a Uint8Array or an ArrayBuffer');
}

// Header values are bytes on the wire; text is sent as Latin-1 (each char one byte), the way
// fetch's Headers reads them.
function latin1(value) {
  if (typeof value !== 'string') return bytes(value);
  const out = new Uint8Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c > 0xff) throw new TypeError(`header value ${JSON.stringify(value)} is not Latin-1`);
    out[i] = c;
  }
  return out;
}

function fromLatin1(b) {
  let s = '';
  for (const c of b) s += String.fromCharCode(c);
  return s;
}

function headerList(headers) {
  if (!headers) return [];
  const pairs = Symbol.iterator in Object(headers) && typeof headers !== 'string'
    ? headers
    : Object.entries(headers);
  return Array.from(pairs, ([k, v]) => [String(k), latin1(v)]);
}

// WIT u64 values are BigInts in the bindings.
function u64(name, v) {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'bigint') return v;
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a whole number >= 0`);
  return BigInt(v);
}

/** A response as the server sent it (urlcap never follows redirects). */
export class Response {
  constructor(status, headers, body) {
    /** The status code. */
    this.status = status;
    /** [name, value] pairs in the order received; values decoded as Latin-1 (lossless). */
    this.headers = headers;
    /** The whole body. */
    this.body = body;
  }

  /** The body as UTF-8 text (invalid sequences replaced). */
  text() {
    return new TextDecoder().decode(this.body);
  }

  /** The body parsed as JSON (throws SyntaxError if it is not). */
  json() {
    return JSON.parse(this.text());
  }

  /** The first value of header `name` (case-insensitive), or null. */
  header(name) {
    const all = this.headerAll(name);
    return all.length ? all[0] : null;
  }

  /** Every value of header `name` (case-insensitive), in order. */
  headerAll(name) {
    const n = name.toLowerCase();
    return this.headers.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
  }
}

const handleOf = new WeakMap();

/**
 * A capability to send some HTTP requests: to one origin, under some paths, with some methods
 * and limits. Requests are relative to it; derive a narrower one to hand on.
 */
export class Authority {
  constructor(handle, name) {
    handleOf.set(this, handle);
    /** The preopen name (a derived authority keeps its parent's). */
    this.name = name;
  }

  /** `scheme://host[:port]`; the host may be a `*.suffix` pattern. */
  get origin() {
    return handleOf.get(this).origin();
  }

  /** Lineage, origin, paths, methods and limits, on one line. */
  describe() {
    return handleOf.get(this).describe();
  }

  /** Send `method path` relative to this authority; throws Denied if refused. */
  request(method, path, { headers, body } = {}) {
    const req = { method, pathAndQuery: path, headers: headerList(headers), body: bytes(body) };
    const r = call(() => handleOf.get(this).fetch(req));
    return new Response(r.status, r.headers.map(([k, v]) => [k, fromLatin1(v)]), r.body);
  }

  get(path, { headers } = {}) {
    return this.request('GET', path, { headers });
  }

  post(path, body, { headers } = {}) {
    return this.request('POST', path, { headers, body });
  }

  put(path, body, { headers } = {}) {
    return this.request('PUT', path, { headers, body });
  }

  delete(path, { headers } = {}) {
    return this.request('DELETE', path, { headers });
  }

  /**
   * A new authority allowing a subset of this one; what is not given is kept. Throws Denied
   * with `attenuation_widens` if it would allow anything this one does not.
   */
  derive({
    host, paths, methods, maxRequests, rate, timeoutMs, maxRequestBody, maxResponseBody,
    expiresInMs,
  } = {}) {
    const att = {
      host: host ?? undefined,
      paths: paths ? Array.from(paths, String) : undefined,
      methods: methods ? Array.from(methods, String) : undefined,
      maxRequests: u64('maxRequests', maxRequests),
      rate: rate ?? undefined,
      timeoutMs: u64('timeoutMs', timeoutMs),
      maxRequestBody: u64('maxRequestBody', maxRequestBody),
      maxResponseBody: u64('maxResponseBody', maxResponseBody),
      expiresInMs: u64('expiresInMs', expiresInMs),
    };
    return new Authority(call(() => handleOf.get(this).derive(att)), this.name);
  }

  /** Revoke this authority and everything derived from it, now and later. */
  revoke() {
    handleOf.get(this).revoke();
  }
}

let preopened;

/** Every authority the host preopened for this guest, by name. */
export function authorities() {
  preopened ??= new Map(getAuthorities().map(([h, name]) => [name, new Authority(h, name)]));
  return new Map(preopened);
}

/** The preopened authority called `name`; throws a RangeError if there is none. */
export function authority(name) {
  const all = authorities();
  const a = all.get(name);
  if (!a) {
    throw new RangeError(`no authority named ${JSON.stringify(name)} was preopened (have: ${[...all.keys()].join(', ')})`);
  }
  return a;
}

/**
 * Run `component` (a wasi:cli command component) in a nested sandbox that sees only
 * `preopens` ({name: authority} or a Map), each as a fresh child of the authority passed.
 * `args` is its argv, program name first. Returns {code, message, stdout, stderr}.
 */
export function runSandbox(component, preopens, args) {
  const entries = preopens instanceof Map ? [...preopens] : Object.entries(preopens);
  const handles = entries.map(([name, a]) => {
    if (!(a instanceof Authority)) throw new TypeError(`preopen ${name} is not an Authority`);
    return [handleOf.get(a), name];
  });
  const s = call(() => sandboxRun(bytes(component), handles, Array.from(args, String)));
  return {
    code: s.code,
    message: s.message ?? null,
    stdout: s.stdout,
    stderr: s.stderr,
  };
}

// Types for the urlcap guest SDK (index.js). Every call is synchronous: the host buffers each
// response within the authority's limits.

/** Request headers: an object, or [name, value] pairs when a name repeats. */
export type Headers =
  | Record<string, string | Uint8Array>
  | Iterable<readonly [string, string | Uint8Array]>;

/** A request body: text (sent as UTF-8) or bytes. */
export type Body = string | Uint8Array | ArrayBuffer | ArrayBufferView;

/** What a derived authority is narrowed to; what is left out is kept from its parent. */
export interface Attenuation {
  /** Narrow a wildcard origin to one host. */
  host?: string;
  /** Whole-segment path prefixes, each under one of the parent's. */
  paths?: Iterable<string>;
  methods?: Iterable<string>;
  /** Lifetime budget; requests also count against every ancestor's. */
  maxRequests?: number | bigint;
  /** "N/UNIT", for example "10/s". */
  rate?: string;
  timeoutMs?: number | bigint;
  maxRequestBody?: number | bigint;
  maxResponseBody?: number | bigint;
  expiresInMs?: number | bigint;
}

/**
 * The host refused: a request, a derivation or a nested sandbox. `reason` is the stable
 * snake_case code that the host's audit log records for the same event.
 */
export class Denied extends Error {
  constructor(reason: string, detail: string);
  readonly name: 'Denied';
  /** For example `path_not_allowed`, `attenuation_widens`, `revoked`, `ip_denied`, `timeout`. */
  readonly reason: string;
  readonly detail: string;
}

/** A response as the server sent it (urlcap never follows redirects). */
export class Response {
  readonly status: number;
  /** [name, value] pairs in the order received; values decoded as Latin-1 (lossless). */
  readonly headers: Array<[string, string]>;
  readonly body: Uint8Array;
  /** The body as UTF-8 text. */
  text(): string;
  /** The body parsed as JSON (throws SyntaxError if it is not). */
  json(): unknown;
  /** The first value of header `name` (case-insensitive), or null. */
  header(name: string): string | null;
  /** Every value of header `name` (case-insensitive), in order. */
  headerAll(name: string): string[];
}

/**
 * A capability to send some HTTP requests: to one origin, under some paths, with some methods
 * and limits. Requests are relative to it (path and query, starting with `/`).
 */
export class Authority {
  private constructor();
  /** The preopen name (a derived authority keeps its parent's). */
  readonly name: string;
  /** `scheme://host[:port]`; the host may be a `*.suffix` pattern. */
  readonly origin: string;
  /** Lineage, origin, paths, methods and limits, on one line. */
  describe(): string;
  /**
   * Send a request relative to this authority. Any HTTP status is a Response; throws Denied
   * when the host refuses or the exchange fails (`timeout`, `connect_failed`...).
   */
  request(method: string, path: string, init?: { headers?: Headers; body?: Body }): Response;
  get(path: string, init?: { headers?: Headers }): Response;
  post(path: string, body?: Body, init?: { headers?: Headers }): Response;
  put(path: string, body?: Body, init?: { headers?: Headers }): Response;
  delete(path: string, init?: { headers?: Headers }): Response;
  /**
   * A new authority allowing a subset of this one. Throws Denied with `attenuation_widens` if
   * it would allow anything this one does not, `invalid_attenuation` if a value is malformed.
   */
  derive(attenuation?: Attenuation): Authority;
  /** Revoke this authority and everything derived from it: their next requests are `revoked`. */
  revoke(): void;
}

/** How a nested sandbox ended. */
export interface ExitStatus {
  /** 0 success, 1 failure, 124 time limit, 134 trap or memory limit. */
  code: number;
  /** Why the host stopped the child, if it did. */
  message: string | null;
  /** What the child wrote (each at most 1 MiB). */
  stdout: Uint8Array;
  stderr: Uint8Array;
}

/** Every authority the host preopened for this guest, by name. */
export function authorities(): Map<string, Authority>;

/** The preopened authority called `name`; throws a RangeError if there is none. */
export function authority(name: string): Authority;

/**
 * Run `component` (a wasi:cli command component) in a nested sandbox that sees only
 * `preopens`, under those names, each as a fresh child of the authority passed (revoking yours
 * revokes the child's; its requests count against your budgets). `args` is its argv, program
 * name first. Throws Denied (`invalid_component`, `nesting_limit`...) if the host will not
 * start it.
 */
export function runSandbox(
  component: Uint8Array | ArrayBuffer,
  preopens: Record<string, Authority> | Map<string, Authority>,
  args: Iterable<string>,
): ExitStatus;

/**
 * Minimal assertions for the test suite (JSR, and so `@std/assert`, is not reachable here).
 *
 * Deep equality covers primitives, plain objects, arrays, Map, Set, Date, RegExp, typed arrays
 * and class instances (compared by prototype and own enumerable keys). Null-prototype objects
 * (as node-redis returns for hashes) equal plain objects with the same entries. Failures throw
 * {@linkcode AssertionError} with a line diff of both values.
 *
 * @module
 */

/** Error thrown by every assertion of this module when it fails. */
export class AssertionError extends Error {
  /** Creates an assertion error with the given message. */
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** A class whose instances an assertion accepts as the expected error (abstract classes too). */
export type ErrorClass<E extends Error = Error> = abstract new (...args: never[]) => E;

/** Throws an {@linkcode AssertionError} unless `condition` is truthy; narrows its type. */
export function assert(
  condition: unknown,
  msg = "Expected condition to be truthy",
): asserts condition {
  if (!condition) throw new AssertionError(msg);
}

/** Always throws an {@linkcode AssertionError} with the given message. */
export function fail(msg = "Failed"): never {
  throw new AssertionError(msg);
}

/**
 * Asserts that `actual` and `expected` are deeply equal (see the module doc for the rules).
 * The error message shows a line diff: `-` lines are only in actual, `+` lines only in expected.
 */
export function assertEquals<T>(actual: unknown, expected: T, msg?: string): asserts actual is T {
  if (deepEqual(actual, expected)) return;
  const a = format(actual);
  const e = format(expected);
  const header = msg ? `${msg}: values are not equal` : "Values are not equal";
  const body = a === e
    ? `Both print as:\n${a}\n(they differ in type, prototype or identity)`
    : `${lineDiff(a, e)}\n\n    [-] actual  [+] expected`;
  throw new AssertionError(`${header}\n\n${body}`);
}

/** Asserts that `actual` and `expected` are not deeply equal. */
export function assertNotEquals(actual: unknown, expected: unknown, msg?: string): void {
  if (!deepEqual(actual, expected)) return;
  throw new AssertionError(msg ?? `Expected values to differ, both are:\n${format(actual)}`);
}

/** Asserts that the string `actual` matches `expected`. */
export function assertMatch(actual: string, expected: RegExp, msg?: string): void {
  if (expected.test(actual)) return;
  throw new AssertionError(msg ?? `Expected ${format(actual)} to match ${expected}`);
}

/** Asserts that the string `actual` contains `expected`. */
export function assertStringIncludes(actual: string, expected: string, msg?: string): void {
  if (actual.includes(expected)) return;
  throw new AssertionError(msg ?? `Expected ${format(actual)} to include ${format(expected)}`);
}

/**
 * Asserts that calling `fn` throws, optionally an instance of `errorClass` whose message includes
 * `msgIncludes`. Returns the thrown error.
 */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  errorClass?: ErrorClass<E>,
  msgIncludes?: string,
): E {
  let result: unknown;
  try {
    result = fn();
  } catch (err) {
    return checkError(err, errorClass, msgIncludes);
  }
  const hint = result instanceof Promise ? " (it returned a promise: use assertRejects)" : "";
  throw new AssertionError(`Expected function to throw${hint}`);
}

/**
 * Asserts that `fn` returns a promise that rejects (or throws synchronously), optionally with an
 * instance of `errorClass` whose message includes `msgIncludes`. Resolves to the error.
 */
export async function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  errorClass?: ErrorClass<E>,
  msgIncludes?: string,
): Promise<E> {
  let value: unknown;
  try {
    value = await fn();
  } catch (err) {
    return checkError(err, errorClass, msgIncludes);
  }
  throw new AssertionError(`Expected promise to reject, it resolved to ${format(value)}`);
}

function checkError<E extends Error>(
  err: unknown,
  errorClass: ErrorClass<E> | undefined,
  msgIncludes: string | undefined,
): E {
  if (errorClass && !(err instanceof errorClass)) {
    throw new AssertionError(
      `Expected error to be an instance of ${errorClass.name}, got ${describeError(err)}`,
    );
  }
  if (!(err instanceof Error)) {
    throw new AssertionError(`Expected an Error to be thrown, got ${format(err)}`);
  }
  if (msgIncludes !== undefined && !err.message.includes(msgIncludes)) {
    throw new AssertionError(
      `Expected error message to include ${format(msgIncludes)}, got ${format(err.message)}`,
    );
  }
  return err as E;
}

function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.constructor.name}: ${err.message}`;
  return format(err);
}

/** Prints a value the same way on both sides of a comparison (sorted keys, one item a line). */
function format(value: unknown): string {
  return Deno.inspect(value, {
    colors: false,
    compact: false,
    depth: Infinity,
    iterableLimit: Infinity,
    sorted: true,
    strAbbreviateSize: Infinity,
    trailingComma: true,
    getters: true,
  });
}

/** A minimal line diff (longest common subsequence). */
function lineDiff(actual: string, expected: string): string {
  const a = actual.split("\n");
  const b = expected.split("\n");
  // Quadratic table; values printed in tests are small. Cap to stay safe on huge inputs.
  if (a.length * b.length > 4_000_000) {
    return `actual:\n${actual}\n\nexpected:\n${expected}`;
  }
  const lcs: number[][] = Array.from(
    { length: a.length + 1 },
    () => new Array(b.length + 1).fill(0),
  );
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      out.push(`    ${a[i]}`);
      i++;
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
      out.push(`[-] ${a[i++]}`);
    } else {
      out.push(`[+] ${b[j++]}`);
    }
  }
  while (i < a.length) out.push(`[-] ${a[i++]}`);
  while (j < b.length) out.push(`[+] ${b[j++]}`);
  return out.join("\n");
}

/** Deep structural equality; `NaN` equals `NaN`, `0` equals `-0`, cycles are handled. */
export function deepEqual(a: unknown, b: unknown): boolean {
  return eq(a, b, new Map());
}

function eq(a: unknown, b: unknown, seen: Map<object, object>): boolean {
  if (a === b || (Number.isNaN(a) && Number.isNaN(b))) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (seen.get(a) === b) return true;
  if (!sameKind(a, b)) return false;
  seen.set(a, b);

  if (a instanceof Date && b instanceof Date) return Object.is(a.getTime(), b.getTime());
  if (a instanceof RegExp && b instanceof RegExp) return String(a) === String(b);
  if (a instanceof Error && b instanceof Error) {
    if (a.message !== b.message || a.name !== b.name) return false;
  }
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  }
  if (a instanceof Map && b instanceof Map) {
    if (a.size !== b.size) return false;
    for (const [k, v] of a) {
      if (!b.has(k) || !eq(v, b.get(k), seen)) return false;
    }
    return true;
  }
  if (a instanceof Set && b instanceof Set) {
    if (a.size !== b.size) return false;
    outer: for (const x of a) {
      if (b.has(x)) continue;
      for (const y of b) {
        if (eq(x, y, seen)) continue outer;
      }
      return false;
    }
    return true;
  }
  if (Array.isArray(a) && Array.isArray(b) && a.length !== b.length) return false;

  const ra = a as Record<PropertyKey, unknown>;
  const rb = b as Record<PropertyKey, unknown>;
  const ka = ownKeys(a);
  const kb = ownKeys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.prototype.propertyIsEnumerable.call(b, k)) return false;
    if (!eq(ra[k], rb[k], seen)) return false;
  }
  return true;
}

/** Same prototype; plain and null-prototype objects (as node-redis returns) count as one kind. */
function sameKind(a: object, b: object): boolean {
  const pa = Object.getPrototypeOf(a);
  const pb = Object.getPrototypeOf(b);
  if (pa === pb) return true;
  const plain = (p: unknown) => p === null || p === Object.prototype;
  return plain(pa) && plain(pb);
}

function ownKeys(o: object): PropertyKey[] {
  return Reflect.ownKeys(o).filter((k) => Object.prototype.propertyIsEnumerable.call(o, k));
}

/**
 * Checks against the service's OpenAPI document: `validateOpenApiDocument` runs an OpenAPI
 * validator from npm over the whole document, and `OpenApiConformance` checks one real answer
 * (status, content type, body schema with Ajv's JSON Schema 2020-12, documented headers)
 * against the operation it belongs to. Used by the unit tests (answers of `app.request()`) and
 * the end-to-end tests (answers of a running service).
 *
 * @module
 */
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";

/** A parsed JSON object. */
type Json = Record<string, unknown>;

/** What is checked of an answer: a `Response` (its body is read) or an already read one. */
export interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

/** Validates `doc` as an OpenAPI 3.x document; resolves with the validator's errors (none: []). */
export async function validateOpenApiDocument(doc: unknown): Promise<string[]> {
  const validator = new Validator();
  const result = await validator.validate(doc as Record<string, unknown>);
  if (result.valid) return [];
  return [JSON.stringify(result.errors, null, 2)];
}

/** Reads `res` into an {@linkcode Answer}. */
export async function readAnswer(res: Response): Promise<Answer> {
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Checks real answers against one OpenAPI document. */
export class OpenApiConformance {
  readonly #doc: Json;
  readonly #ajv = new Ajv2020({ strict: false, allErrors: true });
  readonly #compiled = new Map<string, ValidateFunction>();

  /** @param doc the OpenAPI document (as served at /openapi.json) */
  constructor(doc: Json) {
    this.#doc = doc;
  }

  /** `value` with every local `$ref` replaced by what it points at (the document has no cycles). */
  deref(value: unknown): unknown {
    if (Array.isArray(value)) return value.map((v) => this.deref(v));
    if (value === null || typeof value !== "object") return value;
    const obj = value as Json;
    if (typeof obj.$ref === "string" && obj.$ref.startsWith("#/")) {
      let at: unknown = this.#doc;
      for (const part of obj.$ref.slice(2).split("/")) {
        at = (at as Json)?.[part.replaceAll("~1", "/").replaceAll("~0", "~")];
      }
      if (at === undefined) throw new Error(`Unresolved $ref ${obj.$ref}`);
      return this.deref(at);
    }
    return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, this.deref(v)]));
  }

  /** The operation of `method` on `route`, dereferenced, or undefined. */
  operation(method: string, route: string): Json | undefined {
    const item = (this.#doc.paths as Json)[route] as Json | undefined;
    const op = item?.[method.toLowerCase()];
    return op === undefined ? undefined : this.deref(op) as Json;
  }

  /** Every documented `METHOD route status`. */
  documented(): string[] {
    const out: string[] = [];
    for (const [route, item] of Object.entries(this.#doc.paths as Json)) {
      for (const [method, op] of Object.entries(item as Json)) {
        for (const status of Object.keys((op as Json).responses as Json)) {
          out.push(`${method.toUpperCase()} ${route} ${status}`);
        }
      }
    }
    return out;
  }

  /**
   * The documented response for an answer with `status` to `method` on `route`: the
   * operation's; for a method the path does not have (405), that of any of its operations;
   * for an unknown path (`route` undefined), `components.responses.NotFound`.
   */
  responseFor(method: string, route: string | undefined, status: number): Json | undefined {
    if (route === undefined) {
      return this.deref(((this.#doc.components as Json).responses as Json).NotFound) as Json;
    }
    let op = this.operation(method, route);
    if (!op && method.toUpperCase() === "HEAD") op = this.operation("GET", route);
    if (!op) {
      const item = (this.#doc.paths as Json)[route] as Json | undefined;
      const any = item && Object.values(item)[0];
      op = any ? this.deref(any) as Json : undefined;
    }
    const responses = op?.responses as Json | undefined;
    return responses?.[String(status)] as Json | undefined;
  }

  /**
   * Problems of `answer` (to `method` on `route`, `undefined` for an unknown path) against the
   * document; an empty list when it conforms.
   */
  check(method: string, route: string | undefined, answer: Answer): string[] {
    const where = `${method} ${route ?? "(unknown path)"} ${answer.status}`;
    const response = this.responseFor(method, route, answer.status);
    if (!response) return [`${where}: status not documented`];
    const problems: string[] = [];
    for (const [name, header] of Object.entries((response.headers ?? {}) as Json)) {
      const h = header as Json;
      const value = answer.headers.get(name);
      if (value === null) {
        if (h.required) problems.push(`${where}: required header ${name} missing`);
        continue;
      }
      const errors = this.#validate(h.schema ?? {}, value);
      if (errors) problems.push(`${where}: header ${name}=${value}: ${errors}`);
    }
    const content = response.content as Json | undefined;
    if (!content) {
      if (answer.text !== "") problems.push(`${where}: a body where none is documented`);
      return problems;
    }
    const type = (answer.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
    const media = content[type] as Json | undefined;
    if (!media) {
      problems.push(`${where}: content type "${type}" not documented (${Object.keys(content)})`);
      return problems;
    }
    if (method.toUpperCase() === "HEAD") return problems;
    let body: unknown = answer.text;
    if (type === "application/json" || type.endsWith("+json")) {
      try {
        body = JSON.parse(answer.text);
      } catch {
        return [...problems, `${where}: body is not JSON: ${answer.text.slice(0, 200)}`];
      }
    }
    const errors = this.#validate(media.schema ?? {}, body);
    if (errors) problems.push(`${where}: body ${answer.text.slice(0, 300)}: ${errors}`);
    return problems;
  }

  #validate(schema: unknown, value: unknown): string | undefined {
    const key = JSON.stringify(schema);
    let fn = this.#compiled.get(key);
    if (!fn) {
      fn = this.#ajv.compile(schema as object);
      this.#compiled.set(key, fn);
    }
    if (fn(value)) return undefined;
    return this.#ajv.errorsText(fn.errors);
  }
}

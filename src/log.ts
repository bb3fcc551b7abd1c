/**
 * Logging: LogTape configured with one stdout sink, `text` or `json` lines
 * (README: Logs), a level filter, a category per module, the correlation id
 * from the implicit context, and redaction of secret-looking keys and of the
 * configured secret values wherever they appear.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import {
  configureSync,
  getLogger as ltGetLogger,
  type Logger,
  type LogLevel,
  type LogRecord,
  resetSync,
  type Sink,
  withContext,
} from "npm:@logtape/logtape@^2.4.2";

export type { Logger };
export { withContext };

/** Root category of every logger of the service. */
export const ROOT_CATEGORY = "app";

const SECRET_KEY_RE = /pass|pw|secret|token|key|authorization|cookie/i;
const MASK = "***";

/** Options of `setupLogging`. */
export interface LogOptions {
  /** Lowest level written. Default `INFO`. */
  level?: "ERROR" | "WARN" | "INFO" | "DEBUG";
  /** Line format. Default `text`. */
  format?: "text" | "json";
  /** `service` field of JSON lines. */
  service?: string;
  /** `environment` field of JSON lines. */
  environment?: string;
  /** Values never to print (passwords, API keys); replaced by `***`. */
  secrets?: readonly (string | undefined)[];
  /** Where lines go. Default: synchronous write to stdout. */
  write?: (line: string) => void;
}

const LEVEL_NAMES: Record<LogLevel, string> = {
  trace: "DEBUG",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "ERROR",
};

const LOWEST: Record<NonNullable<LogOptions["level"]>, LogLevel> = {
  DEBUG: "debug",
  INFO: "info",
  WARN: "warning",
  ERROR: "error",
};

/** Deep copy of `value` with the values of secret-looking keys replaced by `***`. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== "object") return value;
  if (value instanceof Error) return errorInfo(value);
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = SECRET_KEY_RE.test(k) && v !== undefined && v !== null ? MASK : redact(v, depth + 1);
  }
  return out;
}

/** The loggable part of an error: name and message, never the stack. */
export function errorInfo(err: unknown): { name: string; message: string } {
  if (err instanceof Error) return { name: err.name, message: err.message };
  return { name: "Error", message: String(err) };
}

function renderValue(v: unknown): string {
  if (typeof v === "string") return v;
  if (v instanceof Error) return v.message;
  try {
    return JSON.stringify(redact(v)) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Placeholder names of a message template, in order (as LogTape parses them). */
function placeholderNames(template: string): string[] {
  const names: string[] = [];
  for (let i = 0; i < template.length; i++) {
    if (template[i] !== "{") continue;
    if (template[i + 1] === "{") {
      i++; // `{{` is a literal brace
      continue;
    }
    const close = template.indexOf("}", i + 1);
    if (close === -1) continue;
    names.push(template.slice(i + 1, close).trim());
    i = close;
  }
  return names;
}

function renderMessage(record: LogRecord): string {
  // A placeholder named like a secret (`{password}`) is masked as its property is.
  const names = typeof record.rawMessage === "string" ? placeholderNames(record.rawMessage) : [];
  let s = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    if (i % 2 === 0) s += String(part);
    else {
      const name = names[(i - 1) / 2];
      s += name && SECRET_KEY_RE.test(name) && part != null ? MASK : renderValue(part);
    }
  }
  return s;
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v) => typeof v === "bigint" ? v.toString() : v);
  } catch {
    return '{"unserializable":true}';
  }
}

/** Builds the line formatter for `options` (exported for tests). */
export function lineFormatter(options: LogOptions): (record: LogRecord) => string {
  const format = options.format ?? "text";
  const secrets = (options.secrets ?? []).filter((s): s is string =>
    typeof s === "string" && s.length >= 3
  );
  const scrub = (line: string) => {
    for (const s of secrets) {
      if (line.includes(s)) line = line.split(s).join(MASK);
    }
    return line;
  };
  return (record) => {
    const timestamp = new Date(record.timestamp).toISOString();
    const level = LEVEL_NAMES[record.level];
    const context = record.category.slice(1).join(".") || ROOT_CATEGORY;
    const message = renderMessage(record);
    const props = redact(record.properties) as Record<string, unknown>;
    if (format === "json") {
      return scrub(safeStringify({
        timestamp,
        level,
        service: options.service,
        environment: options.environment,
        context,
        message,
        ...props,
      }));
    }
    const hasProps = Object.keys(props).length > 0;
    return scrub(
      `${timestamp} ${level.padEnd(5)} [${context}] ${message}${
        hasProps ? " " + safeStringify(props) : ""
      }`,
    );
  };
}

const encoder = new TextEncoder();

function writeStdout(line: string): void {
  const bytes = encoder.encode(line + "\n");
  let written = 0;
  while (written < bytes.length) {
    written += Deno.stdout.writeSync(bytes.subarray(written));
  }
}

/** Configures LogTape for the whole process. Call once, from main. */
export function setupLogging(options: LogOptions = {}): void {
  const format = lineFormatter(options);
  const write = options.write ?? writeStdout;
  const sink: Sink = (record) => {
    try {
      write(format(record));
    } catch {
      // A closed stdout must never crash the service.
    }
  };
  configureSync({
    reset: true,
    sinks: { stdout: sink },
    contextLocalStorage: new AsyncLocalStorage(),
    loggers: [
      { category: ROOT_CATEGORY, sinks: ["stdout"], lowestLevel: LOWEST[options.level ?? "INFO"] },
      { category: ["logtape", "meta"], sinks: ["stdout"], lowestLevel: "warning" },
    ],
  });
}

/** Removes the configuration (tests). */
export function resetLogging(): void {
  resetSync();
}

/** The logger of one module, e.g. `getLogger("consumer")`. */
export function getLogger(context: string): Logger {
  return ltGetLogger([ROOT_CATEGORY, context]);
}

/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4), for tests that scrape
 * `/metrics`. Stricter than Prometheus itself where the service can do better: every sample must
 * belong to a family declared by `# TYPE`, a family's lines form one group, no series appears
 * twice, counters are not negative, and histograms and summaries are checked for consistency
 * (`le` buckets cumulative up to `+Inf`, `+Inf` bucket equal to `_count`, `_sum` present).
 * Any violation throws a {@linkcode PromParseError} naming the line.
 *
 * @module
 */

/** Metric types of `# TYPE` lines. */
export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

/** One sample line. */
export interface Sample {
  /** Sample name, e.g. `http_request_duration_seconds_bucket`. */
  name: string;
  /** Label pairs, values unescaped. */
  labels: Record<string, string>;
  /** Value (NaN and ±Infinity allowed). */
  value: number;
  /** Milliseconds since the epoch, when given. */
  timestamp?: number;
  /** 1-based line number in the exposition. */
  line: number;
}

/** A metric family: its `# TYPE`, `# HELP` and samples. */
export interface MetricFamily {
  name: string;
  type: MetricType;
  /** Docstring of `# HELP`, unescaped, when given. */
  help?: string;
  samples: Sample[];
}

/** Raised for any violation of the format. */
export class PromParseError extends Error {
  constructor(readonly line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = "PromParseError";
  }
}

const METRIC_NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricType>(["counter", "gauge", "histogram", "summary", "untyped"]);
const FLOAT_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const SPECIAL_FLOATS: Record<string, number> = {
  "NaN": NaN,
  "+Inf": Infinity,
  "-Inf": -Infinity,
  "Inf": Infinity,
};

/** Parses a sample value or `le`/`quantile` label value; undefined when it is not a float. */
export function parseFloatStrict(text: string): number | undefined {
  if (text in SPECIAL_FLOATS) return SPECIAL_FLOATS[text];
  return FLOAT_RE.test(text) ? Number(text) : undefined;
}

/**
 * Parses `text` and returns its families by name. Throws {@linkcode PromParseError} on the first
 * violation.
 */
export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  const helpSeen = new Set<string>();
  const closed = new Set<string>(); // families whose group of lines has ended
  const series = new Set<string>();
  const pendingHelp = new Map<string, string>(); // HELP lines whose TYPE has not come yet
  const sampleNames = new Set<string>();
  let current: string | undefined;

  if (text.length > 0 && !text.endsWith("\n")) {
    throw new PromParseError(text.split("\n").length, "the last line must end with a line feed");
  }
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();

  const enter = (family: string, n: number) => {
    if (current === family) return;
    if (closed.has(family)) {
      throw new PromParseError(n, `lines of family ${family} are not in one group`);
    }
    if (current !== undefined) closed.add(current);
    current = family;
  };

  lines.forEach((raw, index) => {
    const n = index + 1;
    if (raw.includes("\r")) throw new PromParseError(n, "carriage return in line");
    const line = raw.replace(/^[ \t]+/, "");
    if (line === "") return;
    if (line.startsWith("#")) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest = ""] = m;
      if (!METRIC_NAME_RE.test(name)) throw new PromParseError(n, `invalid metric name ${name}`);
      if (kind === "HELP") {
        if (helpSeen.has(name)) throw new PromParseError(n, `second HELP for ${name}`);
        helpSeen.add(name);
        const help = unescapeHelp(rest, n);
        enter(name, n);
        const family = families.get(name);
        if (family) {
          if (family.help !== undefined) throw new PromParseError(n, `second HELP for ${name}`);
          family.help = help;
        } else pendingHelp.set(name, help);
        return;
      }
      const type = rest.trim() as MetricType;
      if (!TYPES.has(type)) throw new PromParseError(n, `unknown metric type "${rest.trim()}"`);
      if (families.has(name)) throw new PromParseError(n, `second TYPE for ${name}`);
      const own = type === "histogram" || type === "summary"
        ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`]
        : [name];
      const taken = own.find((s) => sampleNames.has(s));
      if (taken) throw new PromParseError(n, `TYPE for ${name} after samples named ${taken}`);
      enter(name, n);
      families.set(name, { name, type, help: pendingHelp.get(name), samples: [] });
      pendingHelp.delete(name);
      return;
    }
    const sample = parseSampleLine(line, n);
    const family = familyOf(sample.name, families);
    if (!family) {
      throw new PromParseError(n, `sample ${sample.name} belongs to no family declared by TYPE`);
    }
    enter(family.name, n);
    checkSample(family, sample);
    const key = seriesKey(sample.name, sample.labels);
    if (series.has(key)) throw new PromParseError(n, `duplicate series ${key}`);
    series.add(key);
    sampleNames.add(sample.name);
    family.samples.push(sample);
  });

  for (const [name] of pendingHelp) {
    throw new PromParseError(lines.length, `HELP for ${name} without a TYPE`);
  }
  for (const family of families.values()) {
    if (family.type === "histogram") checkHistogram(family);
    if (family.type === "summary") checkSummary(family);
  }
  return families;
}

/** Parses one sample line (no leading blanks). */
export function parseSampleLine(line: string, n = 1): Sample {
  let i = 0;
  while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i])) i++;
  const name = line.slice(0, i);
  if (!METRIC_NAME_RE.test(name)) throw new PromParseError(n, `invalid metric name in "${line}"`);
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i++;
    while (true) {
      i = skipBlanks(line, i);
      if (line[i] === "}") {
        i++;
        break;
      }
      const start = i;
      while (i < line.length && /[a-zA-Z0-9_]/.test(line[i])) i++;
      const label = line.slice(start, i);
      if (!LABEL_NAME_RE.test(label)) {
        throw new PromParseError(n, `invalid label name at column ${start + 1}`);
      }
      if (label.startsWith("__")) throw new PromParseError(n, `reserved label name ${label}`);
      if (label in labels) throw new PromParseError(n, `label ${label} given twice`);
      i = skipBlanks(line, i);
      if (line[i] !== "=") throw new PromParseError(n, `expected = after label ${label}`);
      i = skipBlanks(line, i + 1);
      if (line[i] !== '"') throw new PromParseError(n, `expected " to open the value of ${label}`);
      i++;
      let value = "";
      while (true) {
        if (i >= line.length) throw new PromParseError(n, `unterminated value of label ${label}`);
        const ch = line[i];
        if (ch === '"') {
          i++;
          break;
        }
        if (ch === "\\") {
          const next = line[i + 1];
          if (next === "\\") value += "\\";
          else if (next === '"') value += '"';
          else if (next === "n") value += "\n";
          else throw new PromParseError(n, `invalid escape \\${next ?? ""} in label ${label}`);
          i += 2;
          continue;
        }
        value += ch;
        i++;
      }
      labels[label] = value;
      i = skipBlanks(line, i);
      if (line[i] === ",") {
        i++;
        continue;
      }
      if (line[i] === "}") {
        i++;
        break;
      }
      throw new PromParseError(n, `expected , or } after the value of ${label}`);
    }
  }
  const rest = line.slice(i);
  if (!/^[ \t]/.test(rest)) throw new PromParseError(n, `expected a blank before the value`);
  const parts = rest.trim().split(/[ \t]+/);
  if (parts.length < 1 || parts.length > 2 || parts[0] === "") {
    throw new PromParseError(n, `expected "value [timestamp]", got "${rest.trim()}"`);
  }
  const value = parseFloatStrict(parts[0]);
  if (value === undefined) throw new PromParseError(n, `invalid value "${parts[0]}"`);
  const sample: Sample = { name, labels, value, line: n };
  if (parts.length === 2) {
    if (!/^-?\d+$/.test(parts[1])) throw new PromParseError(n, `invalid timestamp "${parts[1]}"`);
    sample.timestamp = Number(parts[1]);
  }
  return sample;
}

/** Identity of a series: name and labels sorted by name. */
export function seriesKey(name: string, labels: Record<string, string>): string {
  const pairs = Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`);
  return `${name}{${pairs.join(",")}}`;
}

/** The family a sample name belongs to: its own name first, else a histogram/summary suffix. */
function familyOf(
  sampleName: string,
  families: Map<string, MetricFamily>,
): MetricFamily | undefined {
  const own = families.get(sampleName);
  if (own) return own;
  const m = /^(.*)_(bucket|sum|count)$/.exec(sampleName);
  if (!m) return undefined;
  const base = families.get(m[1]);
  if (!base) return undefined;
  if (base.type === "histogram") return base;
  if (base.type === "summary" && m[2] !== "bucket") return base;
  return undefined;
}

function checkSample(family: MetricFamily, s: Sample): void {
  const suffix = s.name.slice(family.name.length);
  switch (family.type) {
    case "counter":
      if (s.value < 0 || Number.isNaN(s.value)) {
        throw new PromParseError(s.line, `counter ${s.name} has value ${s.value}`);
      }
      break;
    case "histogram":
      if (suffix === "") {
        throw new PromParseError(s.line, `histogram sample ${s.name} lacks _bucket/_sum/_count`);
      }
      if (suffix === "_bucket") {
        if (!("le" in s.labels)) throw new PromParseError(s.line, `bucket without le`);
        const le = parseFloatStrict(s.labels.le);
        if (le === undefined || Number.isNaN(le)) {
          throw new PromParseError(s.line, `invalid le "${s.labels.le}"`);
        }
      } else if ("le" in s.labels) {
        throw new PromParseError(s.line, `${s.name} must not have an le label`);
      }
      if (suffix !== "_sum" && (s.value < 0 || Number.isNaN(s.value))) {
        throw new PromParseError(s.line, `${s.name} has value ${s.value}`);
      }
      break;
    case "summary":
      if (suffix === "") {
        if (!("quantile" in s.labels)) throw new PromParseError(s.line, `quantile label missing`);
        const q = parseFloatStrict(s.labels.quantile);
        if (q === undefined || !(q >= 0 && q <= 1)) {
          throw new PromParseError(s.line, `invalid quantile "${s.labels.quantile}"`);
        }
      } else if ("quantile" in s.labels) {
        throw new PromParseError(s.line, `${s.name} must not have a quantile label`);
      }
      break;
    default:
      break;
  }
}

/** Labels without `le` / `quantile`: the identity of one histogram or summary series. */
function groupKey(labels: Record<string, string>, drop: string): string {
  const rest = { ...labels };
  delete rest[drop];
  return seriesKey("", rest);
}

function checkHistogram(family: MetricFamily): void {
  const groups = new Map<string, { buckets: Sample[]; sum?: Sample; count?: Sample }>();
  const groupFor = (s: Sample) => {
    const key = groupKey(s.labels, "le");
    let g = groups.get(key);
    if (!g) groups.set(key, g = { buckets: [] });
    return g;
  };
  for (const s of family.samples) {
    const g = groupFor(s);
    if (s.name.endsWith("_bucket")) g.buckets.push(s);
    else if (s.name.endsWith("_sum")) g.sum = s;
    else g.count = s;
  }
  for (const [key, g] of groups) {
    const where = g.buckets[0]?.line ?? g.sum?.line ?? g.count?.line ?? 0;
    const label = `${family.name}${key}`;
    if (g.buckets.length === 0) throw new PromParseError(where, `${label} has no buckets`);
    if (!g.sum) throw new PromParseError(where, `${label} has no _sum`);
    if (!g.count) throw new PromParseError(where, `${label} has no _count`);
    const sorted = [...g.buckets].sort((a, b) =>
      parseFloatStrict(a.labels.le)! - parseFloatStrict(b.labels.le)!
    );
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].value < sorted[i - 1].value) {
        throw new PromParseError(
          sorted[i].line,
          `${label}: bucket le="${sorted[i].labels.le}" (${sorted[i].value}) is below ` +
            `le="${sorted[i - 1].labels.le}" (${sorted[i - 1].value})`,
        );
      }
    }
    const inf = sorted.at(-1)!;
    if (parseFloatStrict(inf.labels.le) !== Infinity) {
      throw new PromParseError(where, `${label} has no le="+Inf" bucket`);
    }
    if (inf.value !== g.count.value) {
      throw new PromParseError(
        g.count.line,
        `${label}: _count ${g.count.value} differs from the +Inf bucket ${inf.value}`,
      );
    }
  }
}

function checkSummary(family: MetricFamily): void {
  const groups = new Map<string, { sum?: Sample; count?: Sample; line: number }>();
  for (const s of family.samples) {
    const key = groupKey(s.labels, "quantile");
    const g = groups.get(key) ?? { line: s.line };
    groups.set(key, g);
    if (s.name.endsWith("_sum") && s.name !== family.name) g.sum = s;
    else if (s.name.endsWith("_count") && s.name !== family.name) g.count = s;
  }
  for (const [key, g] of groups) {
    if (!g.sum || !g.count) {
      throw new PromParseError(g.line, `${family.name}${key} lacks _sum or _count`);
    }
  }
}

function unescapeHelp(text: string, n: number): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch !== "\\") {
      out += ch;
      continue;
    }
    const next = text[i + 1];
    if (next === "\\") out += "\\";
    else if (next === "n") out += "\n";
    else throw new PromParseError(n, `invalid escape \\${next ?? ""} in HELP`);
    i++;
  }
  return out;
}

function skipBlanks(line: string, i: number): number {
  while (line[i] === " " || line[i] === "\t") i++;
  return i;
}

// ---------------------------------------------------------------------------
// Queries for assertions.

/** The samples of `name` (a sample name) whose labels include every pair of `match`. */
export function findSamples(
  families: Map<string, MetricFamily>,
  name: string,
  match: Record<string, string> = {},
): Sample[] {
  const family = familyOf(name, families);
  if (!family) return [];
  return family.samples.filter((s) =>
    s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)
  );
}

/**
 * The value of the one series `name` whose labels are exactly `labels`; undefined when there is
 * none.
 */
export function sampleValue(
  families: Map<string, MetricFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const key = seriesKey(name, labels);
  return findSamples(families, name).find((s) => seriesKey(s.name, s.labels) === key)?.value;
}

/** Sum of the values of `name` over the series whose labels include `match`. */
export function sumSamples(
  families: Map<string, MetricFamily>,
  name: string,
  match: Record<string, string> = {},
): number {
  return findSamples(families, name, match).reduce((total, s) => total + s.value, 0);
}

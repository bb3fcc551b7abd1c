/**
 * Configuration problems: one `ConfigProblem` per invalid variable, collected
 * into one `ConfigError` (main maps it to exit 78), with secret values masked
 * wherever a problem is shown.
 */

/** Variables whose values are never shown, not even in configuration errors. */
export const SECRET_VARIABLES: ReadonlySet<string> = new Set([
  "REDIS_PW",
  "API_KEY",
  "REDIS_TLS_KEY",
]);

/** One problem with one variable. */
export interface ConfigProblem {
  variable: string;
  value: string | undefined;
  message: string;
}

/** Thrown when the environment is invalid; main maps it to exit 78. */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super(`Invalid configuration: ${problems.map((p) => p.variable).join(", ")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }

  /** One line per problem: `NAME=value: what is wrong` (secrets masked). */
  lines(): string[] {
    return this.problems.map((p) =>
      `${p.variable}=${maskValue(p.variable, p.value)}: ${p.message}`
    );
  }
}

function maskValue(variable: string, value: string | undefined): string {
  if (value === undefined) return "(unset)";
  if (SECRET_VARIABLES.has(variable)) return "***";
  return JSON.stringify(value.length > 200 ? value.slice(0, 200) + "…" : value);
}

/**
 * A list of problems that keeps one per variable: a later rule does not repeat
 * a variable an earlier one reported (e.g. a whitespace-only REDIS_HOST).
 */
export class ProblemList {
  readonly #problems: ConfigProblem[];
  readonly #env: Readonly<Record<string, string>>;

  /** `env` supplies the value shown with each problem; `initial` are problems found before. */
  constructor(env: Readonly<Record<string, string>>, initial: readonly ConfigProblem[] = []) {
    this.#env = env;
    this.#problems = [...initial];
  }

  /** Adds a problem with `variable`, unless it has one already. */
  add(variable: string, message: string): void {
    if (this.has(variable)) return;
    this.#problems.push({ variable, value: this.#env[variable], message });
  }

  /** True when `variable` has a problem. */
  has(variable: string): boolean {
    return this.#problems.some((p) => p.variable === variable);
  }

  /** The problems so far. */
  get all(): readonly ConfigProblem[] {
    return this.#problems;
  }
}

import { type Logger, pino } from "pino";

/** The one logger factory: JSON lines on stdout, level from TRIBUTARY_LOG_LEVEL (default info). */
export function createLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    name: "tributary",
    level: process.env.TRIBUTARY_LOG_LEVEL ?? "info",
    base: { component, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

export type { Logger };

import { testEnv } from "./env.js";

/**
 * Fails fast, with one clear message, when the tests run without the environment that
 * `scripts/testenv up` provides (npm test brings it up first).
 */
export default function setup(): void {
  if (process.env.TRIBUTARY_UNIT_ONLY === "1") return;
  testEnv();
}

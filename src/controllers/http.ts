/** What the controllers say of the data-plane services they call over HTTP. */

/**
 * Why a request (fetch with `AbortSignal.timeout(timeoutMs)`) got no answer, in the words of the
 * network: ENOTFOUND, ECONNREFUSED, a timeout.
 */
export function unreachable(error: unknown, timeoutMs: number): string {
  if (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError")) {
    return `no answer within ${timeoutMs} ms`;
  }
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
}

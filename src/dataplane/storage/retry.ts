/**
 * The storage clients' one retry policy (HDFS's RetryPolicies, Kafka's retry.backoff.ms): what
 * may be retried, how long to wait before each new attempt, and when to give up. The failover
 * between name nodes and the retries of a busy or refused data node are both this helper with a
 * different policy, not a loop per call site.
 */
import { isConnectionError, RemoteException } from "./protocol.js";

export interface RetryPolicy {
  /** Whether the attempt that failed with `error` may be made again. */
  retriable(error: unknown): boolean;
  /** How long to wait before attempt `next` (1-based: the first retry is attempt 2). */
  delayMs(next: number, error: unknown): number;
  /** Attempts in all, the first included (default: no limit). */
  maxAttempts?: number;
  /** No new attempt starts this long after the first one began (default: no limit). */
  deadlineMs?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs `attempt` (given its 1-based number) until it succeeds, the policy says the error is not
 * retriable, or attempts or time run out; then rethrows the last error.
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  attempt: (number: number) => Promise<T>,
  wait: (ms: number) => Promise<void> = sleep,
): Promise<T> {
  const deadline = Date.now() + (policy.deadlineMs ?? Number.POSITIVE_INFINITY);
  for (let number = 1; ; number++) {
    try {
      return await attempt(number);
    } catch (error) {
      const exhausted = number >= (policy.maxAttempts ?? Number.POSITIVE_INFINITY) || Date.now() > deadline;
      if (exhausted || !policy.retriable(error)) throw error;
      const delay = policy.delayMs(number + 1, error);
      if (delay > 0) await wait(delay);
    }
  }
}

/**
 * HDFS's failoverOnNetworkException: a standby's refusal or a name node that cannot be reached
 * moves the call to the next of `nameNodes` at once; after a whole round found no active one it
 * waits (100 ms, doubling to 1 s) for a failover to finish, until `failoverTimeoutMs`.
 */
export function failoverPolicy(nameNodes: number, failoverTimeoutMs: number): RetryPolicy {
  return {
    retriable: (error) =>
      isConnectionError(error) ||
      (error instanceof RemoteException && error.exception === "StandbyException"),
    delayMs: (next) => {
      const roundsDone = (next - 1) / nameNodes;
      if (!Number.isInteger(roundsDone)) return 0;
      return Math.min(100 * 2 ** (roundsDone - 1), 1_000);
    },
    deadlineMs: failoverTimeoutMs,
  };
}

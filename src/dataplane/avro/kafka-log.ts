import type { logCreator } from "kafkajs";
import kafkajs from "kafkajs";
import type { Logger } from "../../log.js";

const { logLevel } = kafkajs;

/**
 * Sends kafkajs's own log lines to a pino logger. kafkajs logs every retriable error response
 * (a coordinator still loading, a leader moving) at ERROR before it retries; those are the normal
 * life of a cluster, so they go to debug, and only what kafkajs gives up on stays an error.
 */
export function kafkaLogCreator(logger: Logger): logCreator {
  return () =>
    ({ namespace, level, log }) => {
      const { message, timestamp: _timestamp, logger: _name, ...extra } = log;
      const bindings = { kafkajs: namespace, ...extra };
      const retriable =
        namespace === "Connection" || extra.retryCount !== undefined || extra.retryTime !== undefined;
      if (level === logLevel.ERROR && !retriable) logger.error(bindings, message);
      else if (level === logLevel.WARN && !retriable) logger.warn(bindings, message);
      else logger.debug(bindings, message);
    };
}

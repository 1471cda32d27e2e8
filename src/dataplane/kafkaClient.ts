/**
 * How the data-plane roles reach a Kafka cluster that wants TLS or SASL. The Topic controller
 * mounts the CA and client-certificate Secrets as read-only files and passes the SASL username and
 * password through `secretKeyRef` variables, so a role only ever sees file paths and values the
 * kubelet put into its environment (TRIBUTARY_<ROLE>_TLS_CA_FILE, TRIBUTARY_<ROLE>_SASL_PASSWORD…).
 *
 * The fields below are spread into each role's config schema; `kafkaSecurity` checks that the
 * settings go together and reads the files, so a half-given setting or an unreadable file is a
 * ConfigError at start-up that names the flag and the variable, not a handshake failure later.
 */
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import type { Kafka, KafkaConfig, SASLOptions } from "kafkajs";
import kafkajs from "kafkajs";
import { z } from "zod";
import type { Logger } from "../log.js";
import { kafkaLogCreator } from "./avro/kafka-log.js";
import { booleanFlag } from "./config.js";

const { Kafka: KafkaClient, logLevel } = kafkajs;

export const saslMechanisms = ["plain", "scram-sha-256", "scram-sha-512"] as const;

const absoluteFile = (what: string) =>
  z
    .string()
    .startsWith("/", { error: `${what} must be an absolute path` })
    .optional();

export const kafkaSecurityFields = {
  /** TLS towards the brokers; implied by any of the TLS files. The system trust store without a CA file. */
  tls: booleanFlag.optional(),
  /** PEM CA certificate(s) that sign the brokers' certificates. */
  tlsCaFile: absoluteFile("tlsCaFile"),
  /** PEM client certificate for mutual TLS; needs tlsKeyFile. */
  tlsCertFile: absoluteFile("tlsCertFile"),
  tlsKeyFile: absoluteFile("tlsKeyFile"),
  saslMechanism: z
    .enum(saslMechanisms, { error: `saslMechanism must be one of ${saslMechanisms.join(", ")}` })
    .optional(),
  saslUsername: z.string().min(1).optional(),
  saslPassword: z.string().min(1).optional(),
};

type SecuritySettings = {
  [K in keyof typeof kafkaSecurityFields]?: z.output<(typeof kafkaSecurityFields)[K]>;
};

/** What kafkajs needs beyond the broker list. */
export interface KafkaSecurity {
  ssl?: ConnectionOptions | true;
  sasl?: SASLOptions;
}

type Issues = { issues: z.core.$ZodRawIssue[] };

/**
 * Checks that the settings go together and reads the TLS files. Used in a role schema's
 * transform: the problems become issues on the fields they concern.
 */
export function kafkaSecurity(settings: SecuritySettings, ctx: Issues): KafkaSecurity {
  const problem = (field: keyof SecuritySettings, message: string) =>
    ctx.issues.push({ code: "custom", path: [field], message, input: settings[field] });
  const security: KafkaSecurity = {};

  const tlsFiles = settings.tlsCaFile ?? settings.tlsCertFile ?? settings.tlsKeyFile;
  if (settings.tls === false && tlsFiles !== undefined) {
    problem("tls", `tls is false but a TLS file is given (${tlsFiles}); remove it or set tls to true`);
  } else if (settings.tls === true || tlsFiles !== undefined) {
    const read = (field: "tlsCaFile" | "tlsCertFile" | "tlsKeyFile"): string | undefined => {
      const path = settings[field];
      if (path === undefined) return undefined;
      try {
        return readFileSync(path, "utf8");
      } catch (error) {
        problem(
          field,
          `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        );
        return undefined;
      }
    };
    if ((settings.tlsCertFile === undefined) !== (settings.tlsKeyFile === undefined)) {
      problem(
        settings.tlsCertFile === undefined ? "tlsCertFile" : "tlsKeyFile",
        "mutual TLS needs both tlsCertFile and tlsKeyFile",
      );
    }
    const ca = read("tlsCaFile");
    const cert = read("tlsCertFile");
    const key = read("tlsKeyFile");
    const options: ConnectionOptions = {
      ...(ca !== undefined ? { ca: [ca] } : {}),
      ...(cert !== undefined && key !== undefined ? { cert, key } : {}),
    };
    security.ssl = Object.keys(options).length > 0 ? options : true;
  }

  const { saslMechanism: mechanism, saslUsername: username, saslPassword: password } = settings;
  if (mechanism !== undefined) {
    if (username === undefined) problem("saslUsername", `SASL mechanism ${mechanism} needs saslUsername`);
    if (password === undefined) problem("saslPassword", `SASL mechanism ${mechanism} needs saslPassword`);
    if (username !== undefined && password !== undefined) {
      security.sasl = { mechanism, username, password } as SASLOptions;
    }
  } else if (username !== undefined || password !== undefined) {
    problem(
      "saslMechanism",
      `a SASL ${username !== undefined ? "username" : "password"} is given without saslMechanism (${saslMechanisms.join(", ")})`,
    );
  }
  return security;
}

/** Drops the raw settings (the password among them) from a parsed config: `security` replaces them. */
export function withoutSecuritySettings<T extends SecuritySettings>(
  config: T,
): Omit<T, keyof SecuritySettings> {
  const {
    tls: _tls,
    tlsCaFile: _ca,
    tlsCertFile: _cert,
    tlsKeyFile: _key,
    saslMechanism: _mechanism,
    saslUsername: _username,
    saslPassword: _password,
    ...rest
  } = config;
  return rest;
}

export interface KafkaClientOptions {
  clientId: string;
  brokers: string[];
  security?: KafkaSecurity;
  logger?: Logger;
  retry?: KafkaConfig["retry"];
}

/** The kafkajs client of a data-plane role: its brokers, TLS and SASL, logs to the role's logger. */
export function createKafkaClient(options: KafkaClientOptions): Kafka {
  return new KafkaClient({
    clientId: options.clientId,
    brokers: options.brokers,
    ...(options.security?.ssl ? { ssl: options.security.ssl } : {}),
    ...(options.security?.sasl ? { sasl: options.security.sasl } : {}),
    ...(options.logger
      ? { logLevel: logLevel.INFO, logCreator: kafkaLogCreator(options.logger) }
      : { logLevel: logLevel.NOTHING }),
    ...(options.retry ? { retry: options.retry } : {}),
  });
}

/** The brokers refused the SASL login: a wrong username, password or mechanism, which retrying will not fix. */
export class KafkaAuthenticationError extends Error {
  override name = "KafkaAuthenticationError";
}

/**
 * kafkajs reports a refused login as "SASL SCRAM SHA512 authentication failed: …" deep in a
 * connect; this names the brokers, the user and where the credentials come from. Other errors
 * are returned as they are.
 */
export function explainKafkaError(
  error: unknown,
  brokers: string[],
  security: KafkaSecurity | undefined,
): unknown {
  if (!(error instanceof kafkajs.KafkaJSSASLAuthenticationError)) return error;
  const sasl = security?.sasl as { mechanism: string; username?: string } | undefined;
  const who = sasl ? `the ${sasl.mechanism} login of user '${sasl.username ?? "?"}'` : "the SASL login";
  return new KafkaAuthenticationError(
    `Kafka (${brokers.join(",")}) refused ${who}: ${error.message}. Check the username and password (the Secret named in the Topic's spec.kafka.sasl.credentialsSecret) and the mechanism the brokers expect`,
    { cause: error },
  );
}

import http from "node:http";
import https from "node:https";
import { KubeConfig } from "@kubernetes/client-node";

/**
 * The operator's one door to the API server. It keeps `@kubernetes/client-node`'s KubeConfig
 * for authentication (certificates, tokens, exec plugins, in-cluster service account) and
 * speaks JSON over a keep-alive agent itself: the controllers handle unstructured objects of
 * any kind, need subresource paths (`/status`) and exact status codes (404, 409, 410), and the
 * generated typed clients turn timestamps into `Date` objects that do not round-trip through
 * server-side apply.
 */

/** The coordinates of a resource type, enough to build its REST paths. */
export interface ResourceType {
  group: string;
  version: string;
  kind: string;
  plural: string;
  namespaced?: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
  ownerReferences?: OwnerReference[];
  [field: string]: unknown;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** An object as the API server returns it, without assuming its kind. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
  [field: string]: unknown;
}

export interface ObjectList<T extends KubeObject = KubeObject> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

/** A refusal of the API server, carrying its status code and reason (`NotFound`, `Conflict`, `Expired`…). */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof ApiError && error.statusCode === 404;
}

export function isConflict(error: unknown): boolean {
  return error instanceof ApiError && error.statusCode === 409;
}

export function isGone(error: unknown): boolean {
  return error instanceof ApiError && error.statusCode === 410;
}

export const apiVersionOf = (type: ResourceType): string =>
  type.group ? `${type.group}/${type.version}` : type.version;

/** `/api/v1` for the core group, `/apis/<group>/<version>` otherwise. */
export function groupVersionPath(type: Pick<ResourceType, "group" | "version">): string {
  return type.group ? `/apis/${type.group}/${type.version}` : `/api/${type.version}`;
}

/** The collection path, namespaced when a namespace is given and the type is namespaced. */
export function collectionPath(type: ResourceType, namespace?: string): string {
  const scoped = namespace && type.namespaced !== false ? `/namespaces/${encodeURIComponent(namespace)}` : "";
  return `${groupVersionPath(type)}${scoped}/${type.plural}`;
}

export function objectPath(type: ResourceType, namespace: string | undefined, name: string): string {
  return `${collectionPath(type, namespace)}/${encodeURIComponent(name)}`;
}

/**
 * Loads the configuration the way client-go does: in a pod (`KUBERNETES_SERVICE_HOST` set)
 * the service account, otherwise the given file, `KUBECONFIG`, or `~/.kube/config`.
 */
export function loadKubeConfig(kubeconfig?: string): KubeConfig {
  const config = new KubeConfig();
  if (kubeconfig) config.loadFromFile(kubeconfig);
  else if (process.env.KUBERNETES_SERVICE_HOST) config.loadFromCluster();
  else config.loadFromDefault();
  if (!config.getCurrentCluster()) {
    throw new Error(
      `no current cluster in the kubeconfig (${kubeconfig ?? process.env.KUBECONFIG ?? "~/.kube/config"})`,
    );
  }
  return config;
}

type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  contentType?: string;
}

export class KubeClient {
  private agent: http.Agent | undefined;
  private readonly server: URL;

  constructor(readonly config: KubeConfig) {
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error("KubeClient: the kubeconfig has no current cluster");
    this.server = new URL(cluster.server);
  }

  static fromFile(kubeconfig?: string): KubeClient {
    return new KubeClient(loadKubeConfig(kubeconfig));
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const { headers, agent } = await this.connection();
    const url = new URL(this.server.pathname.replace(/\/$/, "") + path, this.server);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const requestHeaders: Record<string, string> = { ...headers, accept: "application/json" };
    if (body !== undefined) {
      requestHeaders["content-type"] = options.contentType ?? "application/json";
      requestHeaders["content-length"] = String(Buffer.byteLength(body));
    }
    const transport = url.protocol === "https:" ? https : http;
    const { statusCode, text } = await new Promise<{ statusCode: number; text: string }>(
      (resolve, reject) => {
        const request = transport.request(url, { method, headers: requestHeaders, agent }, (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () =>
            resolve({ statusCode: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
          );
          response.on("error", reject);
        });
        request.setTimeout(60_000, () =>
          request.destroy(new Error(`${method} ${path}: no answer within 60s`)),
        );
        request.on("error", reject);
        if (body !== undefined) request.write(body);
        request.end();
      },
    );
    if (statusCode >= 200 && statusCode < 300) return (text ? JSON.parse(text) : undefined) as T;
    let reason = http.STATUS_CODES[statusCode] ?? "Unknown";
    let message = text;
    try {
      const status = JSON.parse(text) as { reason?: string; message?: string };
      reason = status.reason ?? reason;
      message = status.message ?? text;
    } catch {
      // not a Status object (a proxy's error page): keep the raw text
    }
    throw new ApiError(statusCode, reason, `${method} ${path}: ${statusCode} ${reason}: ${message}`);
  }

  get<T extends KubeObject = KubeObject>(type: ResourceType, namespace: string | undefined, name: string) {
    return this.request<T>("GET", objectPath(type, namespace, name));
  }

  /** Reads an object, answering `undefined` when it does not exist. */
  async find<T extends KubeObject = KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
  ): Promise<T | undefined> {
    try {
      return await this.get<T>(type, namespace, name);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  list<T extends KubeObject = KubeObject>(type: ResourceType, namespace?: string, query: Query = {}) {
    return this.request<ObjectList<T>>("GET", collectionPath(type, namespace), { query });
  }

  create<T extends KubeObject = KubeObject>(type: ResourceType, object: KubeObject) {
    return this.request<T>("POST", collectionPath(type, object.metadata.namespace), { body: object });
  }

  replace<T extends KubeObject = KubeObject>(type: ResourceType, object: KubeObject) {
    return this.request<T>("PUT", objectPath(type, object.metadata.namespace, object.metadata.name), {
      body: object,
    });
  }

  mergePatch<T extends KubeObject = KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    subresource?: string,
  ) {
    const path = objectPath(type, namespace, name) + (subresource ? `/${subresource}` : "");
    return this.request<T>("PATCH", path, { body: patch, contentType: "application/merge-patch+json" });
  }

  /** JSON patch (RFC 6902); its `test` operations make a change conditional on what is there. */
  jsonPatch<T extends KubeObject = KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    operations: unknown[],
  ) {
    return this.request<T>("PATCH", objectPath(type, namespace, name), {
      body: operations,
      contentType: "application/json-patch+json",
    });
  }

  /**
   * Server-side apply: the server merges the fields this manager owns and takes ownership of
   * them (force, since the operator is the single writer of what it generates). JSON is valid
   * YAML, so the body is sent as JSON under the apply content type.
   */
  apply<T extends KubeObject = KubeObject>(
    type: ResourceType,
    object: KubeObject,
    fieldManager: string,
    subresource?: string,
  ) {
    const path =
      objectPath(type, object.metadata.namespace, object.metadata.name) +
      (subresource ? `/${subresource}` : "");
    return this.request<T>("PATCH", path, {
      body: object,
      contentType: "application/apply-patch+yaml",
      query: { fieldManager, force: true },
    });
  }

  /**
   * Deletes an object; one already gone is not an error. With `preconditions` the API server
   * deletes only that very object (uid) in that very state (resourceVersion), and answers 409
   * Conflict otherwise: a decision taken on a cached copy cannot hit a successor or an edit.
   */
  async delete(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    propagationPolicy: "Foreground" | "Background" | "Orphan" = "Background",
    preconditions?: { uid?: string; resourceVersion?: string },
  ): Promise<void> {
    try {
      await this.request("DELETE", objectPath(type, namespace, name), {
        body: {
          kind: "DeleteOptions",
          apiVersion: "v1",
          propagationPolicy,
          ...(preconditions ? { preconditions } : {}),
        },
      });
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  /**
   * Authentication headers are taken afresh for every request (tokens rotate, exec plugins
   * renew); the TLS agent is built once and kept alive, so reconciles reuse connections.
   */
  private async connection(): Promise<{ headers: Record<string, string>; agent: http.Agent }> {
    const options: https.RequestOptions = {};
    await this.config.applyToHTTPSOptions(options);
    if (!this.agent) {
      const base = { keepAlive: true, maxSockets: 32 };
      this.agent =
        this.server.protocol === "https:"
          ? new https.Agent({
              ...base,
              ca: options.ca,
              cert: options.cert,
              key: options.key,
              servername: options.servername,
              ...(options.rejectUnauthorized === undefined
                ? {}
                : { rejectUnauthorized: options.rejectUnauthorized }),
            })
          : new http.Agent(base);
    }
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(options.headers ?? {})) {
      if (typeof value === "string") headers[key] = value;
      else if (typeof value === "number") headers[key] = String(value);
    }
    if (options.auth) headers.authorization = `Basic ${Buffer.from(options.auth).toString("base64")}`;
    return { headers, agent: this.agent };
  }

  /** Closes idle keep-alive connections so a stopped operator leaves the event loop empty. */
  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }
}

/** Built-in types the controllers create or read. */
export const builtin = {
  namespace: { group: "", version: "v1", kind: "Namespace", plural: "namespaces", namespaced: false },
  node: { group: "", version: "v1", kind: "Node", plural: "nodes", namespaced: false },
  pod: { group: "", version: "v1", kind: "Pod", plural: "pods" },
  service: { group: "", version: "v1", kind: "Service", plural: "services" },
  configMap: { group: "", version: "v1", kind: "ConfigMap", plural: "configmaps" },
  secret: { group: "", version: "v1", kind: "Secret", plural: "secrets" },
  persistentVolumeClaim: {
    group: "",
    version: "v1",
    kind: "PersistentVolumeClaim",
    plural: "persistentvolumeclaims",
  },
  deployment: { group: "apps", version: "v1", kind: "Deployment", plural: "deployments" },
  statefulSet: { group: "apps", version: "v1", kind: "StatefulSet", plural: "statefulsets" },
  podDisruptionBudget: {
    group: "policy",
    version: "v1",
    kind: "PodDisruptionBudget",
    plural: "poddisruptionbudgets",
  },
  lease: { group: "coordination.k8s.io", version: "v1", kind: "Lease", plural: "leases" },
  event: { group: "events.k8s.io", version: "v1", kind: "Event", plural: "events" },
  customResourceDefinition: {
    group: "apiextensions.k8s.io",
    version: "v1",
    kind: "CustomResourceDefinition",
    plural: "customresourcedefinitions",
    namespaced: false,
  },
} satisfies Record<string, ResourceType>;

/** Finds the resource type of an object from its apiVersion and kind among known types. */
export function typeOf(object: Pick<KubeObject, "apiVersion" | "kind">, known: ResourceType[]): ResourceType {
  const found = known.find((type) => apiVersionOf(type) === object.apiVersion && type.kind === object.kind);
  if (!found)
    throw new Error(`unknown resource type ${object.apiVersion} ${object.kind}: not among the owned kinds`);
  return found;
}

export const objectKey = (object: { metadata: { namespace?: string; name: string } }): string =>
  object.metadata.namespace ? `${object.metadata.namespace}/${object.metadata.name}` : object.metadata.name;

export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const slash = key.indexOf("/");
  return slash < 0
    ? { namespace: undefined, name: key }
    : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

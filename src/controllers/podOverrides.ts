/**
 * `podOverrides`: a pod template a user writes, merged over the one a controller generates,
 * with the rules of Kubernetes' strategic merge patch for pod templates, so it reads the way
 * `kubectl patch` would:
 *
 * - objects merge key by key, recursively;
 * - a scalar, or a list without a merge key (args, command, tolerations), replaces;
 * - lists of named things merge item by item on their merge key: containers by name (a
 *   sidecar is added, the main container is changed field by field), env by name, volumes by
 *   name, volumeMounts by mountPath, ports by containerPort…; new items are appended;
 * - `null` removes a field, as in a merge patch.
 *
 * Pure: neither input is modified.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** Merge keys of the lists of a pod template, from the `patchMergeKey` tags of k8s.io/api. */
const mergeKeys: Record<string, string> = {
  containers: "name",
  initContainers: "name",
  ephemeralContainers: "name",
  volumes: "name",
  env: "name",
  imagePullSecrets: "name",
  resourceClaims: "name",
  volumeMounts: "mountPath",
  volumeDevices: "devicePath",
  ports: "containerPort",
  hostAliases: "ip",
  topologySpreadConstraints: "topologyKey",
};

const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value);

export function mergePodTemplate<T>(generated: T, overrides: unknown): T {
  if (overrides === undefined) return structuredClone(generated);
  return mergeValue(generated as Json, overrides as Json, undefined) as T;
}

function mergeValue(base: Json | undefined, patch: Json, field: string | undefined): Json {
  if (isObject(patch)) {
    const result: JsonObject = isObject(base) ? structuredClone(base) : {};
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete result[key];
      else result[key] = mergeValue(result[key], value, key);
    }
    return result;
  }
  if (Array.isArray(patch)) {
    const key = field === undefined ? undefined : mergeKeys[field];
    if (key && Array.isArray(base)) return mergeList(base, patch, key);
    return structuredClone(patch);
  }
  return patch;
}

function mergeList(base: Json[], patch: Json[], key: string): Json[] {
  const result = structuredClone(base);
  for (const item of patch) {
    const id = isObject(item) ? item[key] : undefined;
    const index =
      id === undefined ? -1 : result.findIndex((existing) => isObject(existing) && existing[key] === id);
    if (index < 0) result.push(structuredClone(item));
    else result[index] = mergeValue(result[index], item, undefined);
  }
  return result;
}

/**
 * The security of every pod the controllers generate, written once: Kubernetes' `restricted`
 * Pod Security Standard, so every Tributary pod runs in a namespace labelled
 * `pod-security.kubernetes.io/enforce: restricted`.
 *
 * - the pod: a non-root uid (1000, the image's `node` user), volumes group-owned by gid 1000 so
 *   that user can write them, and the container runtime's default seccomp profile;
 * - each container: no privilege escalation, no Linux capabilities, a read-only root filesystem.
 *   The roles write only to their volumes (name and data nodes under /var/lib/tributary, a sink
 *   to its target; its open files are hidden there until they close) and Node.js itself writes
 *   nothing to disk, so a role needs no writable /tmp; the sink keeps its emptyDir there;
 * - no service-account token for a pod whose processes never call the API server: none of the
 *   data-plane roles does, and a token they never use is one a compromised pod could.
 */
import { mergePodTemplate } from "./podOverrides.js";

/** Pod-level `securityContext` of every generated pod. */
export const restrictedPodSecurityContext = {
  runAsNonRoot: true,
  runAsUser: 1000,
  fsGroup: 1000,
  seccompProfile: { type: "RuntimeDefault" },
} as const;

/** `securityContext` of every container of a generated pod. */
export const restrictedContainerSecurityContext = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ["ALL"] },
} as const;

export interface PodApiAccess {
  /** Whether the pod's processes call the API server: only then is the service-account token mounted. */
  callsApiServer: boolean;
}

interface PodTemplate {
  spec?: {
    containers?: ReadonlyArray<{ name?: unknown }>;
    initContainers?: ReadonlyArray<{ name?: unknown }>;
  };
}

/**
 * The template with the restricted security beneath what it already says. Applied after
 * podOverrides are merged, so a sidecar a user adds is restricted too, and a field the user sets
 * (`readOnlyRootFilesystem: false` for a tool that must write, `automountServiceAccountToken:
 * true`) wins, field by field, as anything else in podOverrides does. Pure.
 */
export function withPodSecurity<T extends PodTemplate>(template: T, access: PodApiAccess): T {
  const restrictedContainers = (containers: ReadonlyArray<{ name?: unknown }> | undefined) =>
    (containers ?? []).flatMap((container) =>
      typeof container.name === "string"
        ? [
            {
              name: container.name,
              securityContext: structuredClone(restrictedContainerSecurityContext),
            },
          ]
        : [],
    );
  const spec = template.spec ?? {};
  const restricted = {
    spec: {
      automountServiceAccountToken: access.callsApiServer,
      securityContext: structuredClone(restrictedPodSecurityContext),
      ...(spec.containers ? { containers: restrictedContainers(spec.containers) } : {}),
      ...(spec.initContainers ? { initContainers: restrictedContainers(spec.initContainers) } : {}),
    },
  };
  return mergePodTemplate(restricted, template) as unknown as T;
}

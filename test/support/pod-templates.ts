/**
 * The pod templates of the workloads a controller's `build` produces, and what the `restricted`
 * Pod Security Standard asks of each (with automountServiceAccountToken off: no data-plane role
 * calls the API server). Shared by the build unit tests and the pod-security integration test.
 */
import { expect } from "vitest";
import type { KubeObject } from "../../src/operator/kube.js";

export interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: {
    automountServiceAccountToken?: boolean;
    securityContext?: Record<string, unknown>;
    containers: Array<{ name: string; securityContext?: Record<string, unknown> } & Record<string, unknown>>;
    initContainers?: Array<{ name: string; securityContext?: Record<string, unknown> }>;
    volumes?: Array<{ name: string } & Record<string, unknown>>;
  } & Record<string, unknown>;
}

export interface WorkloadTemplate {
  /** `Deployment/<name>` or `StatefulSet/<name>`. */
  workload: string;
  template: PodTemplate;
}

const workloadKinds = new Set(["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"]);

/** Every pod template among the children: every pod the controller will cause to run. */
export function podTemplates(children: readonly KubeObject[]): WorkloadTemplate[] {
  return children
    .filter((child) => workloadKinds.has(child.kind))
    .map((child) => ({
      workload: `${child.kind}/${child.metadata.name}`,
      template: (child.spec as { template: PodTemplate }).template,
    }));
}

/** The `restricted` standard's fields, with the values every generated pod uses. */
export function expectRestricted({ workload, template }: WorkloadTemplate): void {
  const pod = template.spec;
  expect(pod.securityContext, `${workload}: pod securityContext`).toMatchObject({
    runAsNonRoot: true,
    runAsUser: 1000,
    fsGroup: 1000,
    seccompProfile: { type: "RuntimeDefault" },
  });
  expect(pod.automountServiceAccountToken, `${workload}: automountServiceAccountToken`).toBe(false);
  for (const container of [...(pod.initContainers ?? []), ...pod.containers]) {
    expect(container.securityContext, `${workload}, container ${container.name}`).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
  }
}

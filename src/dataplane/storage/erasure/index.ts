import type { ErasureCoder } from "./coder.js";
import { type ErasureCodingPolicy, erasureCodingPolicy } from "./policy.js";
import { ReferenceErasureCoder } from "./reference.js";
import { WasmSimdErasureCoder } from "./simd.js";

export { type ErasureCoder, ErasureCodingError } from "./coder.js";
export {
  DEFAULT_CELL_SIZE,
  ERASURE_CODING_POLICY_NAMES,
  type ErasureCodingPolicy,
  type ErasureCodingPolicyName,
  erasureCodingPolicy,
  isErasureCodingPolicyName,
} from "./policy.js";
export { ReferenceErasureCoder } from "./reference.js";
export { WasmSimdErasureCoder, type WasmSimdErasureCoderOptions } from "./simd.js";

/**
 * A coder for `policy` (an ErasureCodingPolicy, or a name such as "RS-6-3" or "RS-6-3-1024k"):
 * the WebAssembly SIMD codec, or the reference one where SIMD is unavailable or when asked for.
 * A coder is not reentrant; keep one per worker and reuse it, since it owns a WebAssembly memory
 * of (k + m) cells.
 */
export function createErasureCoder(
  policy: ErasureCodingPolicy | string,
  options: { implementation?: "reference" | "wasm-simd" } = {},
): ErasureCoder {
  const resolved = typeof policy === "string" ? erasureCodingPolicy(policy) : policy;
  const implementation =
    options.implementation ?? (WasmSimdErasureCoder.isSupported() ? "wasm-simd" : "reference");
  return implementation === "wasm-simd"
    ? new WasmSimdErasureCoder(resolved)
    : new ReferenceErasureCoder(resolved);
}

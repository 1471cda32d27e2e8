// snappyjs ships no type declarations; these are the two functions the sink uses.
declare module "snappyjs" {
  export function compress<T extends Uint8Array | ArrayBuffer>(input: T): T;
  export function uncompress<T extends Uint8Array | ArrayBuffer>(input: T): T;
}

import { RemoteException } from "./protocol.js";

/**
 * Checks an absolute HDFS path the way DFSUtil.isValidName does: absolute, no `.` or `..`
 * components, no `:` and no empty components except a trailing slash. Returns it normalized
 * (no trailing slash except for the root).
 */
export function validatePath(path: string): string {
  if (!path.startsWith("/")) throw invalidPath(path, "not absolute");
  const trimmed = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
  if (trimmed === "/") return "/";
  for (const component of trimmed.slice(1).split("/")) {
    if (component === "" || component === "." || component === ".." || component.includes(":")) {
      throw invalidPath(path, `component "${component}" is not allowed`);
    }
  }
  return trimmed;
}

const invalidPath = (path: string, why: string) =>
  new RemoteException(
    "InvalidPathException",
    `Invalid path name Invalid file name: ${path} (${why})`,
    "org.apache.hadoop.fs.InvalidPathException",
    400,
  );

export function components(path: string): string[] {
  return path === "/" ? [] : path.slice(1).split("/");
}

export function parentOf(path: string): string {
  const at = path.lastIndexOf("/");
  return at <= 0 ? "/" : path.slice(0, at);
}

export function nameOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * Loopback ports for servers that a test starts on a port of its choosing and may start again on
 * the same port after a kill: a private Kafka broker, a resource manager, a camera.
 *
 * An OS-assigned port (listen on 0) comes from Linux's ephemeral range
 * (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default), from which every outgoing
 * connection on the machine also takes its local port: between a probe and the real bind, or
 * between a kill and the restart, any process may be given it. These ports come from 20000-22999
 * instead, below that range and below the ports of scripts/testenv (23790 and up), so only a
 * server that asks for one by number can hold one.
 *
 * Two test processes (workers of one vitest run, or of runs started side by side) must not pick
 * the same port: each claims a port with a file named `<port>.<pid>` in a directory of the
 * system's temporary directory, then looks for another live process's claim of it and withdraws
 * if there is one. Claims of processes that are gone do not count. A probe then skips ports that
 * something else listens on. A process's claims are removed when it exits.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const FIRST_PORT = 20_000;
const PORT_COUNT = 3_000;
const claims = join(tmpdir(), "tributary-test-ports");
const mine = new Set<number>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function claimFile(port: number, pid = process.pid): string {
  return join(claims, `${port}.${pid}`);
}

function release(port: number): void {
  rmSync(claimFile(port), { force: true });
  mine.delete(port);
}

process.once("exit", () => {
  for (const port of mine) rmSync(claimFile(port), { force: true });
});

/** Claims `port` for this process unless another live process claims it too. */
function claim(port: number): boolean {
  writeFileSync(claimFile(port), "");
  mine.add(port);
  // Both of two processes claiming at once see the other's file and withdraw; never both keep it.
  const others = readdirSync(claims)
    .filter((name) => name.startsWith(`${port}.`))
    .map((name) => Number(name.slice(String(port).length + 1)))
    .filter((pid) => pid !== process.pid);
  for (const pid of others.filter((pid) => !alive(pid))) rmSync(claimFile(port, pid), { force: true });
  if (!others.some(alive)) return true;
  release(port);
  return false;
}

/** Whether something holds `port` on any local address. */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(true));
    // Every address: a server on 127.0.0.1 or on the node's own address holds the port as well.
    probe.listen(port, "0.0.0.0", () => probe.close(() => resolve(false)));
  });
}

/**
 * The first of `count` consecutive ports, claimed for this process and free when probed. They
 * stay claimed until the process exits, so a server may be restarted on them.
 */
export async function reservedPorts(count: number): Promise<number> {
  mkdirSync(claims, { recursive: true });
  const start = Math.floor(Math.random() * PORT_COUNT);
  for (let step = 0; step < PORT_COUNT; step += count) {
    const first = FIRST_PORT + ((start + step) % (PORT_COUNT - count + 1));
    const taken: number[] = [];
    let usable = true;
    for (let port = first; port < first + count && usable; port++) {
      usable = !mine.has(port) && claim(port);
      if (usable) taken.push(port);
      usable &&= !(await listening(port));
    }
    if (usable) return first;
    for (const port of taken) release(port);
  }
  throw new Error(
    `no ${count} consecutive free ports between ${FIRST_PORT} and ${FIRST_PORT + PORT_COUNT - 1} (claims in ${claims})`,
  );
}

/** One port, claimed for this process and free when probed (see reservedPorts). */
export function reservedPort(): Promise<number> {
  return reservedPorts(1);
}

/** Gives ports back before the process exits, e.g. when a server on them was found unable to bind. */
export function releasePorts(first: number, count: number): void {
  for (let port = first; port < first + count; port++) release(port);
}

/**
 * A loopback port nothing listens on: connections to it are refused. Claimed for this process, so
 * no other test's server binds it, as one could a port that was bound here and closed again.
 */
export function unusedPort(): Promise<number> {
  return reservedPort();
}

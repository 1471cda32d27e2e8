/**
 * sendBlock's stall detection against a fake data node on loopback, one path at a time: a node
 * that stops reading (the socket takes no more bytes), one that reads everything but never
 * acknowledges, and a healthy one fed by a source slower than the stall timeout.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { PipelineException, pipelineTimeoutMs, sendBlock } from "../../src/dataplane/storage/dfsClient.js";
import type { DatanodeID } from "../../src/dataplane/storage/protocol.js";
import { ManualClock } from "../../src/operator/workqueue.js";

const STALL_MS = 200;
const chunk = () => Buffer.alloc(64 * 1024, 7);

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = undefined;
});

/** A data node that answers block writes with `handle`; returns its id and second node for the pipeline. */
async function fakeDataNode(
  handle: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<[DatanodeID, DatanodeID]> {
  server = createServer(handle);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  return [
    { datanodeUuid: "first", hostName: "127.0.0.1", xferPort: port, infoPort: 0 },
    { datanodeUuid: "second", hostName: "127.0.0.1", xferPort: 1, infoPort: 0 },
  ];
}

async function* endless(): AsyncGenerator<Buffer> {
  for (;;) yield chunk();
}

describe("sendBlock stall detection", () => {
  it("fails the first node when its socket takes no more bytes", async () => {
    // Reads nothing: the kernel buffers fill and writes back up with bytes pending.
    const targets = await fakeDataNode((req) => req.socket.pause());
    const failure = await sendBlock(targets, { blockId: 1, generationStamp: 1 }, endless(), {
      stallTimeoutMs: STALL_MS,
    }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(PipelineException);
    expect((failure as PipelineException).badNode.datanodeUuid).toBe("first");
    expect((failure as PipelineException).message).toContain("took no more bytes");
  });

  it("fails the first node when the acknowledgement does not come after the last byte", async () => {
    const targets = await fakeDataNode((req) => req.resume());
    const failure = await sendBlock(
      targets,
      { blockId: 2, generationStamp: 1 },
      (async function* () {
        yield chunk();
      })(),
      { stallTimeoutMs: STALL_MS },
    ).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(PipelineException);
    expect((failure as PipelineException).badNode.datanodeUuid).toBe("first");
    expect((failure as PipelineException).message).toContain("no acknowledgement");
  });

  it("waits on a slow source without counting it as a stall, and leaves no timer behind", async () => {
    const targets = await fakeDataNode(async (req, res) => {
      let numBytes = 0;
      for await (const part of req) numBytes += (part as Buffer).length;
      res.end(JSON.stringify({ numBytes, checksum: 0 }));
    });
    // Stall timers run on a clock that moves only when told: while the source is waited on, time
    // passes ten stall timeouts; while bytes and the acknowledgement travel, none passes.
    const clock = new ManualClock();
    const waiting: (() => void)[] = [];
    const sourceWaits = () => new Promise<void>((resolve) => waiting.push(resolve));
    const sent = sendBlock(
      targets,
      { blockId: 3, generationStamp: 1 },
      (async function* () {
        for (let i = 0; i < 3; i++) {
          yield chunk();
          await sourceWaits();
        }
      })(),
      { stallTimeoutMs: STALL_MS, timers: clock },
    );
    const settled = vi.fn();
    sent.then(settled, settled);
    for (let i = 0; i < 3; i++) {
      await vi.waitFor(() => expect(waiting).toHaveLength(i + 1));
      // No stall timer runs while the source is waited on.
      expect(clock.pendingTimers).toBe(0);
      clock.advance(10 * pipelineTimeoutMs(STALL_MS, targets.length));
      expect(settled).not.toHaveBeenCalled();
      waiting[i]!();
    }
    const ack = await sent;
    expect(ack.numBytes).toBe(3 * 64 * 1024);
    expect(clock.pendingTimers).toBe(0);
  });

  it("opens a connection of its own for every block, so a node's idle timeout never names it bad", async () => {
    const targets = await fakeDataNode(async (req, res) => {
      let numBytes = 0;
      for await (const part of req) numBytes += (part as Buffer).length;
      res.end(JSON.stringify({ numBytes, checksum: 0 }));
    });
    const connections: unknown[] = [];
    server!.on("connection", (socket) => connections.push(socket));
    for (const blockId of [4, 5, 6]) {
      const ack = await sendBlock(
        targets,
        { blockId, generationStamp: 1 },
        (async function* () {
          yield chunk();
        })(),
      );
      expect(ack.numBytes).toBe(64 * 1024);
    }
    // A kept-alive socket would be reused here, and could meet the node's idle close mid-request.
    expect(connections).toHaveLength(3);
  });
});

/**
 * HDFS's TableMapping (`net.topology.table.file.name`): a text file of `<host> <rack>` lines
 * that places data nodes on racks, so placement spreads replicas across failure domains the
 * data nodes themselves do not know. The operator writes it from the Kubernetes nodes' zone
 * labels into a ConfigMap mounted at /etc/tributary/topology/topology.table; the name node
 * re-reads it when it changes, and a data node's next heartbeat takes the new rack.
 */
import { readFile, stat } from "node:fs/promises";
import type { Logger } from "../../../log.js";
import type { DatanodeID } from "../protocol.js";
import { hostEntryKeys, normalizeHostEntry } from "./hosts.js";

/** A line the table could not use as written. */
export interface TopologyTableWarning {
  /** 1-based, as an editor shows it. */
  line: number;
  text: string;
  problem: string;
}

export interface ParsedTopologyTable {
  /** Host entry (see hosts.ts) → rack. */
  racks: Map<string, string>;
  warnings: TopologyTableWarning[];
}

/**
 * Lines are `<host> <rack>`, separated by blanks; `#` starts a comment. The host may be a host
 * name, `host:xferPort`, or a short name up to a dot; the rack is a path such as `/zone-a`.
 * A malformed line is skipped and reported; when a host appears twice the later line wins.
 */
export function parseTopologyTable(text: string): ParsedTopologyTable {
  const racks = new Map<string, string>();
  const lineOf = new Map<string, number>();
  const warnings: TopologyTableWarning[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    const content = raw.replace(/#.*$/, "").trim();
    if (content === "") return;
    const fields = content.split(/\s+/);
    if (fields.length !== 2) {
      warnings.push({
        line,
        text: raw,
        problem: `skipped: expected "<host> <rack>", found ${fields.length} field(s)`,
      });
      return;
    }
    const [host, rack] = fields as [string, string];
    if (!rack.startsWith("/")) {
      warnings.push({
        line,
        text: raw,
        problem: `skipped: rack "${rack}" must start with "/" (e.g. /${rack})`,
      });
      return;
    }
    const key = normalizeHostEntry(host);
    const earlier = lineOf.get(key);
    if (earlier !== undefined)
      warnings.push({ line, text: raw, problem: `${host} is also on line ${earlier}; this later line wins` });
    racks.set(key, rack);
    lineOf.set(key, line);
  });
  return { racks, warnings };
}

export class TopologyTable {
  private racks = new Map<string, string>();
  /** What was last read (or "missing"): mtime, size and inode, so a ConfigMap's symlink swap counts too. */
  private loaded: string | undefined;
  private lastError: string | undefined;

  constructor(
    readonly path: string,
    private readonly logger: Logger,
  ) {}

  /** The rack the table gives `node`, or undefined when it has no entry for it. */
  rackOf(node: Pick<DatanodeID, "hostName" | "xferPort">): string | undefined {
    for (const key of hostEntryKeys(node)) {
      const rack = this.racks.get(key);
      if (rack) return rack;
    }
    return undefined;
  }

  get size(): number {
    return this.racks.size;
  }

  /** Re-reads the file if it changed since the last read. Never throws: a bad read keeps the last table. */
  async refresh(): Promise<void> {
    let signature: string;
    try {
      const stats = await stat(this.path);
      signature = `${stats.mtimeMs}:${stats.size}:${stats.ino}`;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        if (this.loaded !== "missing")
          this.logger.info(
            { file: this.path },
            "topology table not found: data nodes keep the racks they report",
          );
        this.racks = new Map();
        this.loaded = "missing";
        return;
      }
      this.readFailed(error);
      return;
    }
    if (signature === this.loaded) return;
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      this.readFailed(error);
      return;
    }
    const { racks, warnings } = parseTopologyTable(text);
    for (const warning of warnings)
      this.logger.warn(
        { file: this.path, line: warning.line, text: warning.text },
        `topology table line ${warning.line}: ${warning.problem}`,
      );
    this.racks = racks;
    this.loaded = signature;
    this.lastError = undefined;
    this.logger.info(
      { file: this.path, hosts: racks.size, racks: [...new Set(racks.values())].sort() },
      "topology table loaded",
    );
  }

  private readFailed(error: unknown): void {
    const message = (error as Error).message;
    if (message !== this.lastError)
      this.logger.warn(
        { file: this.path, error: message },
        "could not read the topology table: keeping the racks it gave before",
      );
    this.lastError = message;
  }
}
